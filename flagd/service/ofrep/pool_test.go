package ofrep_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service/ofrep"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// Context i carries targetingKey tk-<i> and email u<i>@example.com; the flag
// "echo" answers the variant named after both ({"cat": [targetingKey, "|", email]}),
// "echo-email" the one named after the email alone, so an answer names the context
// it was computed from, and a context mixing two requests names no variant.

func ofrepTK(i int) string      { return fmt.Sprintf("tk-%05d", i) }
func ofrepEmail(i int) string   { return fmt.Sprintf("u%05d@example.com", i) }
func ofrepVariant(i int) string { return ofrepTK(i) + "|" + ofrepEmail(i) }

var ofrepMarker = regexp.MustCompile(`tk-(\d{5})|u(\d{5})@example\.com`)

// ofrepForeign lists the markers in text that are not request i's.
func ofrepForeign(text string, i int) []string {
	var out []string
	for _, m := range ofrepMarker.FindAllStringSubmatch(text, -1) {
		if got, _ := strconv.Atoi(m[1] + m[2]); got != i {
			out = append(out, m[0])
		}
	}
	return out
}

// ofrepBody is request i's body: the markers around a pad of about pad bytes of
// the request's own markers.
func ofrepBody(i, pad int) string {
	p := strings.Repeat(ofrepVariant(i)+";", pad/len(ofrepVariant(i))+1)[:pad]
	return `{"context":{"targetingKey":"` + ofrepTK(i) + `","pad":"` + p + `","email":"` + ofrepEmail(i) + `"}}`
}

// TestConcurrentContextsStayApart is the attack on OFREP's pooled response
// encoders and its context-keyed bulk ETags: 8 clients send ~400 concurrent single
// and bulk evaluations, each with its own context (small and over 64 KiB bodies),
// bulk requests carrying another request's ETag in If-None-Match, malformed bodies
// and bodies over the limit. Every answer is computed from its own context and
// names no other request's; another context's ETag never gets a 304, the request's
// own does.
func TestConcurrentContextsStayApart(t *testing.T) {
	const rounds, limit = 60, 300_000
	kinds := []string{"single", "single large", "bulk", "bulk with another's ETag", "bulk with its own ETag", "malformed", "over the limit"}
	n := rounds * len(kinds)
	echo, echoEmail := map[string]any{"none": "none"}, map[string]any{"none": "none"}
	for i := range n {
		echo[ofrepVariant(i)] = strings.Repeat(ofrepVariant(i)+";", 1+i%3*20)
		echoEmail[ofrepEmail(i)] = ofrepEmail(i)
	}
	doc, err := json.Marshal(map[string]any{"flags": map[string]any{
		"echo": map[string]any{"state": "ENABLED", "variants": echo, "defaultVariant": "none",
			"targeting": map[string]any{"cat": []any{map[string]any{"var": "targetingKey"}, "|", map[string]any{"var": "email"}}}},
		"echo-email": map[string]any{"state": "ENABLED", "variants": echoEmail, "defaultVariant": "none",
			"targeting": map[string]any{"var": "email"}},
		"static": map[string]any{"state": "ENABLED", "variants": map[string]any{"on": true}, "defaultVariant": "on"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New([]string{"echo"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply("echo", doc); err != nil {
		t.Fatal(err)
	}
	url := serve(t, ofrep.New(ofrep.Options{Store: st, Log: zerolog.Nop(), MaxRequestBody: limit}).Handler())

	var etags sync.Map // request index -> its bulk ETag
	type bulkAnswer struct {
		Flags []struct{ Key, Variant string }
	}
	// check verifies a bulk answer of request i: both echo flags name i.
	check := func(body string, i int) error {
		var b bulkAnswer
		if err := json.Unmarshal([]byte(body), &b); err != nil {
			return err
		}
		want := map[string]string{"echo": ofrepVariant(i), "echo-email": ofrepEmail(i), "static": "on"}
		got := map[string]string{}
		for _, f := range b.Flags {
			got[f.Key] = f.Variant
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("variants %v, want %v", got, want)
		}
		return nil
	}
	run := func(i int) error {
		kind := kinds[i%len(kinds)]
		path, body, hdr := ofrep.BulkRoute, ofrepBody(i, 100), map[string]string{"Content-Type": "application/json"}
		switch kind {
		case "single":
			path = ofrep.BulkRoute + "/echo"
		case "single large":
			path, body = ofrep.BulkRoute+"/echo", ofrepBody(i, 70<<10)
		case "bulk with another's ETag":
			var other string
			etags.Range(func(k, v any) bool {
				if k.(int) != i {
					other = v.(string)
				}
				return other == ""
			})
			if other == "" {
				kind = "bulk"
				break
			}
			hdr["If-None-Match"] = other
		case "bulk with its own ETag":
			first, err := send(http.MethodPost, url+path, body, hdr)
			if err != nil {
				return err
			}
			if err := check(first.body, i); err != nil {
				return fmt.Errorf("first answer: %w", err)
			}
			hdr["If-None-Match"] = first.header.Get("ETag")
		case "malformed":
			body = body[:len(body)/2]
		case "over the limit":
			body = ofrepBody(i, limit+1)
		}
		res, err := send(http.MethodPost, url+path, body, hdr)
		if err != nil {
			return err
		}
		if foreign := ofrepForeign(res.body, i); len(foreign) > 0 {
			return fmt.Errorf("the answer names other requests' contexts %q: %.300s", foreign, res.body)
		}
		switch kind {
		case "single", "single large":
			var one struct{ Value, Variant string }
			if err := json.Unmarshal([]byte(res.body), &one); err != nil || res.status != http.StatusOK || one.Variant != ofrepVariant(i) || one.Value != echo[ofrepVariant(i)] {
				return fmt.Errorf("want variant %s of its own context: %d %.300s", ofrepVariant(i), res.status, res.body)
			}
		case "bulk", "bulk with another's ETag":
			if res.status != http.StatusOK {
				return fmt.Errorf("status %d, want 200 (another context's ETag must not match): %.300s", res.status, res.body)
			}
			if err := check(res.body, i); err != nil {
				return err
			}
			etags.Store(i, res.header.Get("ETag"))
		case "bulk with its own ETag":
			if res.status != http.StatusNotModified {
				return fmt.Errorf("status %d, want 304 for the request's own ETag", res.status)
			}
		case "malformed":
			if res.status != http.StatusBadRequest {
				return fmt.Errorf("status %d, want 400: %.300s", res.status, res.body)
			}
		case "over the limit":
			if res.status != http.StatusRequestEntityTooLarge {
				return fmt.Errorf("status %d, want 413: %.300s", res.status, res.body)
			}
		}
		return nil
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := run(i); err != nil {
					t.Errorf("%s #%d: %v", kinds[i%len(kinds)], i, err)
				}
			}
		})
	}
	for _, i := range rand.New(rand.NewPCG(17, 2)).Perm(n) {
		work <- i
	}
	close(work)
	wg.Wait()
}
