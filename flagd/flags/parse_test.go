package flags_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// problems parses doc and returns the error lines, or nil on success.
func problems(t *testing.T, doc string, mode flags.Mode) []string {
	t.Helper()
	_, err := flags.Parse([]byte(doc), mode)
	if err == nil {
		return nil
	}
	ps, ok := err.(flags.Problems) //nolint:errorlint // the contract: Parse returns Problems itself, unwrapped
	if !ok {
		t.Fatalf("error is %T, want flags.Problems", err)
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func TestStrictProblemsNameTheirPlace(t *testing.T) {
	cases := map[string]struct {
		doc  string
		want []string
	}{
		"weight given as a string": {
			doc: `{"flags":{"new-ui":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a",
				"targeting":{"if":[{"var":"x"},"a",{"fractional":[{"var":"email"},["a",75],["b","25"]]}]}}}}`,
			want: []string{`flags.new-ui.targeting.if[2].fractional[2][1]: weight must be a non-negative integer, got "25"`},
		},
		"literal bucketing key (OpenFeature Operator's webhook test)": {
			doc: `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a",
				"targeting":{"fractional":["invalid",["a",50],["b",50]]}}}}`,
			want: []string{`flags.f.targeting.fractional[0]: the bucketing key must be a rule such as {"var": "email"}, not a string: every user would land in the same bucket`},
		},
		"ends_with with a number (OpenFeature Operator's webhook test)": {
			doc: `{"flags":{"f":{"state":"ENABLED","variants":{"prefix":1,"postfix":2},"defaultVariant":"prefix",
				"targeting":{"if":[{"ends_with":[{"var":"id"},0]},"postfix","prefix"]}}}}`,
			want: []string{`flags.f.targeting.if[0].ends_with[1]: must be a string or a rule, not a number: the operator would always return null`},
		},
		"negative and fractional weights": {
			doc: `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a",
				"targeting":{"fractional":[["a",-1],["b",2.5]]}}}}`,
			want: []string{
				`flags.f.targeting.fractional[0][1]: weight must be a non-negative integer, got -1`,
				`flags.f.targeting.fractional[1][1]: weight must be a non-negative integer, got 2.5`,
			},
		},
		"weights above MaxInt32 in sum": {
			doc: `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":"b"},"defaultVariant":"a",
				"targeting":{"fractional":[["a",2147483647],["b",1]]}}}}`,
			want: []string{`flags.f.targeting.fractional: fractional weights sum to 2147483648, more than 2147483647`},
		},
		"unknown operator": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"if":[{"regex":["a","b"]},"a",null]}}}}`,
			want: []string{`flags.f.targeting.if[0].regex: unknown operator "regex"`},
		},
		"wrong arity": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"starts_with":[{"var":"email"}]}}}}`,
			want: []string{`flags.f.targeting.starts_with: "starts_with" takes exactly 2 arguments, got 1`},
		},
		"ref to a missing evaluator": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"if":[{"$ref":"nope"},"a",null]}}}}`,
			want: []string{`flags.f.targeting.if[0].$ref: no evaluator named "nope" in $evaluators`},
		},
		"mixed variant types": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a","b":true},"defaultVariant":"a"}}}`,
			want: []string{`flags.f.variants.b: is a boolean, but variant "a" is a string: all variants of a flag must have one type`},
		},
		"default variant not among variants": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"maybe"}}}`,
			want: []string{`flags.f.defaultVariant: "maybe" is not one of the variants ("off", "on")`},
		},
		"state outside the enum and missing variants": {
			doc: `{"flags":{"f":{"state":"ON"}}}`,
			want: []string{
				`flags.f.state: must be "ENABLED" or "DISABLED", got "ON" (flagd treats it as enabled)`,
				`flags.f.variants: is required`,
			},
		},
		"sem_ver operator and version": {
			doc: `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a",
				"targeting":{"sem_ver":[{"var":"v"},"===","1.0"]}}}}`,
			want: []string{
				`flags.f.targeting.sem_ver[1]: unknown sem_ver operator "===": use one of = != < <= > >= ~ ^`,
				`flags.f.targeting.sem_ver[2]: "1.0" is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])`,
			},
		},
		"unknown $flagd property": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"==":[{"var":"$flagd.source"},"x"]}}}}`,
			want: []string{`flags.f.targeting.==[0].var: "$flagd.source" is not a flagd property: only $flagd.flagKey and $flagd.timestamp exist`},
		},
		"keys that need quoting in paths": {
			doc:  `{"flags":{"my.flag":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"b"}}}`,
			want: []string{`flags["my.flag"].defaultVariant: "b" is not one of the variants ("a")`},
		},
		"array form without a key": {
			doc:  `{"flags":[{"state":"ENABLED","variants":{"a":"a"}}]}`,
			want: []string{`flags[0].key: a flag in the array form needs a non-empty string "key"`},
		},
		"same flag twice in one flag set": {
			doc: `{"flags":[{"key":"f","state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a"},
				{"key":"f","state":"ENABLED","variants":{"b":"b"},"defaultVariant":"b"}]}`,
			want: []string{`flags[1]: flag "f" is defined again in flag set "" (first at flags[0]); the last definition wins`},
		},
		"evaluator cycle": {
			doc: `{"$evaluators":{"a":{"!":{"$ref":"b"}},"b":{"!":{"$ref":"a"}}},
				"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"if":[{"$ref":"a"},"a",null]}}}}`,
			want: []string{`$evaluators.a: $ref cycle: a -> b -> a`},
		},
		"metadata values": {
			doc: `{"metadata":{"flagSetId":7},"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","metadata":{"owner":["x"]}}}}`,
			want: []string{
				`metadata.flagSetId: must be a string, got number`,
				`flags.f.metadata.owner: metadata values must be strings, numbers or booleans, got array`,
			},
		},
		"null flags": {
			doc:  `{"flags":null}`,
			want: []string{`flags: is null, which removes every flag of this source`},
		},
		"rule object with two operators": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"if":[true,"a"],"or":[]}}}}`,
			want: []string{`flags.f.targeting: a rule object must have exactly one operator key, got 2 keys (if, or)`},
		},
		"operator outside the schema": {
			doc:  `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"if":[{"contains_any":[["a"],["a"]]},"a",null]}}}}`,
			want: []string{`flags.f.targeting.if[0].contains_any: operator "contains_any" is evaluated by flagd but not allowed by the flagd schema`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, problems(t, tc.doc, flags.Strict)); diff != "" {
				t.Errorf("strict problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLenientAcceptsWhatFlagdServes(t *testing.T) {
	cases := map[string]struct {
		doc          string
		wantFlags    int
		wantWarnings []string
	}{
		"unknown operator becomes a warning": {
			doc:          `{"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","targeting":{"regex":["a"]}}}}`,
			wantFlags:    1,
			wantWarnings: []string{`flags.f.targeting.regex: unknown operator "regex" (evaluation fails with PARSE_ERROR)`},
		},
		"null flags wipe the source": {
			doc:          `{"flags":null}`,
			wantFlags:    0,
			wantWarnings: []string{`flags: is null, which removes every flag of this source`},
		},
		"missing state means enabled": {
			doc:          `{"flags":{"f":{"variants":{"a":"a"},"defaultVariant":"a"}}}`,
			wantFlags:    1,
			wantWarnings: []string{`flags.f.state: is required (flagd treats a missing state as enabled)`},
		},
		"unknown members are ignored": {
			doc:          `{"extra":1,"flags":{"f":{"state":"ENABLED","variants":{"a":"a"},"defaultVariant":"a","owner":"me"}}}`,
			wantFlags:    1,
			wantWarnings: []string{`extra: unknown member, ignored`, `flags.f.owner: unknown flag member`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			set, err := flags.Parse([]byte(tc.doc), flags.Lenient)
			if err != nil {
				t.Fatalf("lenient parse failed: %v", err)
			}
			var got []string
			for _, w := range set.Warnings {
				got = append(got, w.String())
			}
			if diff := cmp.Diff(tc.wantWarnings, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if len(set.Flags) != tc.wantFlags {
				t.Errorf("got %d flags, want %d", len(set.Flags), tc.wantFlags)
			}
		})
	}
}

func TestLenientRejectsWhatFlagdRejects(t *testing.T) {
	cases := map[string]struct {
		doc  string
		want []string
	}{
		"invalid JSON has a line and column": {
			doc:  "{\n  \"flags\": {\n    \"f\": {,}\n  }\n}",
			want: []string{`invalid JSON at line 3, column 11: invalid character ',' looking for beginning of object key string`},
		},
		"truncated JSON": {
			doc:  `{"flags": {`,
			want: []string{`invalid JSON at line 1, column 12: unexpected EOF`},
		},
		"empty document":  {doc: "  \n", want: []string{`the document is empty`}},
		"no flags member": {doc: `{}`, want: []string{`flags: is required`}},
		"flags of the wrong type": {
			doc:  `{"flags":"f"}`,
			want: []string{`flags: must be an object or an array of flags, got string`},
		},
		"empty evaluator": {
			doc:  `{"$evaluators":{"e":{}},"flags":{}}`,
			want: []string{`$evaluators.e: evaluator is empty`},
		},
		"fields of the wrong type": {
			doc: `{"flags":{"f":{"state":1,"variants":[],"defaultVariant":5}}}`,
			want: []string{
				`flags.f.state: must be a string, got number`,
				`flags.f.variants: must be an object of variant name to value, got array`,
				`flags.f.defaultVariant: must be a string or null, got number`,
			},
		},
		"default variant not among variants": {
			doc:  `{"flags":{"y":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"x"}}}`,
			want: []string{`flags.y.defaultVariant: "x" is not one of the variants ("a")`},
		},
		"invalid YAML": {
			doc:  "flags:\n  f: [unclosed\n",
			want: []string{`invalid YAML at line 2: did not find expected ',' or ']'`},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, problems(t, tc.doc, flags.Lenient)); diff != "" {
				t.Errorf("lenient problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDocumentForms(t *testing.T) {
	const yamlDoc = `
metadata:
  flagSetId: shop
  team: payments
$evaluators:
  is_staff:
    ends_with: [{var: email}, "@example.com"]
flags:
  checkout:
    state: ENABLED
    variants: {new: true, old: false}
    defaultVariant: old
    metadata: {team: checkout}
    targeting:
      if: [{$ref: is_staff}, new, null]
`
	const arrayDoc = `{"flags":[
		{"key":"color","state":"ENABLED","variants":{"red":"red"},"defaultVariant":"red","metadata":{"flagSetId":"a"}},
		{"key":"color","state":"ENABLED","variants":{"blue":"blue"},"defaultVariant":"blue","metadata":{"flagSetId":"b"}}]}`
	type flagView struct {
		Key, FlagSetID, Variant string
		Metadata                map[string]any
	}
	view := func(set *flags.Set, ctx map[string]any) []flagView {
		var out []flagView
		for _, f := range set.Flags {
			r := f.Evaluate(ctx)
			out = append(out, flagView{f.Key, f.FlagSetID, r.Variant, f.Metadata})
		}
		return out
	}
	cases := map[string]struct {
		doc  string
		ctx  map[string]any
		want []flagView
	}{
		"yaml with $ref and metadata merge": {
			doc:  yamlDoc,
			ctx:  map[string]any{"email": "ada@example.com"},
			want: []flagView{{"checkout", "shop", "new", map[string]any{"flagSetId": "shop", "team": "checkout"}}},
		},
		"array form with one key in two flag sets": {
			doc: arrayDoc,
			want: []flagView{
				{"color", "a", "red", map[string]any{"flagSetId": "a"}},
				{"color", "b", "blue", map[string]any{"flagSetId": "b"}},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			set, err := flags.Parse([]byte(tc.doc), flags.Strict)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, view(set, tc.ctx)); diff != "" {
				t.Errorf("flags (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNestedRefsResolveDeterministically checks that an evaluator referencing another
// evaluator is inlined the same way whatever the map iteration order (flagd #1875).
func TestNestedRefsResolveDeterministically(t *testing.T) {
	doc := `{"$evaluators":{
		"adult":{">=":[{"var":"age"},18]},
		"adult_in_eu":{"and":[{"$ref":"adult"},{"$ref":"in_eu"}]},
		"in_eu":{"in":[{"var":"country"},["de","fr"]]}},
	  "flags":{"f":{"state":"ENABLED","variants":{"yes":true,"no":false},"defaultVariant":"no",
		"targeting":{"if":[{"$ref":"adult_in_eu"},"yes","no"]}}}}`
	for i := range 20 {
		set, err := flags.Parse([]byte(doc), flags.Strict)
		if err != nil {
			t.Fatal(err)
		}
		f := set.Flags[0]
		got := []string{
			f.Evaluate(map[string]any{"age": 30.0, "country": "de"}).Variant,
			f.Evaluate(map[string]any{"age": 16.0, "country": "de"}).Variant,
			f.Evaluate(map[string]any{"age": 30.0, "country": "us"}).Variant,
		}
		if diff := cmp.Diff([]string{"yes", "no", "no"}, got); diff != "" {
			t.Fatalf("run %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestProblemsErrorText(t *testing.T) {
	err := eval.Problems{{Path: "flags.a", Message: "x"}, {Message: "y"}}
	if got := err.Error(); got != "flags.a: x\ny" {
		t.Errorf("Error() = %q", got)
	}
	if !strings.Contains(eval.Key("flags", "a b"), `["a b"]`) {
		t.Errorf("Key does not quote spaces: %s", eval.Key("flags", "a b"))
	}
}

// TestRefFanOutIsBounded: evaluators that each reference the next twice describe a
// rule of 2^levels nodes; the parser must refuse it quickly instead of compiling it.
func TestRefFanOutIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"$evaluators":{`)
	const levels = 40
	for i := range levels {
		fmt.Fprintf(&b, `"e%d":{"or":[{"$ref":"e%d"},{"$ref":"e%d"}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"e%d":{"==":[{"var":"x"},1]}},`, levels)
	b.WriteString(`"flags":{"f":{"state":"ENABLED","variants":{"a":true},"defaultVariant":"a","targeting":{"if":[{"$ref":"e0"},"a",null]}}}}`)
	got := problems(t, b.String(), flags.Lenient)
	want := fmt.Sprintf("flags.f.targeting: the rule expands to %d nodes after inlining $ref, more than %d (evaluators that reference each other several times multiply)", flags.MaxRuleNodes+1, flags.MaxRuleNodes)
	found := false
	for _, p := range got {
		found = found || p == want
	}
	if !found {
		t.Fatalf("problems %q do not include %q", got, want)
	}
	// Sharing one evaluator among many flags is fine: only a single rule's expansion counts.
	var ok strings.Builder
	ok.WriteString(`{"$evaluators":{"big":{"or":[`)
	for i := range 500 {
		if i > 0 {
			ok.WriteString(",")
		}
		fmt.Fprintf(&ok, `{"==":[{"var":"k"},%d]}`, i)
	}
	ok.WriteString(`]}},"flags":{`)
	for i := range 300 {
		if i > 0 {
			ok.WriteString(",")
		}
		fmt.Fprintf(&ok, `"f%d":{"state":"ENABLED","variants":{"a":true,"b":false},"defaultVariant":"b","targeting":{"if":[{"$ref":"big"},"a",null]}}`, i)
	}
	ok.WriteString(`}}`)
	set, err := flags.Parse([]byte(ok.String()), flags.Strict)
	if err != nil {
		t.Fatal(err)
	}
	if v := set.Flags[0].Evaluate(map[string]any{"k": 499.0}).Variant; v != "a" {
		t.Errorf("variant = %q, want a", v)
	}
}

