package eval_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// compileFlag parses one flag definition (the JSON of the flag object) leniently.
func compileFlag(t *testing.T, key, def string) *eval.Flag {
	t.Helper()
	set, err := flags.Parse([]byte(`{"flags":{"`+key+`":`+def+`}}`), flags.Lenient)
	if err != nil {
		t.Fatalf("parse %s: %v", key, err)
	}
	return set.Flags[0]
}

type want struct {
	Value     any
	Variant   string
	Reason    eval.Reason
	ErrorCode eval.ErrorCode
}

func summary(r eval.Resolution) want { return want{r.Value, r.Variant, r.Reason, r.ErrorCode} }

// TestDecisionTable follows flagd-compat §2.2 and §2.4, with the decisions in
// docs/compatibility.md.
func TestDecisionTable(t *testing.T) {
	fixed := func() time.Time { return time.Unix(1700000000, 0) }
	cases := map[string]struct {
		def  string
		typ  eval.Type
		ctx  map[string]any
		want want
	}{
		"static": {
			def:  `{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}`,
			typ:  eval.TypeBoolean,
			want: want{true, "on", eval.ReasonStatic, ""},
		},
		"empty targeting object is static": {
			def:  `{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":{}}`,
			typ:  eval.TypeBoolean,
			want: want{true, "on", eval.ReasonStatic, ""},
		},
		"null targeting is static (flagd: DEFAULT)": {
			def:  `{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":null}`,
			typ:  eval.TypeBoolean,
			want: want{true, "on", eval.ReasonStatic, ""},
		},
		"disabled is a success without value": {
			def:  `{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on","targeting":{"if":[true,"on"]}}`,
			typ:  eval.TypeString, // no type check on a disabled flag
			want: want{nil, "", eval.ReasonDisabled, ""},
		},
		"any other state is enabled": {
			def:  `{"state":"disabled","variants":{"on":true},"defaultVariant":"on"}`,
			typ:  eval.TypeBoolean,
			want: want{true, "on", eval.ReasonStatic, ""},
		},
		"no default variant means code default": {
			def:  `{"state":"ENABLED","variants":{"on":true}}`,
			typ:  eval.TypeBoolean,
			want: want{nil, "", eval.ReasonDefault, ""},
		},
		"targeting match": {
			def:  `{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a","targeting":{"if":[{"==":[{"var":"user.tier"},"gold"]},"b","a"]}}`,
			typ:  eval.TypeString,
			ctx:  map[string]any{"user": map[string]any{"tier": "gold"}},
			want: want{"B", "b", eval.ReasonTargetingMatch, ""},
		},
		"targeting null gives the default variant": {
			def:  `{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a","targeting":{"if":[false,"b",null]}}`,
			typ:  eval.TypeString,
			want: want{"A", "a", eval.ReasonDefault, ""},
		},
		"targeting null without default variant": {
			def:  `{"state":"ENABLED","variants":{"a":"A"},"targeting":{"if":[false,"a",null]}}`,
			typ:  eval.TypeString,
			want: want{nil, "", eval.ReasonDefault, ""},
		},
		"boolean result names a variant": {
			def:  `{"state":"ENABLED","variants":{"true":"yes","false":"no"},"defaultVariant":"false","targeting":{">":[{"var":"n"},3]}}`,
			typ:  eval.TypeString,
			ctx:  map[string]any{"n": 5.0},
			want: want{"yes", "true", eval.ReasonTargetingMatch, ""},
		},
		"number result names a variant": {
			def:  `{"state":"ENABLED","variants":{"1":"one","2":"two"},"defaultVariant":"1","targeting":{"+":[1,1]}}`,
			typ:  eval.TypeString,
			want: want{"two", "2", eval.ReasonTargetingMatch, ""},
		},
		"variant names with HTML characters match (flagd: never)": {
			def:  `{"state":"ENABLED","variants":{"a&b":1,"c":2},"defaultVariant":"c","targeting":{"if":[true,"a&b"]}}`,
			typ:  eval.TypeInteger,
			want: want{int64(1), "a&b", eval.ReasonTargetingMatch, ""},
		},
		"unknown variant is GENERAL": {
			def:  `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"if":[true,"zzz"]}}`,
			typ:  eval.TypeString,
			want: want{nil, "", eval.ReasonError, eval.ErrorGeneral},
		},
		"object result is GENERAL": {
			def:  `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"merge":[1]}}`,
			typ:  eval.TypeString,
			want: want{nil, "", eval.ReasonError, eval.ErrorGeneral},
		},
		"unknown operator is PARSE_ERROR when reached": {
			def:  `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"if":[{"var":"x"},{"nope":[]},"a"]}}`,
			typ:  eval.TypeString,
			ctx:  map[string]any{"x": true},
			want: want{nil, "", eval.ReasonError, eval.ErrorParse},
		},
		"unknown operator not reached": {
			def:  `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"if":[{"var":"x"},{"nope":[]},"a"]}}`,
			typ:  eval.TypeString,
			want: want{"A", "a", eval.ReasonTargetingMatch, ""},
		},
		"type mismatch": {
			def:  `{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}`,
			typ:  eval.TypeString,
			want: want{nil, "", eval.ReasonError, eval.ErrorTypeMismatch},
		},
		"integer from an integral number": {
			def:  `{"state":"ENABLED","variants":{"ten":10},"defaultVariant":"ten"}`,
			typ:  eval.TypeInteger,
			want: want{int64(10), "ten", eval.ReasonStatic, ""},
		},
		"integer from a non-integral number is a mismatch (flagd truncates)": {
			def:  `{"state":"ENABLED","variants":{"pi":3.99},"defaultVariant":"pi"}`,
			typ:  eval.TypeInteger,
			want: want{nil, "", eval.ReasonError, eval.ErrorTypeMismatch},
		},
		"integer beyond 2^53 is a mismatch": {
			def:  `{"state":"ENABLED","variants":{"big":9007199254740993},"defaultVariant":"big"}`,
			typ:  eval.TypeInteger,
			want: want{nil, "", eval.ReasonError, eval.ErrorTypeMismatch},
		},
		"float from an integer": {
			def:  `{"state":"ENABLED","variants":{"ten":10},"defaultVariant":"ten"}`,
			typ:  eval.TypeFloat,
			want: want{10.0, "ten", eval.ReasonStatic, ""},
		},
		"object": {
			def:  `{"state":"ENABLED","variants":{"o":{"a":1}},"defaultVariant":"o"}`,
			typ:  eval.TypeObject,
			want: want{map[string]any{"a": 1.0}, "o", eval.ReasonStatic, ""},
		},
		"array only resolves untyped": {
			def:  `{"state":"ENABLED","variants":{"l":[1,2]},"defaultVariant":"l"}`,
			typ:  eval.TypeAny,
			want: want{[]any{1.0, 2.0}, "l", eval.ReasonStatic, ""},
		},
		"$flagd.flagKey overrides the caller's $flagd": {
			def:  `{"state":"ENABLED","variants":{"hit":1,"miss":0},"defaultVariant":"miss","targeting":{"if":[{"==":[{"var":"$flagd.flagKey"},"k"]},"hit","miss"]}}`,
			typ:  eval.TypeInteger,
			ctx:  map[string]any{"$flagd": map[string]any{"flagKey": "spoofed"}},
			want: want{int64(1), "hit", eval.ReasonTargetingMatch, ""},
		},
		"$flagd.timestamp": {
			def:  `{"state":"ENABLED","variants":{"after":1,"before":0},"defaultVariant":"before","targeting":{"if":[{">=":[{"var":"$flagd.timestamp"},1700000000]},"after","before"]}}`,
			typ:  eval.TypeInteger,
			want: want{int64(1), "after", eval.ReasonTargetingMatch, ""},
		},
		"starts_with with a non-string is null, not false": {
			def:  `{"state":"ENABLED","variants":{"true":1,"false":2,"d":3},"defaultVariant":"d","targeting":{"starts_with":[{"var":"n"},"1"]}}`,
			typ:  eval.TypeInteger,
			ctx:  map[string]any{"n": 12.0},
			want: want{int64(3), "d", eval.ReasonDefault, ""},
		},
		"fractional without targetingKey is null": {
			def:  `{"state":"ENABLED","variants":{"a":1,"b":2},"defaultVariant":"b","targeting":{"fractional":[["a",50],["a",50]]}}`,
			typ:  eval.TypeInteger,
			want: want{int64(2), "b", eval.ReasonDefault, ""},
		},
		"fractional as a condition": {
			def:  `{"state":"ENABLED","variants":{"big":1,"small":2},"defaultVariant":"small","targeting":{"if":[{"fractional":[[false,0],[true,100]]},"big","small"]}}`,
			typ:  eval.TypeInteger,
			ctx:  map[string]any{"targetingKey": "u"},
			want: want{int64(1), "big", eval.ReasonTargetingMatch, ""},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := compileFlag(t, "k", tc.def)
			got := f.EvaluateAs(tc.typ, tc.ctx, fixed)
			if diff := cmp.Diff(tc.want, summary(got)); diff != "" {
				t.Errorf("resolution (-want +got):\n%s", diff)
			}
			if got.Failed() && got.ErrorMessage == "" {
				t.Errorf("error resolution without a message: %+v", got)
			}
		})
	}
}

