package ofrep

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
)

// referenceDecode is what the service did before parseRequest: encoding/json's
// Decoder over the body, its first value into request.
func referenceDecode(body []byte) (map[string]any, error) {
	var req request
	err := json.NewDecoder(bytes.NewReader(body)).Decode(&req)
	if err == io.EOF {
		err = nil
	}
	return req.Context, err
}

// sameContext compares a parsed context with encoding/json's: equal, the top
// level's nil (absent, null, {}) being the empty context.
func sameContext(t *testing.T, body []byte, got map[string]any) {
	t.Helper()
	want, err := referenceDecode(body)
	if err != nil {
		t.Fatalf("parseRequest accepted %q, which encoding/json refuses: %v", body, err)
	}
	if len(want) == 0 && len(got) == 0 {
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("parseRequest(%q) (-encoding/json +parseRequest):\n%s", body, diff)
	}
}

var decodeSeeds = []string{
	``, `{}`, `{"context":null}`, `{"context":{}}`, ` { "context" : { } } `,
	`{"context":{"targetingKey":"u-1","email":"a@example.com","n":1.5e3,"neg":-0,"b":true,"f":false,"z":null}}`,
	`{"context":{"nested":{"a":[1,"x",null,{"b":[]},{}],"e":{}},"esc":"\u00e9\n\t\"\\\/\ud83d\ude00"}}`,
	`{"context":{"big":1e400}}`, `{"context":{"a":1,"a":2}}`, `{"Context":{"a":1}}`, `{"CONTEXT":{"a":1}}`,
	`{"context":"not an object"}`, `{"context":[1,2]}`, `{"context":{"a":1}} trailing`, `{"context":{"a":1}}{"context":{"b":2}}`,
	`{"context":{"a":1},"other":2}`, `{"other":2,"context":{"a":1}}`, `{"context":{"a":"\xff"}}`, `{"context":{"a":"\ud800"}}`,
	`{"context":{"a":01}}`, `{"context":{"a":1.}}`, `{"context":{"a":tru}}`, `{"context":{"a":truex}}`, `{"context":{"a":"x`,
	`[]`, `null`, `"x"`, `{"context":{"d":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}}`,
}

// TestParseRequestMatchesEncodingJSON: every body parseRequest accepts decodes to
// what encoding/json decodes, and the shapes clients send are accepted (the fast
// path is taken, not only correct).
func TestParseRequestMatchesEncodingJSON(t *testing.T) {
	var p jsonwire.Parser
	accepted := map[string]bool{}
	for _, body := range decodeSeeds {
		if ctx, ok := parseRequest(&p, []byte(body)); ok {
			accepted[body] = true
			sameContext(t, []byte(body), ctx)
		}
	}
	for _, body := range decodeSeeds[1:7] {
		if !accepted[body] {
			t.Errorf("%q is left to encoding/json: the shape clients send must be parsed", body)
		}
	}
	for _, body := range decodeSeeds[7:] {
		if accepted[body] {
			t.Errorf("%q parsed: encoding/json's own rules (names, duplicates, types, trailing data, invalid input) must decide it", body)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var p jsonwire.Parser
		if ctx, ok := parseRequest(&p, body); ok {
			sameContext(t, body, ctx)
		}
	})
}

// TestDecodeFallbacks: bodies parseRequest leaves to encoding/json are answered as
// before — case-insensitive names, the last duplicate, a context that is not an
// object evaluated as empty, data after the request ignored — and a body over the
// limit is 413 even when it begins with a whole request.
func TestDecodeFallbacks(t *testing.T) {
	svc := New(Options{Store: planStore(t), Log: zerolog.Nop(), MaxRequestBody: 1000})
	for _, c := range []struct {
		body   string
		status int
		want   string // the answer contains it
	}{
		{`{"Context":{"email":"a@example.com"}}`, 200, `"value":"yes"`},
		{`{"context":{"email":"a@other.org","email":"a@example.com"}}`, 200, `"value":"yes"`},
		{`{"context":"a@example.com"}`, 200, `"value":"no"`},
		{`{"context":{"email":"a@example.com"}} and then some`, 200, `"value":"yes"`},
		{`{"context":{"email":"a@example.com"}}` + strings.Repeat(" ", 1000), http.StatusRequestEntityTooLarge, `request body too large`},
		{`{"context":{"email":`, 400, `INVALID_CONTEXT`},
	} {
		req := httptest.NewRequest(http.MethodPost, SingleRoute[:len(SingleRoute)-len("{key}")]+"targeted", strings.NewReader(c.body))
		w := httptest.NewRecorder()
		svc.Handler().ServeHTTP(w, req)
		if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
			t.Errorf("%.60q: %d %s, want %d with %s", c.body, w.Code, w.Body.String(), c.status, c.want)
		}
	}
}

// TestPooledBodiesWiped: a request body (an evaluation context: personal data)
// does not stay in pooled memory — neither the bytes read nor the unescaped
// strings of the parser — whether the fast parser or encoding/json decoded it.
func TestPooledBodiesWiped(t *testing.T) {
	svc := New(Options{Store: planStore(t), Log: zerolog.Nop(), MaxRequestBody: 1 << 20})
	var made int
	svc.bodies.New = func() any { made++; return &requestBody{} }
	const marker = "ada.lovelace@example.com"
	for _, body := range []string{
		`{"context":{"email":"` + marker + `","escaped":"\u00e9` + marker + `"}}`, // parsed
		`{"Context":{"email":"` + marker + `"}}`,                                  // encoding/json
		`{"context":{"email":"` + marker + `"`,                                    // malformed
	} {
		w := postBulk(t, svc.Handler(), body, nil)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("%s: status %d", body, w.Code)
		}
	}
	inspected := 0
	for range 100 {
		before := made
		rb := svc.bodies.Get().(*requestBody)
		if made != before {
			break // the pool is empty
		}
		inspected++
		input, scratch := rb.parser.Retained()
		all := rb.in[:cap(rb.in)]
		if len(rb.in) != 0 || input != nil || bytes.ContainsFunc(all, func(r rune) bool { return r != 0 }) || bytes.ContainsFunc(scratch, func(r rune) bool { return r != 0 }) {
			t.Errorf("a pooled body keeps a request: in %q, parser input %q, scratch %q", all, input, scratch)
		}
	}
	if inspected == 0 {
		t.Skip("the pool dropped every body (a GC ran): nothing to inspect")
	}
}
