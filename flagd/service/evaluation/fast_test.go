package evaluation

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
)

// diffPair serves the same store twice: with the fast path and with connect-go only.
type diffPair struct {
	fast, slow *testServer
	hc         *http.Client // HTTP/1.1, no transparent gzip: Content-Encoding is compared
	hc2        *http.Client // h2c

	mu   sync.Mutex
	seen []string // what the fast server's observe hook reported
}

func newDiffPair(t *testing.T, opts Options) *diffPair {
	t.Helper()
	opts = withDefaults(t, opts)
	d := &diffPair{}
	fastSvc := newService(opts, true)
	fastSvc.observe = func(why string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.seen = append(d.seen, why)
	}
	d.fast = serveService(t, fastSvc, server.ListenConfig{})
	d.slow = serveService(t, newService(opts, false), server.ListenConfig{})
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	d.hc = &http.Client{Transport: tr}
	tr2 := &http.Transport{DisableCompression: true, Protocols: new(http.Protocols)}
	tr2.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr2.CloseIdleConnections)
	d.hc2 = &http.Client{Transport: tr2}
	return d
}

// rawCall is one HTTP request, sent as is.
type rawCall struct {
	method  string // POST when empty
	path    string
	body    string
	header  http.Header // Content-Type is application/json unless set here
	chunked bool        // no Content-Length
	h2      bool
}

// wire is what a client sees of a response.
type wire struct {
	Status          int
	ContentType     string
	AcceptEncoding  string
	ContentEncoding string
	Body            any    // decoded JSON (numbers kept as written), nil if not JSON
	Raw             string // the body, compacted when it is JSON
}

func (d *diffPair) send(t *testing.T, base string, c rawCall) wire {
	t.Helper()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(body) // unknown length
	}
	req, err := http.NewRequestWithContext(testContext(t), method, base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	maps.Copy(req.Header, c.header)
	hc := d.hc
	if c.h2 {
		hc = d.hc2
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	w := wire{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"),
		AcceptEncoding: resp.Header.Get("Accept-Encoding"), ContentEncoding: resp.Header.Get("Content-Encoding")}
	if w.ContentEncoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("gzip body: %v", err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			t.Fatalf("gzip body: %v", err)
		}
	}
	w.Raw = string(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err == nil && !dec.More() {
		w.Body = v
		var b bytes.Buffer
		if json.Compact(&b, data) == nil {
			w.Raw = b.String()
		}
	}
	return w
}

// compare sends c to both servers, requires identical answers and returns the
// answer and why the fast server did not take its fast path ("" if it did; "none"
// when the path is not a fast procedure).
func (d *diffPair) compare(t *testing.T, c rawCall) (wire, string) {
	t.Helper()
	d.mu.Lock()
	d.seen = nil
	d.mu.Unlock()
	got := d.send(t, d.fast.url, c)
	d.mu.Lock()
	seen := append([]string(nil), d.seen...)
	d.mu.Unlock()
	want := d.send(t, d.slow.url, c)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s %s: fast path answer differs from connect-go (-connect-go +fast):\n%s", c.path, c.body, diff)
	}
	switch len(seen) {
	case 0:
		return got, "none"
	case 1:
		return got, seen[0]
	}
	t.Fatalf("observe called %d times: %q", len(seen), seen)
	return got, ""
}

// procPath is the path of a typed method.
func procPath(a api, typ string) string {
	svc := map[api]string{apiV1: "/flagd.evaluation.v1.Service/", apiV2: "/flagd.evaluation.v2.Service/", apiSchemaV1: "/schema.v1.Service/"}[a]
	method := map[string]string{"bool": "ResolveBoolean", "string": "ResolveString", "int": "ResolveInt", "float": "ResolveFloat", "object": "ResolveObject"}[typ]
	if svc == "" || method == "" {
		panic(fmt.Sprintf("no procedure for %v %q", a, typ))
	}
	return svc + method
}

var apis = []struct {
	name string
	api  api
}{{"v1", apiV1}, {"v2", apiV2}, {"schema.v1", apiSchemaV1}}