// TestFractionalBuckets checks v2 bucketing against flagd-compat §2.7's worked examples.
func TestFractionalBuckets(t *testing.T) {
	deck := `{"state":"ENABLED","variants":{"clubs":"clubs","diamonds":"diamonds","hearts":"hearts","spades":"spades"},"defaultVariant":"clubs",
		"targeting":{"fractional":[{"cat":[{"var":"$flagd.flagKey"},{"var":"user.name"}]},["clubs",25],["diamonds",25],["hearts",25],["spades",25]]}}`
	f := compileFlag(t, "fractional-flag", deck)
	got := map[string]string{}
	for _, name := range []string{"jack", "queen", "ten", "nine", "3"} {
		got[name] = f.Evaluate(map[string]any{"user": map[string]any{"name": name}}).Variant
	}
	wantDeck := map[string]string{"jack": "hearts", "queen": "spades", "ten": "clubs", "nine": "diamonds", "3": "clubs"}
	if diff := cmp.Diff(wantDeck, got); diff != "" {
		t.Errorf("buckets (-want +got):\n%s", diff)
	}
	coin := compileFlag(t, "fractional-flag-shorthand", `{"state":"ENABLED","variants":{"heads":"heads","tails":"tails"},"defaultVariant":"heads","targeting":{"fractional":[["heads"],["tails",1]]}}`)
	if v := coin.Evaluate(map[string]any{"targetingKey": "jon@company.com"}).Variant; v != "heads" {
		t.Errorf("shorthand jon@company.com = %q, want heads", v)
	}
	// Weight 0 never matches; negative weights count as 0.
	zero := compileFlag(t, "z", `{"state":"ENABLED","variants":{"one":1,"two":2},"defaultVariant":"one","targeting":{"fractional":[["one",-5],["two",3]]}}`)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if v := zero.Evaluate(map[string]any{"targetingKey": k}).Variant; v != "two" {
			t.Errorf("key %q went to %q, want two", k, v)
		}
	}
}

