package flags

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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
	// flag documents: the "flags" member's flags are left raw by decodeDocument
	`{"flags":{"a":{"state":"ENABLED","variants":{"on":1e2}},"b":[1,"\u00e9"],"a":{"x":null}},"flags2":{"c":1}}`,
	`{"flags":[{"key":"a"},[],"s",-1.5,null,true],"metadata":{"flags":{"n":1}}}`,
	`{"flags":{}}`, `{"flags":[]}`, `{"flags":null}`, `{"flags":"x"}`, `{"x":{"flags":{"a":1}}}`,
	`{"flags":{"a":{"n":1e999}}}`, `{"flags":[{"s":"\x"}]}`, `{"flags":{"a":01}}`, `{"flags":{"a":{"b":}}}`,
	`{"flags":{"a":1,}}`, `{"flags":[1 2]}`, `{"flags":{"a" 1}}`, `{"flags":{"a":"` + "\x01" + `"}}`,
	`{"flags":[` + strings.Repeat("[", 9997) + strings.Repeat("]", 9997) + `]}`,
	`{"flags":[` + strings.Repeat("[", 9998) + strings.Repeat("]", 9998) + `]}`,
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
	if ok && !reflect.DeepEqual(want, got) { // DeepEqual first: cmp is slow on deep nesting
		t.Errorf("%q (-encoding/json +decodeTree):\n%s", truncate(data), cmp.Diff(want, got))
	}
	// decodeDocument, its raw flags decoded as the compile workers decode them
	doc, docOK := decodeDocument(data)
	if docOK {
		doc, docOK = expandRawFlags(doc)
	}
	if docOK != (err == nil) {
		t.Errorf("%q: decodeDocument (flags decoded) ok=%v, encoding/json error %v", truncate(data), docOK, err)
	} else if docOK && !reflect.DeepEqual(want, doc) {
		t.Errorf("%q (-encoding/json +decodeDocument):\n%s", truncate(data), cmp.Diff(want, doc))
	}
	return ok
}

// expandRawFlags decodes the rawFlag values decodeDocument leaves in "flags".
func expandRawFlags(doc any) (any, bool) {
	root, _ := doc.(map[string]any)
	switch fl := root["flags"].(type) {
	case map[string]any:
		for k, v := range fl {
			raw, isRaw := v.(rawFlag)
			if !isRaw {
				return nil, false // every flag of an object is left raw
			}
			var ok bool
			if fl[k], ok = decodeTree(raw); !ok {
				return nil, false
			}
		}
	case []any:
		for i, v := range fl {
			raw, isRaw := v.(rawFlag)
			if !isRaw {
				return nil, false
			}
			var ok bool
			if fl[i], ok = decodeTree(raw); !ok {
				return nil, false
			}
		}
	}
	return doc, true
}

func truncate(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
