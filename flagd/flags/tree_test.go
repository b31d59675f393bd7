package flags

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// treeCases are documents on the corners of JSON's grammar and of encoding/json's
// decoding, valid and not.
var treeCases = []string{
	`{}`, `[]`, ` {"a" : [1, -0, 0.5, -1.5e3, 1E+2, 2e-2, true, false, null, "x"]} `,
	`{"a":1,"a":2}`, `"top"`, `12`, `-0`, `null`,
	`{"s":"\" \\ \/ \b \f \n \r \t \u00e9 \u20AC \ud83d\ude00"}`,
	`{"lone":"\ud83d", "low":"\ude00x", "pair-broken":"\ud83d\u0041", "hi-hi":"\ud83d\ud83d\ude00"}`,
	"{\"bad-utf8\":\"a\xffb\xc3\"}", "{\"utf8\":\"é€😀\"}",
	// not accepted by encoding/json
	``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a":1}x`, `{"a":1} {}`, `01`, `1.`, `.5`, `-`, `1e`, `1e+`,
	`+1`, `tru`, `nul`, `"\x"`, `"\u12"`, `"\u12g4"`, "\"a\tb\"", `"abc`, `1e999`, `{1:2}`, `[` + strings.Repeat("[", 10001) + strings.Repeat("]", 10002),
	"\xef\xbb\xbf{}", `NaN`, `{"a":[1,{"b":"\ud83d\u00zz"}]}`,
}

// TestDecodeTreeMatchesEncodingJSON: decodeTree accepts what encoding/json accepts
// and gives the same values, on documents chosen for the corners.
func TestDecodeTreeMatchesEncodingJSON(t *testing.T) {
	accepted, rejected := 0, 0
	for _, doc := range treeCases {
		if sameAsEncodingJSON(t, []byte(doc)) {
			accepted++
		} else {
			rejected++
		}
	}
	if accepted < 10 || rejected < 20 {
		t.Errorf("the cases should exercise both sides: %d accepted, %d rejected", accepted, rejected)
	}
}

// FuzzDecodeTree holds decodeTree to encoding/json: the same documents accepted,
// the same values decoded.
func FuzzDecodeTree(f *testing.F) {
	for _, doc := range treeCases {
		f.Add([]byte(doc))
	}
	files, _ := filepath.Glob(filepath.Join("../../../shared/flagd-testbed", "flags", "*.json"))
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsEncodingJSON(t, data) })
}

// sameAsEncodingJSON compares decodeTree with json.Unmarshal on data and reports
// whether encoding/json accepted it.
func sameAsEncodingJSON(t *testing.T, data []byte) bool {
	t.Helper()
	var want any
	err := json.Unmarshal(data, &want)
	got, ok := decodeTree(data)
	if ok != (err == nil) {
		t.Errorf("%q: decodeTree ok=%v, encoding/json error %v", truncate(data), ok, err)
		return err == nil
	}
	if ok {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-encoding/json +decodeTree):\n%s", truncate(data), diff)
		}
	}
	return ok
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