// TestDecodeErrorsNameThePlaceNotTheContent: a flag file may be a symlink to any
// file (a mounted secret, by mistake or on purpose), and its errors reach the log
// and /readyz. Decoding errors name where the document is broken, never what it
// holds: YAML's messages quote anchors, tagged values and map keys, encoding/json's
// the offending character.
func TestDecodeErrorsNameThePlaceNotTheContent(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"unknown anchor": {"flags:\n  f:\n    variants: *SECRET1\n",
			"invalid YAML at line 3: an alias refers to an anchor that is not defined"},
		"value not matching its tag": {"flags:\n  f:\n    variants: {on: !!int SECRET2}\n",
			"invalid YAML at line 3: a value does not match its tag (e.g. !!int on text)"},
		"float tag": {"flags:\n  f: !!float SECRET3\n",
			"invalid YAML at line 2: a value does not match its tag (e.g. !!int on text)"},
		"anchor containing itself": {"a: b\nc: &SECRET4 [*SECRET4]\n",
			"invalid YAML at line 2: an anchor's value contains an alias to itself"},
		"list as a map key": {"- [SECRET5, x]: c\n",
			"invalid YAML: a map key is a list or a map, which JSON cannot represent"},
		"bad base64": {"a: !!binary SECRET6!\n",
			"invalid YAML: a !!binary value is not valid base64"},
		"scanner error, punctuation kept": {"flags:\n  f: [SECRET7\n",
			"invalid YAML at line 2: did not find expected ',' or ']'"},
		"JSON: a letter": {`{"flags": SECRET8}`,
			"invalid JSON at line 1, column 11: invalid character looking for beginning of value"},
		"JSON: punctuation kept": {`{"flags": {[1]: 2}}`,
			"invalid JSON at line 1, column 12: invalid character '[' looking for beginning of object key string"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := problems(t, tc.doc, flags.Lenient)
			if diff := cmp.Diff([]string{tc.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if strings.Contains(strings.Join(got, "\n"), "SECRET") {
				t.Errorf("the error quotes the document: %q", got)
			}
		})
	}
}

