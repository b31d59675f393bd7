package ofrep_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/ofrep"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
)

// sourceA is the lower-priority source: a map-form document in flag set "set-a".
const sourceA = `{
  "metadata": {"flagSetId": "set-a", "version": "1", "team": "core"},
  "$evaluators": {"isExample": {"ends_with": [{"var": "email"}, "@example.com"]}},
  "flags": {
    "bool-flag":     {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "metadata": {"team": "web", "weight": 2.5, "beta": true}},
    "string-flag":   {"state": "ENABLED", "variants": {"html": "<b>&\"x\"</b>", "plain": "plain"}, "defaultVariant": "html"},
    "number-flag":   {"state": "ENABLED", "variants": {"big": 1e21, "small": 1e-7, "half": 1.5}, "defaultVariant": "big"},
    "object-flag":   {"state": "ENABLED", "variants": {"o": {"z": 1, "a": [1, "two", null, true], "m": {"k": "v"}}}, "defaultVariant": "o"},
    "targeted":      {"state": "ENABLED", "variants": {"yes": "yes", "no": "no"}, "defaultVariant": "no",
                      "targeting": {"if": [{"$ref": "isExample"}, "yes", null]}},
    "enriched":      {"state": "ENABLED", "variants": {"gold": "gold", "prod": "prod", "none": "none"}, "defaultVariant": "none",
                      "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "gold", {"==": [{"var": "env"}, "prod"]}, "prod", "none"]}},
    "disabled-flag": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    "no-default":    {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "parse-error":   {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"$ref": "missing"}},
    "general-error": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": [true, "nope"]}},
    "null-variant":  {"state": "ENABLED", "variants": {"n": null}, "defaultVariant": "n"}
  }
}`

// sourceB has higher priority: it overrides bool-flag in its own flag set and adds a
// flag without a flag set.
const sourceB = `{"flags": [
  {"key": "bool-flag", "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"flagSetId": "set-b"}},
  {"key": "b-only", "state": "ENABLED", "variants": {"v": "b"}, "defaultVariant": "v"}
]}`

type testServer struct {
	url   string
	store *store.Store
}

type serverOpts struct {
	enricher *service.Enricher
	cors     []string
	maxBody  int64
	tracing  *tracing.Tracing
}

