package flags_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// fuzzTestbed is the flagd-testbed checkout, relative to this package directory.
const fuzzTestbed = "../../../shared/flagd-testbed"

// fuzzSeedDocuments reads the testbed's flag files: every flags/*.json and the
// evaluator's testkit-flags.json. A missing testbed fails the fuzz target.
func fuzzSeedDocuments(f *testing.F) [][]byte {
	f.Helper()
	files, err := filepath.Glob(filepath.Join(fuzzTestbed, "flags", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no flagd-testbed flag files in %s/flags (the repository must be checked out with shared/ beside it): %v", fuzzTestbed, err)
	}
	files = append(files, filepath.Join(fuzzTestbed, "evaluator", "flags", "testkit-flags.json"))
	docs := make([][]byte, 0, len(files))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatalf("reading flagd-testbed seed (the repository must be checked out with shared/ beside it): %v", err)
		}
		docs = append(docs, data)
	}
	return docs
}

// fuzzTrickySeeds are hand-written documents for the corners the testbed does not reach.
func fuzzTrickySeeds() []string {
	return []string{
		// YAML, with an anchor and a merge key
		"flags:\n  yaml-flag:\n    state: ENABLED\n    variants: &v {\"on\": true, \"off\": false}\n    defaultVariant: \"on\"\n    targeting:\n      if:\n        - in: [\"@example.com\", {var: email}]\n        - \"off\"\n",
		// array form, the same key in two flag sets and twice in one
		`{"flags":[{"key":"a","state":"ENABLED","variants":{"x":1,"y":2.5},"defaultVariant":"x","metadata":{"flagSetId":"s1"}},
	  {"key":"a","state":"DISABLED","variants":{"x":"x"},"defaultVariant":"x","metadata":{"flagSetId":"s2"}},
	  {"key":"a","state":"ENABLED","variants":{"x":{"o":[1]}},"defaultVariant":"x","metadata":{"flagSetId":"s2"}}],
	  "metadata":{"flagSetId":"set","version":"1"}}`,
		// $ref cycle, and a $ref to a missing evaluator
		`{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a","targeting":{"if":[{"$ref":"one"},"b",{"$ref":"nope"}]}}},
	  "$evaluators":{"one":{"and":[{"$ref":"two"},true]},"two":{"or":[{"$ref":"one"}]}}}`,
		// nested $refs fanning out
		`{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a","targeting":{"if":[{"$ref":"e3"},"b","a"]}}},
	  "$evaluators":{"e1":{"==":[{"var":"x"},1]},"e2":{"and":[{"$ref":"e1"},{"$ref":"e1"}]},"e3":{"or":[{"$ref":"e2"},{"$ref":"e2"}]}}}`,
		// deep nesting of if and of map
		`{"flags":{"deep":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a","targeting":` +
			strings.Repeat(`{"if":[{"var":"x"},`, 40) + `"b"` + strings.Repeat(`,"a"]}`, 40) + `}}}`,
		`{"flags":{"deep":{"state":"ENABLED","variants":{"true":true,"false":false},"defaultVariant":"false","targeting":{"some":[` +
			strings.Repeat(`{"map":[`, 30) + `{"var":"xs"}` + strings.Repeat(`,{"merge":[{"var":""},1]}]}`, 30) + `,{"==":[{"var":""},1]}]}}}}`,
		// every custom operator, numbers as variant names, odd variant values
		`{"flags":{"c":{"state":"ENABLED","variants":{"1":"one","true":"t","x":"x","":"empty"},"defaultVariant":"x","targeting":
	  {"if":[{"sem_ver":[{"var":"version"},">=","1.2"]},{"fractional":[{"var":"targetingKey"},["1",50],[true,50]]},
	         {"starts_with":[{"var":"email"},"a"]},1,{"ends_with":[{"var":"email"},".org"]},"",{"cat":["x"]}]}},
	  "n":{"state":"ENABLED","variants":{"big":9007199254740993,"frac":1.5,"neg":-0,"nul":null,"arr":[1]},"defaultVariant":"big"}}}`,
		// timestamps, $flagd, disabled without a default variant, unknown members
		`{"flags":{"t":{"state":"DISABLED","variants":{"a":"a"},"targeting":{"if":[{">":[{"var":"$flagd.timestamp"},1]},{"var":"$flagd.flagKey"}]}},
	  "u":{"state":"ON","variants":{"a":"a"},"targeting":null,"extra":1}},"$schema":"x","other":[]}`,
		// not a document
		`[]`, `null`, `{"flags":"x"}`, `{"flags":{"":{}}}`, "\xff\xfe", `flags: [1, 2`,
	}
}