// requestBody is a Resolve* body as clients write it; ctx is left out when nil.
func requestBody(t *testing.T, key string, ctx map[string]any) string {
	t.Helper()
	m := map[string]any{"flagKey": key}
	if ctx != nil {
		m["context"] = ctx
	}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// specialFlags are flags no JSON flag file can hold (NaN, infinities, invalid
// UTF-8, values a Struct cannot hold) and values at the edges of protojson's
// number and string formatting. Targeting {"var":"pick"} selects a variant by name.
func specialFlags(t *testing.T) *flags.Set {
	t.Helper()
	pick := map[string]any{"var": "pick"}
	bigObject := map[string]any{}
	for i := range 60 {
		bigObject[fmt.Sprintf("key-%02d", i)] = strings.Repeat("v", 20)
	}
	md := func(extra map[string]any) map[string]any {
		m := map[string]any{"flagSetId": "special"}
		maps.Copy(m, extra)
		return m
	}
	defs := []eval.Flag{
		{Key: "floats", DefaultVariant: "half", Targeting: pick, Metadata: md(nil), Variants: map[string]any{
			"half": 0.5, "tiny": 1e-7, "edge-small": 0.000001, "big": 1e21, "below-big": 1e20, "negzero": math.Copysign(0, -1),
			"min": 5e-324, "max": math.MaxFloat64, "third": 1.0 / 3, "nan": math.NaN(), "inf": math.Inf(1), "ninf": math.Inf(-1),
			"int": 42.0, "safe": 9007199254740991.0, "neg-safe": -9007199254740991.0, "unsafe": 9007199254740993.0}},
		{Key: "strings", DefaultVariant: "plain", Targeting: pick, Metadata: md(nil), Variants: map[string]any{
			"plain": "p", "empty": "", "escapes": "quote\" back\\ slash/ <tag> & \b\f\n\r\t\x00\x01\x1f\x7f \u2028\u2029 é € 😀 \ufffd",
			"bad-utf8": "a\xffb"}},
		{Key: "bad-variant-name", DefaultVariant: "bad\xffname", Metadata: md(nil), Variants: map[string]any{"bad\xffname": "v"}},
		{Key: "nan-metadata", DefaultVariant: "on", Metadata: md(map[string]any{"score": math.NaN()}), Variants: map[string]any{"on": true}},
		{Key: "inf-metadata", DefaultVariant: "on", Metadata: md(map[string]any{"score": math.Inf(-1)}), Variants: map[string]any{"on": true}},
		{Key: "rich-metadata", DefaultVariant: "on", Variants: map[string]any{"on": true}, Metadata: md(map[string]any{
			"s": "<a href=\"x\">&amp;</a>\n\u2028😀", "n": 1e21, "tiny": 1e-7, "i": 3.0, "b": false, "skipped": nil,
			"list": []any{1.0, "two", nil, map[string]any{"k": []any{}}}, "obj": map[string]any{"z": 1.0, "a": map[string]any{}}})},
		{Key: "objects", DefaultVariant: "small", Targeting: pick, Metadata: md(nil), Variants: map[string]any{
			"small": map[string]any{"a": 1.0}, "empty": map[string]any{}, "big": bigObject,
			"nested": map[string]any{"a": map[string]any{"b": []any{1.0, "x", nil, true, 1e21, math.Copysign(0, -1)}}, "<&>": "\u2028"},
			"nan":    map[string]any{"x": math.NaN()}, "unrepresentable": map[string]any{"x": struct{}{}},
			"list": []any{1.0}, "scalar": "s"}},
		{Key: "ints", DefaultVariant: "zero", Targeting: pick, Metadata: md(nil), Variants: map[string]any{
			"zero": 0.0, "neg": -9007199254740991.0, "max": 9007199254740991.0, "neg-one": -1.0}},
		{Key: "special-disabled", State: "DISABLED", DefaultVariant: "on", Metadata: md(nil), Variants: map[string]any{"on": "x"}},
		{Key: "special-no-default", Metadata: md(nil), Targeting: pick, Variants: map[string]any{"on": 1.5}},
		{Key: "host-ctx", DefaultVariant: "off", Metadata: md(nil), Variants: map[string]any{"on": true, "off": false},
			Targeting: map[string]any{"if": []any{map[string]any{"starts_with": []any{map[string]any{"var": "host"}, "127.0.0.1:"}}, "on", nil}}},
	}
	set := &flags.Set{}
	for i := range defs {
		f := defs[i]
		if f.State == "" {
			f.State = "ENABLED"
		}
		f.FlagSetID = "special"
		if _, errs := f.Compile("flags."+f.Key, false); len(errs) > 0 {
			t.Fatalf("compile %s: %v", f.Key, errs)
		}
		set.Flags = append(set.Flags, &f)
	}
	return set
}

// newDiffStore is the test store plus the special flags (a fourth source).
func newDiffStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.New([]string{"src-plain", "src-a", "src-b", "src-special"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for src, doc := range map[string]string{"src-plain": docPlain, "src-a": docA, "src-b": docB} {
		if err := st.Apply(src, []byte(doc)); err != nil {
			t.Fatalf("apply %s: %v", src, err)
		}
	}
	if err := st.ApplyParsed("src-special", specialFlags(t)); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestFastPathDecisionTable: every row of the decision table, over the three APIs,
// with the context left out and written, answers the same through the fast path as
// through connect-go, and takes the fast path.
func TestFastPathDecisionTable(t *testing.T) {
	d := newDiffPair(t, Options{Store: newDiffStore(t)})
	for _, tc := range decisionTable() {
		for _, a := range apis {
			for _, form := range []string{"context as given", "explicit empty context", "h2c"} {
				t.Run(tc.name+"/"+a.name+"/"+form, func(t *testing.T) {
					ctx := tc.ctx
					if ctx == nil && form == "explicit empty context" {
						ctx = map[string]any{}
					}
					c := rawCall{path: procPath(a.api, tc.typ), body: requestBody(t, tc.key, ctx), header: tc.header, h2: form == "h2c"}
					if _, why := d.compare(t, c); why != "" {
						t.Errorf("fast path not taken: %s", why)
					}
				})
			}
		}
	}
}

// TestFastPathSpecialValues: floats at protojson's formatting edges, NaN and
// infinities, int64 strings, escapes, invalid UTF-8 (protojson refuses it: the
// error must be connect-go's), metadata with NaN, objects a Struct cannot hold,
// bodies large enough to be gzipped.
func TestFastPathSpecialValues(t *testing.T) {
	d := newDiffPair(t, Options{Store: newDiffStore(t)})
	type call struct {
		key, pick string
		types     []string
	}
	var calls []call
	for _, v := range []string{"half", "tiny", "edge-small", "big", "below-big", "negzero", "min", "max", "third", "nan", "inf", "ninf", "int", "safe", "neg-safe", "unsafe"} {
		calls = append(calls, call{"floats", v, []string{"float", "int", "bool"}})
	}
	for _, v := range []string{"plain", "empty", "escapes", "bad-utf8"} {
		calls = append(calls, call{"strings", v, []string{"string", "object"}})
	}
	for _, v := range []string{"small", "empty", "big", "nested", "nan", "unrepresentable", "list", "scalar"} {
		calls = append(calls, call{"objects", v, []string{"object", "string"}})
	}
	for _, v := range []string{"zero", "neg", "max", "neg-one"} {
		calls = append(calls, call{"ints", v, []string{"int", "float"}})
	}
	calls = append(calls,
		call{"bad-variant-name", "", []string{"string"}},
		call{"nan-metadata", "", []string{"bool", "string"}},
		call{"inf-metadata", "", []string{"bool"}},
		call{"rich-metadata", "", []string{"bool"}},
		call{"special-disabled", "", []string{"string", "object", "int"}},
		call{"special-no-default", "", []string{"float", "object"}},
		call{"special-no-default", "on", []string{"float", "int"}},
	)
	for _, c := range calls {
		for _, typ := range c.types {
			for _, a := range apis {
				for _, gz := range []bool{false, true} {
					name := fmt.Sprintf("%s=%s/%s/%s/gzip=%v", c.key, c.pick, typ, a.name, gz)
					t.Run(name, func(t *testing.T) {
						var ctx map[string]any
						if c.pick != "" {
							ctx = map[string]any{"pick": c.pick}
						}
						rc := rawCall{path: procPath(a.api, typ), body: requestBody(t, c.key, ctx)}
						if gz {
							rc.header = http.Header{"Accept-Encoding": {"gzip"}}
						}
						if _, why := d.compare(t, rc); why != "" {
							t.Errorf("fast path not taken: %s", why)
						}
					})
				}
			}
		}
	}
	// the big object is compressed when the client accepts gzip, as connect-go does
	got, _ := d.compare(t, rawCall{path: procPath(apiV2, "object"), body: `{"flagKey":"objects","context":{"pick":"big"}}`,
		header: http.Header{"Accept-Encoding": {"br, gzip"}}})
	if got.ContentEncoding != "gzip" {
		t.Errorf("big object: Content-Encoding %q, want gzip", got.ContentEncoding)
	}
}

// TestFastPathRequestShapes: bodies and headers at the edges of what the fast path
// takes. Each answer must match connect-go's; wantFast says whether the fast path
// serves it or steps aside.
func TestFastPathRequestShapes(t *testing.T) {
	d := newDiffPair(t, Options{Store: newDiffStore(t)})
	v1Bool, v2Bool := procPath(apiV1, "bool"), procPath(apiV2, "bool")
	deep := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	var gzBody bytes.Buffer
	zw := gzip.NewWriter(&gzBody)
	_, _ = zw.Write([]byte(`{"flagKey":"plain"}`))
	_ = zw.Close()
	tests := []struct {
		name     string
		call     rawCall
		wantFast bool
	}{
		{"key only", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`}, true},
		{"proto field name", rawCall{path: v2Bool, body: `{"flag_key":"plain"}`}, true},
		{"null context", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":null}`}, true},
		{"null key", rawCall{path: v2Bool, body: `{"flagKey":null}`}, true},
		{"empty object", rawCall{path: v2Bool, body: `{}`}, true},
		{"context first", rawCall{path: v1Bool, body: `{"context":{"email":"a@b.c"},"flagKey":"targeted"}`}, true},
		{"whitespace", rawCall{path: v1Bool, body: " \r\n\t{ \"flagKey\" :\t\"targeted\" , \"context\" : { \"email\" : \"a@b.c\" } }\n "}, true},
		{"escaped key value", rawCall{path: v1Bool, body: `{"flagKey":"pl\u0061in"}`}, true},
		{"escaped field name", rawCall{path: v1Bool, body: `{"fl\u0061gKey":"plain"}`}, true},
		{"escapes in context", rawCall{path: v1Bool, body: `{"flagKey":"targeted","context":{"email":"a\u0040b.c","x":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}}`}, true},
		{"unknown fields are skipped", rawCall{path: v1Bool, body: `{"extra":{"a":[1,2,{"b":null}],"c":1e400,"d":"\u00e9"},"flagKey":"plain","more":[[]]}`}, true},
		{"unknown field with proto-like name", rawCall{path: v1Bool, body: `{"FlagKey":"missing","flagkey":"missing","flagKey":"plain"}`}, true},
		{"nested values", rawCall{path: v2Bool, body: `{"flagKey":"targeted","context":{"email":"a@b.c","o":{},"l":[],"n":null,"m":[{"x":[1,-0,0.5e-3,1E+2]}],"t":true,"f":false}}`}, true},
		{"number edges", rawCall{path: v2Bool, body: `{"flagKey":"targeted","context":{"a":-0,"b":1e308,"c":4.9e-324,"d":123456789012345678901234567890}}`}, true},
		{"charset content type", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}}, true},
		{"protocol version 1", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Protocol-Version": {"1"}}}, true},
		{"timeout", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Timeout-Ms": {"1000"}}}, true},
		{"negative timeout", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Timeout-Ms": {"-5"}}}, false},
		{"zero timeout", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Timeout-Ms": {"0"}}}, false},
		{"identity content encoding", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Content-Encoding": {"identity"}}}, true},
		{"accept gzip, small answer", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Accept-Encoding": {"gzip"}}}, true},
		{"chunked body", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, chunked: true}, true},
		{"h2c", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, h2: true}, true},
		{"deep context", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":` + deep + `}`}, false},
		{"deep unknown field", rawCall{path: v1Bool, body: `{"flagKey":"plain","x":` + deep + `}`}, false},
		{"duplicate field", rawCall{path: v1Bool, body: `{"flagKey":"plain","flagKey":"plain"}`}, false},
		{"duplicate field by both names", rawCall{path: v1Bool, body: `{"flagKey":"plain","flag_key":"targeted"}`}, false},
		{"duplicate null field", rawCall{path: v1Bool, body: `{"context":null,"context":{}}`}, false},
		{"duplicate context key", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"a":1,"a":2}}`}, false},
		{"array context", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":[]}`}, false},
		{"string context", rawCall{path: v2Bool, body: `{"flagKey":"plain","context":"x"}`}, false},
		{"number key", rawCall{path: v2Bool, body: `{"flagKey":5}`}, false},
		{"trailing data", rawCall{path: v1Bool, body: `{"flagKey":"plain"} x`}, false},
		{"two objects", rawCall{path: v1Bool, body: `{"flagKey":"plain"}{}`}, false},
		{"trailing comma", rawCall{path: v1Bool, body: `{"flagKey":"plain",}`}, false},
		{"empty body", rawCall{path: v1Bool, body: ``}, false},
		{"null body", rawCall{path: v1Bool, body: `null`}, false},
		{"array body", rawCall{path: v1Bool, body: `[]`}, false},
		{"invalid UTF-8", rawCall{path: v1Bool, body: "{\"flagKey\":\"pl\xffain\"}"}, false},
		{"raw control character", rawCall{path: v1Bool, body: "{\"flagKey\":\"pl\x01ain\"}"}, false},
		{"lone surrogate", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"x":"\ud800"}}`}, false},
		{"reversed surrogates", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"x":"\udc00\ud800"}}`}, false},
		{"bad escape", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"x":"\x"}}`}, false},
		{"number out of range", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"n":1e400}}`}, false},
		{"leading zero", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"n":01}}`}, false},
		{"bare literal", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"t":tru}}`}, false},
		{"literal run-on", rawCall{path: v1Bool, body: `{"flagKey":"plain","context":{"t":truex}}`}, false},
		{"extension name", rawCall{path: v1Bool, body: `{"[flagd.x]":1,"flagKey":"plain"}`}, false},
		{"uppercase content type", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Content-Type": {"Application/JSON"}}}, false},
		{"content type without space", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Content-Type": {"application/json;charset=utf-8"}}}, false},
		{"binary protobuf", rawCall{path: v1Bool, body: "\x0a\x05plain", header: http.Header{"Content-Type": {"application/proto"}}}, false},
		{"protocol version 2", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Protocol-Version": {"2"}}}, false},
		{"bad timeout", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Timeout-Ms": {"soon"}}}, false},
		{"timeout over 10 digits", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Timeout-Ms": {"12345678901"}}}, false},
		{"gzip body", rawCall{path: v1Bool, body: gzBody.String(), header: http.Header{"Content-Encoding": {"gzip"}}}, false},
		{"unknown compression", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Content-Encoding": {"br"}}}, false},
		{"Connect-Content-Encoding", rawCall{path: v1Bool, body: `{"flagKey":"plain"}`, header: http.Header{"Connect-Content-Encoding": {"gzip"}}}, false},
		{"GET", rawCall{method: http.MethodGet, path: v1Bool + "?encoding=json&message=%7B%7D"}, false},
		{"PUT", rawCall{method: http.MethodPut, path: v1Bool, body: `{"flagKey":"plain"}`}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, why := d.compare(t, tc.call)
			if tc.wantFast && why != "" {
				t.Errorf("fast path not taken: %s", why)
			}
			if !tc.wantFast && why == "" {
				t.Errorf("fast path taken, want connect-go")
			}
		})
	}
	// other methods are not fast procedures at all
	for _, c := range []rawCall{
		{path: "/flagd.evaluation.v1.Service/ResolveAll", body: `{}`},
		{path: "/schema.v1.Service/ResolveAll", body: `{"context":{"x":1}}`},
		{path: "/flagd.evaluation.v1.Service/EventStream", body: `{}`},
		{path: "/flagd.evaluation.v1.Service/ResolveBooleanX", body: `{}`},
	} {
		if _, why := d.compare(t, c); why != "none" {
			t.Errorf("%s: observed %q, want no fast path decision", c.path, why)
		}
	}
}

// TestFastPathLimitsAndHeaders: a body over the limit (declared or chunked) gets
// connect-go's answer; --context-from-header Host sees the Host header connect-go
// adds to the request.
func TestFastPathLimitsAndHeaders(t *testing.T) {
	const limit = 1024
	enricher := &service.Enricher{Static: map[string]string{"env": "prod"}, Headers: map[string]string{"host": "host", "X-User": "user"}}
	d := newDiffPair(t, Options{Store: newDiffStore(t), MaxRequestBody: limit, Enricher: enricher})
	big := `{"flagKey":"plain","context":{"blob":"` + strings.Repeat("x", 2*limit) + `"}}`
	exact := `{"flagKey":"plain","context":{"blob":"` + strings.Repeat("x", limit-len(`{"flagKey":"plain","context":{"blob":""}}`)) + `"}}`
	tests := []struct {
		name     string
		call     rawCall
		wantFast bool
	}{
		{"declared length over the limit", rawCall{path: procPath(apiV1, "bool"), body: big}, false},
		{"chunked body over the limit", rawCall{path: procPath(apiV2, "bool"), body: big, chunked: true}, false},
		{"body of exactly the limit", rawCall{path: procPath(apiV2, "bool"), body: exact}, true},
		{"chunked body of exactly the limit", rawCall{path: procPath(apiV2, "bool"), body: exact, chunked: true}, true},
		{"Host mapped into the context", rawCall{path: procPath(apiV2, "bool"), body: `{"flagKey":"host-ctx"}`}, true},
		{"Host mapped, h2c", rawCall{path: procPath(apiV1, "bool"), body: `{"flagKey":"host-ctx"}`, h2: true}, true},
		{"Host not mapped on schema.v1", rawCall{path: procPath(apiSchemaV1, "bool"), body: `{"flagKey":"host-ctx"}`}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := d.compare(t, tc.call)
			if tc.wantFast != (why == "") {
				t.Errorf("fast path decision %q, want fast=%v", why, tc.wantFast)
			}
			if tc.name == "Host mapped into the context" && !strings.Contains(got.Raw, `"reason":"TARGETING_MATCH"`) {
				t.Errorf("Host header not in the context: %s", got.Raw)
			}
		})
	}
}

// TestFastPathRandom sends generated contexts, selectors, mapped headers and flag
// keys over the three APIs and five types.
func TestFastPathRandom(t *testing.T) {
	d := newDiffPair(t, Options{Store: newDiffStore(t)})
	r := rand.New(rand.NewPCG(4, 2))
	keys := []string{"plain", "bool-static", "string-flag", "int-flag", "float-flag", "object-flag", "targeted", "no-default",
		"no-default-targeted", "disabled", "parse-error", "general-error", "array-flag", "static-ctx", "header-ctx", "shared",
		"b-only", "missing", "floats", "strings", "objects", "ints", "rich-metadata", "special-no-default"}
	selectors := []string{"", "", "", "flagSetId=set-a", "flagSetId=set-b", "flagSetId=special", "flagSetId=", "source=src-a", "src-b", "team=x"}
	types := []string{"bool", "string", "int", "float", "object"}
	picks := []string{"half", "tiny", "big", "nan", "inf", "escapes", "nested", "big", "neg", "max", "on", "nope"}
	for i := range 400 {
		ctx := map[string]any{}
		for range r.IntN(4) {
			ctx[randString(r)] = randValue(r, 0)
		}
		switch r.IntN(6) {
		case 0:
			ctx["email"] = []string{"a@b.c", "x@y.z"}[r.IntN(2)]
		case 1:
			ctx["max"] = r.IntN(2) == 0
		case 2:
			ctx["vip"] = randValue(r, 2)
		case 3:
			ctx["pick"] = picks[r.IntN(len(picks))]
		case 4:
			ctx["user"] = "bob"
		}
		if r.IntN(5) == 0 {
			ctx = nil
		}
		header := http.Header{}
		if s := selectors[r.IntN(len(selectors))]; s != "" {
			header.Set("Flagd-Selector", s)
		}
		if r.IntN(3) == 0 {
			header.Set("X-User", []string{"bob", "alice", ""}[r.IntN(3)])
		}
		body := requestBody(t, keys[r.IntN(len(keys))], ctx)
		if r.IntN(2) == 0 { // reformat with whitespace
			var b bytes.Buffer
			if err := json.Indent(&b, []byte(body), " ", "\t"); err != nil {
				t.Fatal(err)
			}
			body = b.String()
		}
		a := apis[r.IntN(len(apis))]
		c := rawCall{path: procPath(a.api, types[r.IntN(len(types))]), body: body, header: header, h2: r.IntN(4) == 0}
		if _, why := d.compare(t, c); why != "" {
			t.Errorf("request %d (%s %s): fast path not taken: %s", i, c.path, body, why)
		}
	}
}

// randString is a short string from a palette that exercises escaping.
func randString(r *rand.Rand) string {
	palette := []string{"a", "b", "Z", "0", " ", "\"", "\\", "/", "<", ">", "&", "\n", "\t", "\x00", "\x1f", "\x7f", "é", "€", "😀", "\u2028", "\ufffd", "\uffff"}
	var b strings.Builder
	for range r.IntN(8) {
		b.WriteString(palette[r.IntN(len(palette))])
	}
	return b.String()
}

// randValue is a random JSON value as encoding/json decodes it.
func randValue(r *rand.Rand, depth int) any {
	switch n := r.IntN(9); {
	case n == 0:
		return nil
	case n == 1:
		return r.IntN(2) == 0
	case n == 2:
		specials := []float64{0, math.Copysign(0, -1), 1e-7, 1e21, 5e-324, math.MaxFloat64, 9007199254740993, -1.5}
		return specials[r.IntN(len(specials))]
	case n == 3:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-10))
	case n == 4 || depth >= 3:
		return randString(r)
	case n <= 6:
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = randValue(r, depth+1)
		}
		return l
	default:
		m := map[string]any{}
		for range r.IntN(4) {
			m[randString(r)] = randValue(r, depth+1)
		}
		return m
	}
}

