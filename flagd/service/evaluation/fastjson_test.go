package evaluation

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// FuzzRequestParser: whatever the fast path's decoder accepts, protojson (the
// connect-go codec) accepts too, with the same flag key and the same context as
// Struct.AsMap gives. What the decoder refuses goes to connect-go, so refusing more
// is safe; accepting more, or decoding differently, is a bug.
func FuzzRequestParser(f *testing.F) {
	for _, s := range []string{
		`{"flagKey":"plain","context":{}}`,
		`{"flag_key":"x","context":{"a":[1,{"b":null}],"c":"\u00e9\ud83d\ude00","d":-0.5e-3,"e":true}}`,
		`{"flagKey":null,"context":null}`,
		`{}`, ``, `null`, `[]`, `{"flagKey":5}`, `{"context":[]}`,
		`{"flagKey":"a","flagKey":"b"}`, `{"flagKey":"a","flag_key":"b"}`, `{"context":{"a":1,"a":2}}`,
		`{"x":{"y":[1e400,"\ud800"]},"flagKey":"a"}`, `{"context":{"x":"\ud800"}}`, `{"context":{"x":"\udc00\ud800"}}`,
		`{"context":{"n":1e400}}`, `{"context":{"n":1e-400}}`, `{"context":{"n":01}}`, `{"context":{"n":1.}}`, `{"context":{"n":1e}}`,
		`{"context":{"n":-}}`, `{"context":{"t":truex}}`, `{"context":{"t":tru}}`, `{"[a.b]":1}`, `{"[":1}`, `{"]":1}`,
		`{"flagKey":"a"} `, `{"flagKey":"a"}x`, `{"flagKey":"a",}`, `{"flagKey" : "a" , "context" : { "k" : [ ] } }`,
		"{\"flagKey\":\"\xff\"}", "{\"flagKey\":\"\x01\"}", `{"flagKey":"\x"}`, `{"flagKey":"\u00"}`, `{"fl\u0061gKey":"a"}`,
		`{"context":{"":{"":{"":[[[[]]]]}}}}`, `{"context":{"a":1E+2,"b":0.0,"c":-0,"d":123456789012345678901234567890}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p requestParser
		key, ctx, ok := p.parse(data)
		if !ok {
			return
		}
		var req evalv1.ResolveBooleanRequest
		codec := protolimit.NewConnectJSON("json", jsonOptions)
		if err := codec.Unmarshal(data, &req); err != nil {
			t.Fatalf("the fast path accepts %q, protojson refuses it: %v", data, err)
		}
		if key != req.GetFlagKey() {
			t.Errorf("flag key %q, protojson %q", key, req.GetFlagKey())
		}
		want := structMap(req.GetContext())
		if diff := cmp.Diff(want, ctx, cmp.Comparer(sameFloat)); diff != "" {
			t.Errorf("context of %q (-protojson +fast):\n%s", data, diff)
		}
	})
}

// sameFloat tells -0 from 0 (and would treat NaNs alike).
func sameFloat(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || (math.IsNaN(a) && math.IsNaN(b))
}

// TestFastErrorsMatchConnect: the fast path's error responses are byte-for-byte
// what connect-go's own error writer sends for a unary Connect JSON request, for
// every code, for messages that need escaping and for the context errors.
func TestFastErrorsMatchConnect(t *testing.T) {
	svc := newService(Options{Store: newTestStore(t)}, true)
	var errs []error
	for code := connect.Code(1); code <= 16; code++ {
		for _, msg := range []string{"", "Flag not found", "<a> & \"q\" \\ é \u2028 \xff \x01\t"} {
			if msg == "" {
				errs = append(errs, connect.NewError(code, nil))
				continue
			}
			errs = append(errs, connect.NewError(code, errors.New(msg)))
		}
	}
	errs = append(errs, contextError(context.DeadlineExceeded), contextError(context.Canceled), errors.New("not a connect error"))
	type response struct {
		Status      int
		ContentType string
		Body        string
	}
	for _, err := range errs {
		req := httptest.NewRequest(http.MethodPost, "/flagd.evaluation.v1.Service/ResolveBoolean", nil)
		req.Header.Set("Content-Type", "application/json")
		want := httptest.NewRecorder()
		if werr := connect.NewErrorWriter().Write(want, req, err); werr != nil {
			t.Fatal(werr)
		}
		got := httptest.NewRecorder()
		svc.writeFastError(got, err, &fastBuffers{})
		if diff := cmp.Diff(
			response{want.Code, want.Header().Get("Content-Type"), want.Body.String()},
			response{got.Code, got.Header().Get("Content-Type"), got.Body.String()}); diff != "" {
			t.Errorf("%v (-connect-go +fast):\n%s", err, diff)
		}
	}
}

// TestAcceptsGzip follows connect-go's negotiation: names split at commas and
// spaces, matched exactly, no weights.
func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"", false}, {"gzip", true}, {"br, gzip", true}, {"deflate,gzip", true}, {" gzip ", true},
		{"identity", false}, {"gzip;q=0.5", false}, {"GZIP", false}, {"x-gzip", false}, {",", false},
	}
	for _, tc := range tests {
		if got := acceptsGzip(tc.accept); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.accept, got, tc.want)
		}
	}
}