// startServer serves OFREP on 127.0.0.1:0 with both sources applied.
func startServer(t testing.TB, so serverOpts) *testServer {
	t.Helper()
	st, err := store.New([]string{"file:a.json", "file:b.json"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string]string{"file:a.json": sourceA, "file:b.json": sourceB} {
		if err := st.Apply(name, []byte(doc)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
	}
	svc := ofrep.New(ofrep.Options{Store: st, Enricher: so.enricher, Log: zerolog.Nop(), CORSOrigins: so.cors, MaxRequestBody: so.maxBody, Tracing: so.tracing})
	return &testServer{url: serve(t, svc.Handler()), store: st}
}

// serve runs handler with server.Serve on a real socket until the test ends.
func serve(t testing.TB, h http.Handler) string {
	t.Helper()
	cfg := server.ListenConfig{Name: "ofrep", Address: "127.0.0.1:0", ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}
	ln, err := server.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, cfg, h, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().(*net.TCPAddr).String()
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, method, url, body string, header map[string]string) response {
	t.Helper()
	res, err := send(method, url, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// send is do for goroutines other than the test's (which must not call t.Fatal).
func send(method, url, body string, header map[string]string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}, nil
}

type exchange struct {
	Status      int
	ContentType string
	Body        string
}

func TestSingleEvaluation(t *testing.T) {
	srv := startServer(t, serverOpts{enricher: &service.Enricher{
		Static:  map[string]string{"env": "prod"},
		Headers: map[string]string{"X-User-Tier": "tier"},
	}})
	const json = "application/json"
	cases := []struct {
		name   string
		key    string
		body   string
		header map[string]string
		want   exchange
	}{
		{
			name: "boolean from the higher-priority source, its flag set in metadata",
			key:  "bool-flag",
			want: exchange{200, json, `{"value":true,"key":"bool-flag","reason":"STATIC","variant":"on","metadata":{"flagSetId":"set-b"}}`},
		},
		{
			name:   "false is kept; flag metadata over set metadata, reflection of the selector",
			key:    "bool-flag",
			header: map[string]string{"Flagd-Selector": "flagSetId=set-a"},
			want:   exchange{200, json, `{"value":false,"key":"bool-flag","reason":"STATIC","variant":"off","metadata":{"beta":true,"flagSetId":"set-a","team":"web","version":"1","weight":2.5}}`},
		},
		{
			name:   "source selector reflected beside the flag metadata",
			key:    "bool-flag",
			header: map[string]string{"Flagd-Selector": "source=file:a.json"},
			want:   exchange{200, json, `{"value":false,"key":"bool-flag","reason":"STATIC","variant":"off","metadata":{"beta":true,"flagSetId":"set-a","source":"file:a.json","team":"web","version":"1","weight":2.5}}`},
		},
		{
			name:   "legacy bare selector is a source",
			key:    "b-only",
			header: map[string]string{"Flagd-Selector": "file:b.json"},
			want:   exchange{200, json, `{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{"source":"file:b.json"}}`},
		},
		{
			name:   "empty flag set id selects flags without a flag set",
			key:    "b-only",
			header: map[string]string{"Flagd-Selector": "flagSetId="},
			want:   exchange{200, json, `{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{"flagSetId":""}}`},
		},
		{
			name: "strings escaped as encoding/json does",
			key:  "string-flag",
			want: exchange{200, json, `{"value":"\u003cb\u003e\u0026\"x\"\u003c/b\u003e","key":"string-flag","reason":"STATIC","variant":"html","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "numbers formatted as encoding/json does",
			key:  "number-flag",
			want: exchange{200, json, `{"value":1e+21,"key":"number-flag","reason":"STATIC","variant":"big","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "object with sorted keys and an array",
			key:  "object-flag",
			want: exchange{200, json, `{"value":{"a":[1,"two",null,true],"m":{"k":"v"},"z":1},"key":"object-flag","reason":"STATIC","variant":"o","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "targeting match from the context",
			key:  "targeted",
			body: `{"context":{"email":"ann@example.com"}}`,
			want: exchange{200, json, `{"value":"yes","key":"targeted","reason":"TARGETING_MATCH","variant":"yes","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "targeting returns null: default variant",
			key:  "targeted",
			body: `{"context":{"email":"ann@other.org"}}`,
			want: exchange{200, json, `{"value":"no","key":"targeted","reason":"DEFAULT","variant":"no","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "static -X context applies",
			key:  "enriched",
			body: `{"context":{"env":"dev"}}`,
			want: exchange{200, json, `{"value":"prod","key":"enriched","reason":"TARGETING_MATCH","variant":"prod","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name:   "-H header overrides the body context",
			key:    "enriched",
			body:   `{"context":{"tier":"silver"}}`,
			header: map[string]string{"x-user-tier": "gold"},
			want:   exchange{200, json, `{"value":"gold","key":"enriched","reason":"TARGETING_MATCH","variant":"gold","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "disabled: reason only",
			key:  "disabled-flag",
			want: exchange{200, json, `{"key":"disabled-flag","reason":"DISABLED","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "no default variant: code default, reason DEFAULT only",
			key:  "no-default",
			want: exchange{200, json, `{"key":"no-default","reason":"DEFAULT","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "not found",
			key:  "missing",
			want: exchange{404, json, "{\"key\":\"missing\",\"errorCode\":\"FLAG_NOT_FOUND\",\"errorDetails\":\"flag `missing` does not exist\",\"metadata\":{}}"},
		},
		{
			name:   "not found in the selected flag set carries the reflection",
			key:    "b-only",
			header: map[string]string{"Flagd-Selector": "flagSetId=set-a"},
			want:   exchange{404, json, "{\"key\":\"b-only\",\"errorCode\":\"FLAG_NOT_FOUND\",\"errorDetails\":\"flag `b-only` does not exist\",\"metadata\":{\"flagSetId\":\"set-a\"}}"},
		},
		{
			name: "parse error",
			key:  "parse-error",
			want: exchange{400, json, "{\"key\":\"parse-error\",\"errorCode\":\"PARSE_ERROR\",\"errorDetails\":\"error parsing the flag `parse-error`\",\"metadata\":{\"flagSetId\":\"set-a\",\"team\":\"core\",\"version\":\"1\"}}"},
		},
		{
			name: "targeting returns an unknown variant: GENERAL",
			key:  "general-error",
			want: exchange{400, json, `{"key":"general-error","errorCode":"GENERAL","errorDetails":"error processing the flag for evaluation","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "null variant value (type mismatch): GENERAL",
			key:  "null-variant",
			want: exchange{400, json, `{"key":"null-variant","errorCode":"GENERAL","errorDetails":"error processing the flag for evaluation","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name:   "invalid selector",
			key:    "bool-flag",
			header: map[string]string{"Flagd-Selector": "color=red"},
			want:   exchange{400, json, `{"key":"bool-flag","errorCode":"GENERAL","errorDetails":"invalid selector: invalid selector key \"color\", valid keys: \"flagSetId\", \"source\"","metadata":null}`},
		},
		{
			name: "malformed body: INVALID_CONTEXT with the key",
			key:  "bool-flag",
			body: `{"context":`,
			want: exchange{400, json, `{"key":"bool-flag","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}`},
		},
		{
			name:   "malformed body wins over an invalid selector (flagd's order)",
			key:    "bool-flag",
			body:   `{some invalid context}`,
			header: map[string]string{"Flagd-Selector": "color=red"},
			want:   exchange{400, json, `{"key":"bool-flag","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}`},
		},
		{
			name: "a body that is not an object is malformed",
			key:  "bool-flag",
			body: `["context"]`,
			want: exchange{400, json, `{"key":"bool-flag","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}`},
		},
		{
			name: "a context that is not an object is ignored",
			key:  "targeted",
			body: `{"context":"ann@example.com"}`,
			want: exchange{200, json, `{"value":"no","key":"targeted","reason":"DEFAULT","variant":"no","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}`},
		},
		{
			name: "null context and unknown members are accepted",
			key:  "b-only",
			body: `{"context":null,"other":1}`,
			want: exchange{200, json, `{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{}}`},
		},
		{
			name: "key with an escaped slash",
			key:  "a%2Fb",
			want: exchange{404, json, "{\"key\":\"a/b\",\"errorCode\":\"FLAG_NOT_FOUND\",\"errorDetails\":\"flag `a/b` does not exist\",\"metadata\":{}}"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, http.MethodPost, srv.url+"/ofrep/v1/evaluate/flags/"+tc.key, tc.body, tc.header)
			got := exchange{res.status, res.header.Get("Content-Type"), res.body}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("POST %s (-want +got):\n%s", tc.key, diff)
			}
			if res.header.Get("ETag") != "" {
				t.Errorf("single evaluation carries an ETag %q", res.header.Get("ETag"))
			}
		})
	}
}

// bulkAll is the bulk answer without a selector: one entry per key (the store
// dedupes keys across flag sets, fixing flagd quirk §10.9), sorted by key.
const bulkAll = `{"flags":[` +
	`{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{}},` +
	`{"value":true,"key":"bool-flag","reason":"STATIC","variant":"on","metadata":{"flagSetId":"set-b"}},` +
	`{"key":"disabled-flag","reason":"DISABLED","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"value":"prod","key":"enriched","reason":"TARGETING_MATCH","variant":"prod","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"key":"general-error","errorCode":"GENERAL","errorDetails":"error processing the flag for evaluation","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"key":"no-default","reason":"DEFAULT","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"key":"null-variant","errorCode":"GENERAL","errorDetails":"error processing the flag for evaluation","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"value":1e+21,"key":"number-flag","reason":"STATIC","variant":"big","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"value":{"a":[1,"two",null,true],"m":{"k":"v"},"z":1},"key":"object-flag","reason":"STATIC","variant":"o","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	"{\"key\":\"parse-error\",\"errorCode\":\"PARSE_ERROR\",\"errorDetails\":\"error parsing the flag `parse-error`\",\"metadata\":{\"flagSetId\":\"set-a\",\"team\":\"core\",\"version\":\"1\"}}," +
	`{"value":"\u003cb\u003e\u0026\"x\"\u003c/b\u003e","key":"string-flag","reason":"STATIC","variant":"html","metadata":{"flagSetId":"set-a","team":"core","version":"1"}},` +
	`{"value":"yes","key":"targeted","reason":"TARGETING_MATCH","variant":"yes","metadata":{"flagSetId":"set-a","team":"core","version":"1"}}` +
	`],"metadata":{}}`

func TestBulkEvaluation(t *testing.T) {
	srv := startServer(t, serverOpts{enricher: &service.Enricher{Static: map[string]string{"env": "prod"}}})
	const json = "application/json"
	cases := []struct {
		name   string
		path   string
		body   string
		header map[string]string
		want   exchange
	}{
		{
			name: "every flag, one per key, errors inline",
			path: "/ofrep/v1/evaluate/flags",
			body: `{"context":{"email":"bob@example.com"}}`,
			want: exchange{200, json, bulkAll},
		},
		{
			name: "trailing slash route",
			path: "/ofrep/v1/evaluate/flags/",
			body: `{"context":{"email":"bob@example.com"}}`,
			want: exchange{200, json, bulkAll},
		},
		{
			name:   "flag set selector: flags of the set, reflection in every metadata",
			path:   "/ofrep/v1/evaluate/flags",
			header: map[string]string{"Flagd-Selector": "flagSetId=set-b"},
			want:   exchange{200, json, `{"flags":[{"value":true,"key":"bool-flag","reason":"STATIC","variant":"on","metadata":{"flagSetId":"set-b"}}],"metadata":{"flagSetId":"set-b"}}`},
		},
		{
			name:   "source selector",
			path:   "/ofrep/v1/evaluate/flags",
			header: map[string]string{"Flagd-Selector": "source=file:b.json"},
			want: exchange{200, json, `{"flags":[` +
				`{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{"source":"file:b.json"}},` +
				`{"value":true,"key":"bool-flag","reason":"STATIC","variant":"on","metadata":{"flagSetId":"set-b","source":"file:b.json"}}` +
				`],"metadata":{"source":"file:b.json"}}`},
		},
		{
			name:   "selector that matches nothing",
			path:   "/ofrep/v1/evaluate/flags",
			header: map[string]string{"Flagd-Selector": "flagSetId=nope"},
			want:   exchange{200, json, `{"flags":[],"metadata":{"flagSetId":"nope"}}`},
		},
		{
			name:   "invalid selector",
			path:   "/ofrep/v1/evaluate/flags",
			header: map[string]string{"Flagd-Selector": "a=b"},
			want:   exchange{400, json, `{"errorCode":"GENERAL","errorDetails":"invalid selector: invalid selector key \"a\", valid keys: \"flagSetId\", \"source\"","metadata":null}`},
		},
		{
			name: "malformed body: INVALID_CONTEXT without a key",
			path: "/ofrep/v1/evaluate/flags",
			body: `{"context":{]}`,
			want: exchange{400, json, `{"errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}`},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, http.MethodPost, srv.url+tc.path, tc.body, tc.header)
			got := exchange{res.status, res.header.Get("Content-Type"), res.body}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("POST %s (-want +got):\n%s", tc.path, diff)
			}
			if wantTag := res.status == 200; (res.header.Get("ETag") != "") != wantTag {
				t.Errorf("ETag = %q; want one only on 200", res.header.Get("ETag"))
			}
		})
	}
}

func TestRoutingAndLimits(t *testing.T) {
	srv := startServer(t, serverOpts{maxBody: 64})
	big := `{"context":{"pad":"` + strings.Repeat("x", 100) + `"}}`
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		want   exchange
		allow  string
	}{
		{"GET single is 405", http.MethodGet, "/ofrep/v1/evaluate/flags/bool-flag", "", exchange{405, "", ""}, "POST"},
		{"PUT bulk is 405", http.MethodPut, "/ofrep/v1/evaluate/flags", "", exchange{405, "", ""}, "POST"},
		{"OPTIONS without CORS is 405", http.MethodOptions, "/ofrep/v1/evaluate/flags/", "", exchange{405, "", ""}, "POST"},
		{"unknown path", http.MethodPost, "/ofrep/v1/evaluate/other", "", exchange{404, "text/plain; charset=utf-8", "404 page not found\n"}, ""},
		{"key with a slash", http.MethodPost, "/ofrep/v1/evaluate/flags/a/b", "", exchange{404, "text/plain; charset=utf-8", "404 page not found\n"}, ""},
		{"single body over the limit", http.MethodPost, "/ofrep/v1/evaluate/flags/bool-flag", big, exchange{413, "application/json", `{"errorDetails":"request body too large"}`}, ""},
		{"bulk body over the limit", http.MethodPost, "/ofrep/v1/evaluate/flags", big, exchange{413, "application/json", `{"errorDetails":"request body too large"}`}, ""},
		{"body under the limit", http.MethodPost, "/ofrep/v1/evaluate/flags/b-only", `{"context":{}}`, exchange{200, "application/json", `{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{}}`}, ""},
		{"empty body", http.MethodPost, "/ofrep/v1/evaluate/flags/b-only", "", exchange{200, "application/json", `{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{}}`}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, tc.method, srv.url+tc.path, tc.body, nil)
			got := exchange{res.status, res.header.Get("Content-Type"), res.body}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s %s (-want +got):\n%s", tc.method, tc.path, diff)
			}
			if got := res.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestBulkETag(t *testing.T) {
	srv := startServer(t, serverOpts{})
	bulk := srv.url + "/ofrep/v1/evaluate/flags"
	first := do(t, http.MethodPost, bulk, "", nil)
	etag := first.header.Get("ETag")
	if first.status != 200 || len(etag) != 45 || etag[0] != '"' || etag[44] != '"' {
		t.Fatalf("first bulk: status %d, ETag %q; want 200 and a quoted 43-character tag", first.status, etag)
	}
	if got := first.header.Get("Cache-Control"); got != "no-cache, private" {
		t.Errorf("Cache-Control = %q", got)
	}
	if again := do(t, http.MethodPost, bulk, "", nil); again.header.Get("ETag") != etag || again.body != first.body {
		t.Fatalf("same request, different answer: %q / %q", again.header.Get("ETag"), etag)
	}

	type result struct {
		Status       int
		ETag         string
		Body         string
		CacheControl string
	}
	notModified := result{304, etag, "", "no-cache, private"}
	cases := []struct {
		name        string
		ifNoneMatch string
		body        string
		want        result
	}{
		{"same tag", etag, "", notModified},
		{"weak form of the tag", "W/" + etag, "", notModified},
		{"tag in a list", `"other", ` + etag + `, "x,y"`, "", notModified},
		{"star", "*", "", notModified},
		{"unquoted tag from a lenient client", strings.Trim(etag, `"`), "", notModified},
		{"other tag", `"other"`, "", result{200, etag, first.body, "no-cache, private"}},
		{"comma inside a quoted tag does not split it", `"a,` + strings.Trim(etag, `"`) + `"`, "", result{200, etag, first.body, "no-cache, private"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, http.MethodPost, bulk, tc.body, map[string]string{"If-None-Match": tc.ifNoneMatch})
			got := result{res.status, res.header.Get("ETag"), res.body, res.header.Get("Cache-Control")}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("If-None-Match %s (-want +got):\n%s", tc.ifNoneMatch, diff)
			}
			if res.status == 304 && res.header.Get("Content-Type") != "" {
				t.Errorf("304 with Content-Type %q", res.header.Get("Content-Type"))
			}
		})
	}

	t.Run("the tag depends on the context", func(t *testing.T) {
		res := do(t, http.MethodPost, bulk, `{"context":{"email":"a@example.com"}}`, map[string]string{"If-None-Match": etag})
		if res.status != 200 || res.header.Get("ETag") == etag {
			t.Fatalf("status %d, ETag %q: want 200 with a tag other than %q", res.status, res.header.Get("ETag"), etag)
		}
	})

	t.Run("a store update changes the tag", func(t *testing.T) {
		doc := strings.Replace(sourceB, `"v": "b"`, `"v": "b2"`, 1)
		if err := srv.store.Apply("file:b.json", []byte(doc)); err != nil {
			t.Fatal(err)
		}
		res := do(t, http.MethodPost, bulk, "", map[string]string{"If-None-Match": etag})
		newTag := res.header.Get("ETag")
		if res.status != 200 || newTag == "" || newTag == etag || !strings.Contains(res.body, `"value":"b2"`) {
			t.Fatalf("after Apply: status %d, ETag %q (old %q), body %s", res.status, newTag, etag, res.body)
		}
		if again := do(t, http.MethodPost, bulk, "", map[string]string{"If-None-Match": newTag}); again.status != 304 {
			t.Fatalf("new tag: status %d, want 304", again.status)
		}
	})
}

func TestCORS(t *testing.T) {
	type headers struct {
		Status        int
		AllowOrigin   string
		AllowMethods  string
		AllowHeaders  string
		ExposeHeaders string
	}
	cases := []struct {
		name    string
		origins []string
		method  string
		header  map[string]string
		want    headers
	}{
		{
			name:   "no origins configured: no CORS headers (flagd allows all)",
			method: http.MethodPost,
			header: map[string]string{"Origin": "https://app.example.com"},
			want:   headers{Status: 200},
		},
		{
			name:    "allowed origin",
			origins: []string{"https://app.example.com"},
			method:  http.MethodPost,
			header:  map[string]string{"Origin": "https://APP.example.com"},
			want:    headers{Status: 200, AllowOrigin: "https://APP.example.com", ExposeHeaders: "ETag"},
		},
		{
			name:    "other origin",
			origins: []string{"https://app.example.com"},
			method:  http.MethodPost,
			header:  map[string]string{"Origin": "https://evil.example.org"},
			want:    headers{Status: 200},
		},
		{
			name:    "wildcard in an origin",
			origins: []string{"https://*.example.com"},
			method:  http.MethodPost,
			header:  map[string]string{"Origin": "https://a.b.example.com"},
			want:    headers{Status: 200, AllowOrigin: "https://a.b.example.com", ExposeHeaders: "ETag"},
		},
		{
			name:    "star",
			origins: []string{"*"},
			method:  http.MethodPost,
			header:  map[string]string{"Origin": "https://any.example.net"},
			want:    headers{Status: 200, AllowOrigin: "*", ExposeHeaders: "ETag"},
		},
		{
			name:    "preflight",
			origins: []string{"https://app.example.com"},
			method:  http.MethodOptions,
			header:  map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,flagd-selector"},
			want:    headers{Status: 204, AllowOrigin: "https://app.example.com", AllowMethods: "POST", AllowHeaders: "content-type,flagd-selector"},
		},
		{
			name:    "preflight from another origin",
			origins: []string{"https://app.example.com"},
			method:  http.MethodOptions,
			header:  map[string]string{"Origin": "https://evil.example.org", "Access-Control-Request-Method": "POST"},
			want:    headers{Status: 204},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := startServer(t, serverOpts{cors: tc.origins})
			res := do(t, tc.method, srv.url+"/ofrep/v1/evaluate/flags/b-only", "", tc.header)
			got := headers{
				Status:        res.status,
				AllowOrigin:   res.header.Get("Access-Control-Allow-Origin"),
				AllowMethods:  res.header.Get("Access-Control-Allow-Methods"),
				AllowHeaders:  res.header.Get("Access-Control-Allow-Headers"),
				ExposeHeaders: res.header.Get("Access-Control-Expose-Headers"),
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestConcurrentRequestsDuringUpdates runs single and bulk evaluations in parallel
// with store updates (run with -race): every answer must be one of the two
// consistent states, never a mix from a recycled buffer.
func TestConcurrentRequestsDuringUpdates(t *testing.T) {
	srv := startServer(t, serverOpts{})
	docs := []string{sourceB, strings.Replace(sourceB, `"v": "b"`, `"v": "b2"`, 1)}
	singles := map[string]bool{
		`{"value":"b","key":"b-only","reason":"STATIC","variant":"v","metadata":{}}`:  true,
		`{"value":"b2","key":"b-only","reason":"STATIC","variant":"v","metadata":{}}`: true,
	}
	bulks := map[string]bool{bulkAllNoContext("b"): true, bulkAllNoContext("b2"): true}
	const workers, requests = 6, 40
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range requests {
				path, want := "/ofrep/v1/evaluate/flags", bulks
				if (w+i)%2 == 0 {
					path, want = "/ofrep/v1/evaluate/flags/b-only", singles
				}
				res, err := send(http.MethodPost, srv.url+path, "", nil)
				if err != nil {
					errs <- err
					return
				}
				if !want[res.body] {
					errs <- fmt.Errorf("%s: %d %s", path, res.status, res.body)
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range 50 {
		if err := srv.store.Apply("file:b.json", []byte(docs[i%2])); err != nil {
			t.Fatal(err)
		}
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// bulkAllNoContext is the bulk answer for an empty context, with b-only's value v.
func bulkAllNoContext(v string) string {
	s := strings.Replace(bulkAll, `{"value":"b","key":"b-only"`, `{"value":"`+v+`","key":"b-only"`, 1)
	s = strings.Replace(s, `{"value":"prod","key":"enriched","reason":"TARGETING_MATCH","variant":"prod"`, `{"value":"none","key":"enriched","reason":"TARGETING_MATCH","variant":"none"`, 1)
	return strings.Replace(s, `{"value":"yes","key":"targeted","reason":"TARGETING_MATCH","variant":"yes"`, `{"value":"no","key":"targeted","reason":"DEFAULT","variant":"no"`, 1)
}

// TestContextNeverLogged logs at trace level while evaluating contexts and mapped
// headers that hold a secret, through every path (success, errors, malformed and
// non-object contexts, bulk): the secret never reaches the log.
func TestContextNeverLogged(t *testing.T) {
	const secret = "pii-4111111111111111"
	var logs syncBuffer
	st, err := store.New([]string{"file:a.json"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply("file:a.json", []byte(sourceA)); err != nil {
		t.Fatal(err)
	}
	svc := ofrep.New(ofrep.Options{
		Store:    st,
		Enricher: &service.Enricher{Headers: map[string]string{"X-Card": "card"}},
		Log:      zerolog.New(&logs).Level(zerolog.TraceLevel),
	})
	url := serve(t, svc.Handler())
	header := map[string]string{"X-Card": secret}
	bodies := []string{`{"context":{"email":"` + secret + `@example.com","card":"` + secret + `"}}`, `{"context":"` + secret + `"}`, `{"context":{"x":"` + secret + `"`}
	for _, key := range []string{"targeted", "missing", "parse-error", "general-error", "null-variant"} {
		for _, body := range bodies {
			do(t, http.MethodPost, url+"/ofrep/v1/evaluate/flags/"+key, body, header)
		}
	}
	for _, body := range bodies {
		do(t, http.MethodPost, url+"/ofrep/v1/evaluate/flags", body, header)
	}
	out := logs.String()
	if !strings.Contains(out, "parse-error") {
		t.Fatalf("expected debug logs naming the failing flags, got %q", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the context reached the log:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
