package ofrep

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// flagd's response structs (core/pkg/service/ofrep/models.go), encoded with
// encoding/json: the reference our encoder must reproduce byte for byte.
type flagdSuccess struct {
	Value    any            `json:"value,omitempty"`
	Key      string         `json:"key"`
	Reason   string         `json:"reason"`
	Variant  string         `json:"variant,omitempty"`
	Metadata map[string]any `json:"metadata"`
}

type flagdError struct {
	Key          string         `json:"key"`
	ErrorCode    string         `json:"errorCode"`
	ErrorDetails string         `json:"errorDetails"`
	Metadata     map[string]any `json:"metadata"`
}

// flagdMetadata merges as flagd's evaluator does: the selector reflection, then
// every non-nil value of the flag metadata.
func flagdMetadata(sel store.Selector, md map[string]any) map[string]any {
	out := sel.Reflection()
	for k, v := range md {
		if v != nil {
			out[k] = v
		}
	}
	return out
}

var trickyValues = []any{
	nil, true, false, "", "plain", "<script>&amp;</script>", "quote\" backslash\\ slash/",
	"\x00\x01\x08\x0c\n\r\t\x1f\x7f", "bad utf8 \xff\xfe end", "line\u2028para\u2029", "émoji 🚩 日本",
	0.0, math.Copysign(0, -1), 1.0, -1.5, 1e20, 1e21, 123456789012345678901234.0, 1e-6, 1e-7, 5e-324,
	math.MaxFloat64, -1e-10, 0.1, 2.5e-8, float64(1 << 53), int64(-42), 7,
	[]any{}, []any{1.0, "two", nil, []any{true}},
	map[string]any{}, map[string]any{"z": 1.0, "a": map[string]any{"y": nil, "b": []any{"<"}}, "é": "x", "A": false},
}

//nolint:gocognit // the loops walk the product of values, selectors and metadata; each iteration is one flat comparison
func TestEncoderMatchesEncodingJSON(t *testing.T) {
	selectors := []store.Selector{{}, {Kind: store.SelectFlagSetID, Value: "set<1>"}, {Kind: store.SelectFlagSetID}, {Kind: store.SelectSource, Value: "file:/x.json"}}
	metadatas := []map[string]any{nil, {}, {"flagSetId": "own", "version": "2", "n": 1.0, "on": true, "nil": nil}, {"source": nil, "team": "web"}}
	e := &encoder{}
	for _, v := range trickyValues {
		for _, sel := range selectors {
			for _, md := range metadatas {
				refl := reflectionOf(sel)
				for _, res := range []eval.Resolution{
					{Value: v, Variant: "var<>", Reason: eval.ReasonTargetingMatch, Metadata: md},
					{Value: v, Reason: eval.ReasonDefault, Metadata: md},
				} {
					want, err := json.Marshal(flagdSuccess{Value: res.Value, Key: "k&\u2028", Reason: string(res.Reason), Variant: res.Variant, Metadata: flagdMetadata(sel, md)})
					if err != nil {
						t.Fatal(err)
					}
					e.buf = e.buf[:0]
					if status := e.evaluation("k&\u2028", res, refl); status != 200 {
						t.Errorf("status %d for a success", status)
					}
					if diff := cmp.Diff(string(want), string(e.buf)); diff != "" {
						t.Errorf("value %#v, selector %v, metadata %v (-encoding/json +ours):\n%s", v, sel, md, diff)
					}
				}
			}
		}
	}
	for _, tc := range []struct {
		code    eval.ErrorCode
		status  int
		details string
	}{
		{eval.ErrorFlagNotFound, 404, "flag `k&\u2028` does not exist"},
		{eval.ErrorParse, 400, "error parsing the flag `k&\u2028`"},
		{eval.ErrorTypeMismatch, 400, "error processing the flag for evaluation"},
		{eval.ErrorGeneral, 400, "error processing the flag for evaluation"},
	} {
		for _, sel := range selectors {
			for _, md := range metadatas {
				code := tc.code
				if code == eval.ErrorTypeMismatch {
					code = eval.ErrorGeneral
				}
				want, err := json.Marshal(flagdError{Key: "k&\u2028", ErrorCode: string(code), ErrorDetails: tc.details, Metadata: flagdMetadata(sel, md)})
				if err != nil {
					t.Fatal(err)
				}
				e.buf = e.buf[:0]
				status := e.evaluation("k&\u2028", eval.Resolution{Reason: eval.ReasonError, ErrorCode: tc.code, Metadata: md}, reflectionOf(sel))
				if diff := cmp.Diff(string(want), string(e.buf)); diff != "" || status != tc.status {
					t.Errorf("%s, selector %v, metadata %v: status %d (want %d) (-encoding/json +ours):\n%s", tc.code, sel, md, status, tc.status, diff)
				}
			}
		}
	}
	if len(e.keys) != 0 {
		t.Errorf("key scratch not released: %v", e.keys)
	}
}

func TestReflectionMatchesStore(t *testing.T) {
	for _, sel := range []store.Selector{{}, {Kind: store.SelectFlagSetID, Value: "s"}, {Kind: store.SelectFlagSetID}, {Kind: store.SelectSource, Value: "u"}} {
		e := &encoder{}
		e.metadata(reflectionOf(sel), nil)
		want, err := json.Marshal(sel.Reflection())
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(e.buf)); diff != "" {
			t.Errorf("selector %v (-Reflection +ours):\n%s", sel, diff)
		}
	}
}

// FuzzEncodeValue checks the encoder against encoding/json on any decoded JSON value.
func FuzzEncodeValue(f *testing.F) {
	for _, v := range trickyValues {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"a":{"b":[1e400]}}`))
	f.Add([]byte("\"\\ud800\""))
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Skip()
		}
		e := &encoder{}
		e.value(v)
		if string(want) != string(e.buf) {
			t.Fatalf("input %q: encoding/json %s, ours %s", data, want, e.buf)
		}
	})
}