// TestFastPathClients: the generated connect-go clients with the JSON codec go
// through the fast path (Connect-Timeout-Ms and Accept-Encoding included); the
// binary codec, gRPC and gRPC-Web do not.
func TestFastPathClients(t *testing.T) {
	d := newDiffPair(t, Options{})
	hc := h2cClient(t)
	for _, p := range protocols() {
		t.Run(p.name, func(t *testing.T) {
			ctx := testContext(t) // a deadline: clients send Connect-Timeout-Ms
			v1 := evaluationv1connect.NewServiceClient(hc, d.fast.url, p.opts...)
			v2 := evaluationv2connect.NewServiceClient(hc, d.fast.url, append(p.opts, connect.WithSendGzip())...)
			old := schemav1connect.NewServiceClient(hc, d.fast.url, p.opts...)
			d.mu.Lock()
			d.seen = nil
			d.mu.Unlock()
			want := outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: map[string]any{"flagSetId": "set-a", "team": "core"}}
			for _, got := range []outcome{
				callV1(ctx, t, v1, "bool", "targeted", map[string]any{"email": "a@b.c"}, nil),
				callV2(ctx, t, v2, "bool", "targeted", map[string]any{"email": "a@b.c"}, nil), // small: sent uncompressed
				callSchemaV1(ctx, t, old, "bool", "targeted", map[string]any{"email": "a@b.c"}, nil),
			} {
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			}
			d.mu.Lock()
			seen := d.seen
			d.mu.Unlock()
			// WithSendGzip compresses every request body: connect-go takes those
			wantSeen := []string{"", "compressed body", ""}
			if p.name != "connect-json" {
				wantSeen = []string{"content type", "content type", "content type"}
			}
			if diff := cmp.Diff(wantSeen, seen); diff != "" {
				t.Errorf("fast path decisions (-want +got):\n%s", diff)
			}
		})
	}
}