func TestSemVer(t *testing.T) {
	rule := func(op, target string) string {
		return `{"state":"ENABLED","variants":{"true":1,"false":0,"none":-1},"defaultVariant":"none","targeting":{"sem_ver":[{"var":"v"},"` + op + `","` + target + `"]}}`
	}
	cases := []struct {
		op, target string
		version    any
		want       string
	}{
		{"=", "2.0.0", "2.0.0", "true"},
		{"=", "2.0.0", "v2.0.0", "true"},
		{"=", "2.0.0", "V2.0.0", "true"},
		{"<", "2.0.0", "2.0.0-alpha", "true"},
		{">", "1.1", 1.2, "true"},
		{"=", "1.0.0+build", "1.0.0+other", "true"},
		{"^", "1", "1.5.0", "true"},
		{"~", "3.0.0", "3.1.0", "false"},
		{">=", "1.0.0", "2.0.0.0", "none"},
		{"=", "1.0.0", "not-a-version", "none"},
		{"===", "1.0.0", "1.0.0", "none"},
		{"!=", "1.0.0", 2.0, "true"},
	}
	for _, tc := range cases {
		f := compileFlag(t, "s", rule(tc.op, tc.target))
		if got := f.Evaluate(map[string]any{"v": tc.version}).Variant; got != tc.want {
			t.Errorf("sem_ver(%v %s %s) selected %q, want %q", tc.version, tc.op, tc.target, got, tc.want)
		}
	}
}

// TestContextIsNotModified guards the read-only contract callers rely on.
func TestContextIsNotModified(t *testing.T) {
	f := compileFlag(t, "k", `{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a","targeting":{"if":[{"==":[{"var":"$flagd.flagKey"},"k"]},"a",null]}}`)
	ctx := map[string]any{"targetingKey": "u", "nested": map[string]any{"x": 1.0}}
	before := map[string]any{"targetingKey": "u", "nested": map[string]any{"x": 1.0}}
	f.Evaluate(ctx)
	if diff := cmp.Diff(before, ctx, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("context changed (-before +after):\n%s", diff)
	}
}