// fuzzContexts are the evaluation contexts of the seed corpus.
func fuzzContexts() []string {
	return []string{
		`{}`,
		`{"targetingKey":"user-1","email":"ada@example.com","version":"2.3.0","age":41,"x":1,"xs":[1,2,3]}`,
		`{"$flagd":{"flagKey":"spoofed"},"targetingKey":7,"email":null,"version":[1],"x":"1"}`,
		`[1]`,
		`not json`,
	}
}

func fuzzClock() time.Time { return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC) }

// FuzzParseCompileEvaluate parses a flag document in both modes and evaluates every
// flag as every type. Properties: nothing panics; a document strict mode accepts,
// lenient mode accepts too, with the same flags resolving the same way; every
// resolution is an error (error code, reason ERROR, no variant) or a success with a
// non-error reason whose variant, if any, is one of the flag's variants and whose
// value is that variant's value.
func FuzzParseCompileEvaluate(f *testing.F) {
	docs := fuzzSeedDocuments(f)
	for _, s := range fuzzTrickySeeds() {
		docs = append(docs, []byte(s))
	}
	contexts := fuzzContexts()
	for i, doc := range docs {
		f.Add(doc, []byte(contexts[i%len(contexts)]))
		f.Add(doc, []byte(contexts[1]))
	}
	f.Fuzz(func(t *testing.T, doc, rawCtx []byte) {
		var ctx map[string]any
		if err := json.Unmarshal(rawCtx, &ctx); err != nil {
			ctx = nil
		}
		lenient, lerr := flags.Parse(doc, flags.Lenient)
		strict, serr := flags.Parse(doc, flags.Strict)
		for _, err := range []error{lerr, serr} {
			var ps flags.Problems
			if err != nil && (!errors.As(err, &ps) || len(ps) == 0) {
				t.Fatalf("Parse error is %T %q, want non-empty flags.Problems", err, err)
			}
		}
		if serr == nil && lerr != nil {
			t.Fatalf("strict mode accepts the document, lenient mode rejects it: %v", lerr)
		}
		var lenientRes [][]eval.Resolution
		if lerr == nil {
			lenientRes = evaluateAll(t, lenient, ctx)
		}
		if serr == nil {
			if strictRes := evaluateAll(t, strict, ctx); !cmp.Equal(lenientRes, strictRes) {
				t.Fatalf("strict and lenient parses of one document resolve differently:\n%s", cmp.Diff(lenientRes, strictRes))
			}
		}
	})
}

// evaluateAll resolves every flag of a set as every type and checks each resolution.
func evaluateAll(t *testing.T, set *flags.Set, ctx map[string]any) [][]eval.Resolution {
	t.Helper()
	out := make([][]eval.Resolution, len(set.Flags))
	for i, fl := range set.Flags {
		for typ := eval.TypeAny; typ <= eval.TypeObject; typ++ {
			r := fl.EvaluateAs(typ, ctx, fuzzClock)
			if msg := checkResolution(fl, typ, r); msg != "" {
				t.Fatalf("flag %q as %s: %s: %+v", fl.Key, typ, msg, r)
			}
			out[i] = append(out[i], r)
		}
	}
	return out
}

func checkResolution(fl *eval.Flag, typ eval.Type, r eval.Resolution) string {
	if r.ErrorCode != eval.ErrorNone {
		switch {
		case r.Reason != eval.ReasonError:
			return "an error without reason ERROR"
		case r.Variant != "" || r.Value != nil:
			return "an error with a variant or a value"
		case r.ErrorMessage == "":
			return "an error without a message"
		}
		return ""
	}
	switch r.Reason {
	case eval.ReasonStatic, eval.ReasonTargetingMatch, eval.ReasonDefault, eval.ReasonDisabled:
	default:
		return "a success with reason " + string(r.Reason)
	}
	if r.Variant == "" {
		if r.Value != nil || r.Reason == eval.ReasonTargetingMatch {
			return "a value or a targeting match without a variant"
		}
		return ""
	}
	want, ok := fl.VariantValue(r.Variant)
	if !ok {
		return "the variant is not one of the flag's variants"
	}
	if typ == eval.TypeInteger {
		n, isInt := r.Value.(int64)
		if f, isFloat := want.(float64); !isInt || !isFloat || float64(n) != f {
			return "an integer resolution whose value is not the variant's"
		}
		return ""
	}
	if !cmp.Equal(r.Value, want) {
		return "the value is not the variant's value"
	}
	if !typeAccepts(typ, r.Value) {
		return "the value is not of the requested type"
	}
	return ""
}

func typeAccepts(typ eval.Type, v any) bool {
	switch typ {
	case eval.TypeBoolean:
		_, ok := v.(bool)
		return ok
	case eval.TypeString:
		_, ok := v.(string)
		return ok
	case eval.TypeFloat:
		_, ok := v.(float64)
		return ok
	case eval.TypeObject:
		_, ok := v.(map[string]any)
		return ok
	}
	return v != nil
}