// TestParallelCompileKeepsDocumentOrder: a document large enough to be compiled on
// several cores gives the flags, problems and evaluations of a sequential pass, in
// document order, in both forms and modes. Problems are spread over the document,
// including the array form's duplicates and missing keys.
func TestParallelCompileKeepsDocumentOrder(t *testing.T) {
	var mapForm, arrayForm strings.Builder
	mapForm.WriteString(`{"$evaluators":{"staff":{"ends_with":[{"var":"email"},"@example.com"]}},"flags":{`)
	arrayForm.WriteString(`{"$evaluators":{"staff":{"ends_with":[{"var":"email"},"@example.com"]}},"flags":[`)
	for i := range 700 {
		if i > 0 {
			mapForm.WriteString(",")
			arrayForm.WriteString(",")
		}
		body := `"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off","targeting":{"if":[{"$ref":"staff"},"on",null]}`
		switch i % 97 {
		case 13:
			body = `"state":"ENABLED","variants":{"on":true},"defaultVariant":"missing"` // an error
		case 41:
			body = `"state":"ON","variants":{"on":true},"defaultVariant":"on","extra":1` // warnings (lenient)
		case 66:
			body = `"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":{"nope":[1]}` // unknown operator
		}
		fmt.Fprintf(&mapForm, `"f%04d":{%s}`, i, body)
		key := fmt.Sprintf(`"key":"f%04d",`, i%350) // every key twice: duplicates
		if i%211 == 5 {
			key = `"key":"",`
		}
		fmt.Fprintf(&arrayForm, `{%s%s}`, key, body)
	}
	mapForm.WriteString("}}")
	arrayForm.WriteString("]}")

	type result struct {
		Flags    []string
		Problems []string
	}
	parse := func(doc string, mode flags.Mode) result {
		var r result
		set, err := flags.Parse([]byte(doc), mode)
		if err != nil {
			for _, p := range err.(flags.Problems) { //nolint:errorlint // Parse returns Problems itself
				r.Problems = append(r.Problems, "error "+p.String())
			}
			return r
		}
		for _, p := range set.Warnings {
			r.Problems = append(r.Problems, "warning "+p.String())
		}
		for _, f := range set.Flags {
			res := f.Evaluate(map[string]any{"email": "ada@example.com"})
			r.Flags = append(r.Flags, fmt.Sprintf("%s/%s=%v %s", f.FlagSetID, f.Key, res.Value, res.Variant))
		}
		return r
	}
	for name, doc := range map[string]string{"map form": mapForm.String(), "array form": arrayForm.String()} {
		for _, mode := range []flags.Mode{flags.Lenient, flags.Strict} {
			prev := runtime.GOMAXPROCS(1)
			sequential := parse(doc, mode)
			runtime.GOMAXPROCS(4)
			parallel := parse(doc, mode)
			runtime.GOMAXPROCS(prev)
			if len(sequential.Problems) == 0 {
				t.Fatalf("%s, mode %d: the document has no problems to order", name, mode)
			}
			if diff := cmp.Diff(sequential, parallel); diff != "" {
				t.Errorf("%s, mode %d (-sequential +parallel):\n%s", name, mode, diff)
			}
		}
	}
}