// TestDecideOwn: Decide reports a decision that is the flag's own (the run read the
// flag's key, or failed naming the flag's rule), and any other decision resolves
// another flag with an equal rule as that flag's own evaluation does.
func TestDecideOwn(t *testing.T) {
	ctx := map[string]any{"targetingKey": "user-7", "email": "a@example.com", "tier": "gold"}
	for _, c := range []struct {
		name, rule string
		own        bool
	}{
		{"var", `{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"b",null]}`, false},
		{"timestamp", `{"if":[{">":[{"var":"$flagd.timestamp"},0]},"b","a"]}`, false},
		{"flagKey", `{"if":[{"==":[{"var":"$flagd.flagKey"},"one"]},"b","a"]}`, true},
		{"whole $flagd", `{"if":[{"var":"$flagd"},"b","a"]}`, true},
		{"fractional", `{"fractional":[["a",50],["b",50]]}`, true},
		{"fractional on an expression", `{"fractional":[{"var":"email"},["a",50],["b",50]]}`, false},
		{"fractional without a targeting key", `{"if":[{"var":"nothing"},{"fractional":[["a",50],["b",50]]},"a"]}`, false},
		{"a branch not taken", `{"if":[{"==":[{"var":"tier"},"gold"]},"b",{"var":"$flagd.flagKey"}]}`, false},
		{"a runtime failure", `{"if":[{"$ref":"missing"},"b","a"]}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			def := `{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a","targeting":` + c.rule + `}`
			one, other := compileFlag(t, "one", def), compileFlag(t, "other", def)
			d, own := one.Decide(ctx, nil)
			if own != c.own {
				t.Fatalf("own = %v, want %v", own, c.own)
			}
			if diff := cmp.Diff(summary(one.Evaluate(ctx)), summary(one.Apply(eval.TypeAny, d))); diff != "" {
				t.Errorf("its own decision (-Evaluate +Apply):\n%s", diff)
			}
			if !own {
				shared, alone := other.Apply(eval.TypeAny, d), other.Evaluate(ctx)
				if diff := cmp.Diff(alone, shared); diff != "" {
					t.Errorf("another flag with the rule (-Evaluate +Apply of the shared decision):\n%s", diff)
				}
			}
		})
	}
}

// TestOutcomeAgreesWithApply: a decision's Outcome names the variant and reason
// Apply(TypeAny) resolves to whenever it resolves to one of the flag's variants, and
// declines (ok false) exactly for every other result: failures, the code default,
// names that are no variant, variants whose value is null.
func TestOutcomeAgreesWithApply(t *testing.T) {
	defs := map[string]string{
		"match or default": `{"state":"ENABLED","variants":{"a":"A","b":{"o":1}},"defaultVariant":"a","targeting":{"if":[{"var":"vip"},"b",null]}}`,
		"code default":     `{"state":"ENABLED","variants":{"a":"A","b":"B"},"targeting":{"if":[{"var":"vip"},"b",null]}}`,
		"unknown variant":  `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"if":[{"var":"vip"},"nope","a"]}}`,
		"null values":      `{"state":"ENABLED","variants":{"n":null,"v":"V"},"defaultVariant":"n","targeting":{"if":[{"var":"vip"},"v",null]}}`,
		"bool names":       `{"state":"ENABLED","variants":{"true":1,"false":0},"defaultVariant":"false","targeting":{"var":"vip"}}`,
		"number names":     `{"state":"ENABLED","variants":{"1":"one","2.5":"two"},"defaultVariant":"1","targeting":{"if":[{"var":"vip"},2.5,1]}}`,
		"failure":          `{"state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","targeting":{"if":[{"$ref":"missing"},"a",null]}}`,
		"fractional":       `{"state":"ENABLED","variants":{"a":"A","b":"B","c":"C"},"defaultVariant":"a","targeting":{"fractional":[["a",30],["b",30],["c",40]]}}`,
	}
	for name, def := range defs {
		t.Run(name, func(t *testing.T) {
			f := compileFlag(t, "f", def)
			var d eval.Decisions
			d.Reset(0)
			for i := range 12 {
				ctx := map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "vip": i%2 == 0}
				dec := d.Decide(f, -1, ctx, nil)
				res := f.Apply(eval.TypeAny, dec)
				if diff := cmp.Diff(summary(f.Evaluate(ctx)), summary(res)); diff != "" {
					t.Fatalf("Decisions.Decide then Apply (-Evaluate +Apply):\n%s", diff)
				}
				v, reason, ok := f.Outcome(dec)
				isVariant := !res.Failed() && res.Variant != "" && res.Value != nil
				if ok != isVariant {
					t.Fatalf("ctx %v: Outcome ok = %v for %+v", ctx, ok, summary(res))
				}
				if !ok {
					continue
				}
				vname, value := f.VariantAt(v)
				if got := (want{value, vname, reason, ""}); !cmp.Equal(got, summary(res)) {
					t.Errorf("ctx %v: Outcome %+v, Apply %+v", ctx, got, summary(res))
				}
				// the outcome's resolution as every type, failures included
				for _, typ := range []eval.Type{eval.TypeAny, eval.TypeBoolean, eval.TypeString, eval.TypeFloat, eval.TypeInteger, eval.TypeObject} {
					if diff := cmp.Diff(f.Apply(typ, dec), f.ResolveVariant(typ, v, reason)); diff != "" {
						t.Errorf("ctx %v, type %s: ResolveVariant (-Apply +ResolveVariant):\n%s", ctx, typ, diff)
					}
				}
			}
		})
	}
}
