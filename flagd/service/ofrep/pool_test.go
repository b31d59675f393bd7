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

// ofrepKinds are the request shapes of TestConcurrentContextsStayApart.
var ofrepKinds = []string{"single", "single large", "bulk", "bulk with another's ETag", "bulk with its own ETag", "malformed", "over the limit"}

// ofrepLimit is the test server's body limit.
const ofrepLimit = 300_000

// echoOFREP serves flags "echo" and "echo-email" with a variant for each of n
// contexts (long values for some), and a static flag; it returns the URL and the
// value of each echo variant.
func echoOFREP(t *testing.T, n int) (url string, values map[string]any) {
	t.Helper()
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
	return serve(t, ofrep.New(ofrep.Options{Store: st, Log: zerolog.Nop(), MaxRequestBody: ofrepLimit}).Handler()), echo
}

// ofrepClient sends the requests of TestConcurrentContextsStayApart.
type ofrepClient struct {
	url    string
	values map[string]any // read only
	etags  sync.Map       // request index -> its bulk ETag
}

// checkBulk verifies a bulk answer of request i: both echo flags name i.
func checkBulk(body string, i int) error {
	var b struct {
		Flags []struct{ Key, Variant string }
	}
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

// ofrepRequest is one request of the test and the kind of answer it expects.
type ofrepRequest struct {
	kind, path, body string
	header           map[string]string
}

// request builds request i of kind. A bulk request with its own ETag is sent once
// first, to learn the tag; one with another's ETag becomes a plain bulk request
// while no other tag is known.
func (c *ofrepClient) request(kind string, i int) (ofrepRequest, error) {
	r := ofrepRequest{kind: kind, path: ofrep.BulkRoute, body: ofrepBody(i, 100), header: map[string]string{"Content-Type": "application/json"}}
	switch kind {
	case "single":
		r.path = ofrep.BulkRoute + "/echo"
	case "single large":
		r.path, r.body = ofrep.BulkRoute+"/echo", ofrepBody(i, 70<<10)
	case "bulk with another's ETag":
		var other string
		c.etags.Range(func(k, v any) bool {
			if k.(int) != i {
				other = v.(string)
			}
			return other == ""
		})
		if other == "" {
			r.kind = "bulk"
			break
		}
		r.header["If-None-Match"] = other
	case "bulk with its own ETag":
		first, err := send(http.MethodPost, c.url+r.path, r.body, r.header)
		if err != nil {
			return r, err
		}
		if err := checkBulk(first.body, i); err != nil {
			return r, fmt.Errorf("first answer: %w", err)
		}
		r.header["If-None-Match"] = first.header.Get("ETag")
	case "malformed":
		r.body = r.body[:len(r.body)/2]
	case "over the limit":
		r.body = ofrepBody(i, ofrepLimit+1)
	}
	return r, nil
}

// run sends request i and checks its answer.
func (c *ofrepClient) run(i int) error {
	r, err := c.request(ofrepKinds[i%len(ofrepKinds)], i)
	if err != nil {
		return err
	}
	res, err := send(http.MethodPost, c.url+r.path, r.body, r.header)
	if err != nil {
		return err
	}
	if foreign := ofrepForeign(res.body, i); len(foreign) > 0 {
		return fmt.Errorf("the answer names other requests' contexts %q: %.300s", foreign, res.body)
	}
	wantStatus := map[string]int{"single": 200, "single large": 200, "bulk": 200, "bulk with another's ETag": 200,
		"bulk with its own ETag": http.StatusNotModified, "malformed": http.StatusBadRequest, "over the limit": http.StatusRequestEntityTooLarge}[r.kind]
	if res.status != wantStatus {
		return fmt.Errorf("status %d, want %d (another context's ETag must not match, the request's own must): %.300s", res.status, wantStatus, res.body)
	}
	switch r.kind {
	case "single", "single large":
		var one struct{ Value, Variant string }
		if err := json.Unmarshal([]byte(res.body), &one); err != nil || one.Variant != ofrepVariant(i) || one.Value != c.values[ofrepVariant(i)] {
			return fmt.Errorf("want variant %s of its own context: %.300s", ofrepVariant(i), res.body)
		}
	case "bulk", "bulk with another's ETag":
		if err := checkBulk(res.body, i); err != nil {
			return err
		}
		c.etags.Store(i, res.header.Get("ETag"))
	}
	return nil
}

// TestConcurrentContextsStayApart is the attack on OFREP's pooled response
// encoders and its context-keyed bulk ETags: 8 clients send 420 concurrent single
// and bulk evaluations, each with its own context (small and over 64 KiB bodies),
// bulk requests carrying another request's ETag in If-None-Match, malformed bodies
// and bodies over the limit. Every answer is computed from its own context and
// names no other request's; another context's ETag never gets a 304, the request's
// own does.
func TestConcurrentContextsStayApart(t *testing.T) {
	n := 60 * len(ofrepKinds)
	c := &ofrepClient{}
	c.url, c.values = echoOFREP(t, n)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				if err := c.run(i); err != nil {
					t.Errorf("%s #%d: %v", ofrepKinds[i%len(ofrepKinds)], i, err)
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
