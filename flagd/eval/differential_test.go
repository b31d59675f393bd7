package eval_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/diegoholiveira/jsonlogic/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// The differential test compares our compiled evaluator with the JsonLogic engine
// flagd embeds (github.com/diegoholiveira/jsonlogic/v3 v3.9.1) on generated rules over
// the standard operators and generated contexts. Where the reference engine fails
// (error or panic: flagd answers PARSE_ERROR) we only require that we do not panic.
// Every other difference must be explained by one of the deliberate deviations below
// (docs/compatibility.md), or the test fails. A deviation is not taken on its word:
// the case is re-run with the reference's quirk neutralised, and the engines must
// then agree (or the reference must fail).
//
//	go test ./flagd/eval -run TestDifferential -v -differential.n 300000 -differential.seed 7

var (
	differentialN    = flag.Int("differential.n", 5000, "number of generated cases in TestDifferential")
	differentialSeed = flag.Uint64("differential.seed", 20260101, "seed of TestDifferential's generator")
)

// diffCase is one rule and the context it is evaluated with.
type diffCase struct {
	rule any
	ctx  map[string]any
}

func (c diffCase) String() string {
	return fmt.Sprintf("rule %s\ncontext %s", jsonText(c.rule), jsonText(c.ctx))
}

func jsonText(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// outcome is what an engine made of a case.
type outcome struct {
	value  any
	failed bool   // the reference engine returned an error or panicked; our engine reported a runtime failure
	why    string // the reference engine's error
}

func (o outcome) String() string {
	if o.failed {
		return "failed: " + o.why
	}
	return fmt.Sprintf("%#v", o.value)
}

// runOurs evaluates with our engine; a panic is returned, never recovered silently.
func runOurs(c diffCase) (o outcome, panicked any) {
	defer func() {
		if p := recover(); p != nil {
			panicked = p
		}
	}()
	v, failed := eval.EvaluateRule(c.rule, c.ctx)
	return outcome{value: v, failed: failed, why: "runtime failure"}, nil
}

// runRef evaluates with the reference engine, as flagd does after decoding the context.
func runRef(c diffCase) (o outcome) {
	defer func() {
		if p := recover(); p != nil {
			o = outcome{failed: true, why: fmt.Sprint(p)}
		}
	}()
	v, err := jsonlogic.ApplyInterface(c.rule, any(c.ctx))
	if err != nil {
		return outcome{failed: true, why: err.Error()}
	}
	return outcome{value: normalize(v)}
}

// normalize turns the Go ints the reference engine sometimes returns into float64.
func normalize(v any) any {
	switch t := v.(type) {
	case int:
		return float64(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = normalize(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = normalize(e)
		}
		return out
	}
	return v
}

func sameOutcome(a, b outcome) bool {
	if a.failed || b.failed {
		return a.failed == b.failed
	}
	return cmp.Equal(a.value, b.value, cmpopts.EquateNaNs())
}

// deviation is a documented difference between our engine and the reference engine.
// recognise says statically whether a case can show it; neutralise returns the case
// for each engine with the reference's quirk taken out (a rewrite of the rule for the
// reference, or of the context for both). A difference is explained by a set of
// recognised deviations only if, once neutralised, the engines agree or the case
// falls where the reference cannot evaluate it at all (as everywhere else, we then
// only require an answer without a panic: typically our answer leads into null or a
// boolean in arithmetic, which the reference refuses).
type deviation struct {
	name       string
	why        string
	recognise  func(c diffCase) bool
	neutralise func(ours, ref diffCase) (diffCase, diffCase)
}

// deviations lists the documented deviations in the order their neutralisations apply.
func deviations() []deviation {
	return []deviation{
		{
			name: "unarySugarSpread",
			why: `an operator whose argument is a single rule object instead of an array ({"!": {"var": "x"}}): ` +
				`we treat it as the one argument (JsonLogic's definition); the reference evaluates it and, ` +
				`when that gives an array, uses the array as the argument list`,
			recognise: func(c diffCase) bool { return hasSugar(c.rule) },
			neutralise: func(ours, ref diffCase) (diffCase, diffCase) {
				ref.rule = wrapSugar(ref.rule)
				return ours, ref
			},
		},
		{
			name: "iterationScope",
			why: `filter/some/all/none evaluate their inner rule with the element as the scope of var; ` +
				`the reference first substitutes every var it can resolve in the outer scope (or that has a default) into the inner rule`,
			recognise: func(c diffCase) bool { return iterationBodyHasVar(c.rule, false) },
			neutralise: func(ours, ref diffCase) (diffCase, diffCase) {
				ref.rule = rewriteIterations(ref.rule)
				return ours, ref
			},
		},
		{
			name: "missingKeyArray",
			why: `missing given an array as its first key ({"missing": [["a", "b"]]}): ` +
				`we take it as the list of keys (JsonLogic's definition); the reference reads it as ` +
				`var's [path, default] and so never reports "a" missing`,
			recognise: func(c diffCase) bool { return hasMissingKeyArray(c.rule) },
			neutralise: func(ours, ref diffCase) (diffCase, diffCase) {
				ref.rule = mapRule(ref.rule, func(op string, args any) any {
					if a, ok := args.([]any); ok && op == "missing" && len(a) > 0 {
						if keys, ok := a[0].([]any); ok {
							return map[string]any{op: keys}
						}
					}
					return map[string]any{op: args}
				})
				return ours, ref
			},
		},
		{
			name: "nonIntegerArraySegment",
			why: `a var or missing path segment that is not an integer does not index an array (not found); ` +
				`the reference parses it as a number, which gives index 0`,
			recognise: func(c diffCase) bool { return len(arraysHitByWords(c)) > 0 },
			neutralise: func(ours, ref diffCase) (diffCase, diffCase) {
				hit := arraysHitByWords(ours)
				ctx := objectifyArrays(ours.ctx, hit).(map[string]any)
				rule := objectifyRuleArrays(ours.rule, hit, false)
				ours.ctx, ref.ctx = ctx, ctx
				ours.rule, ref.rule = rule, objectifyRuleArrays(ref.rule, hit, false)
				return ours, ref
			},
		},
	}
}

// explanation says which deviations explain a difference and whether, once they are
// neutralised, the engines agree or the reference fails.
type explanation struct {
	names     []string
	refFails  bool
	explained bool
}

func (x explanation) String() string {
	if !x.explained {
		return "unexplained"
	}
	how := "then equal"
	if x.refFails {
		how = "then the reference fails"
	}
	return strings.Join(x.names, "+") + " (" + how + ")"
}

// explain tries each recognised deviation alone, then all of them together.
func explain(c diffCase) explanation {
	var recognised []deviation
	for _, d := range deviations() {
		if d.recognise(c) {
			recognised = append(recognised, d)
		}
	}
	try := func(ds []deviation) explanation {
		ok, refFails := neutralisedAgree(c, ds)
		x := explanation{explained: ok, refFails: refFails}
		for _, d := range ds {
			x.names = append(x.names, d.name)
		}
		return x
	}
	for _, d := range recognised {
		if x := try([]deviation{d}); x.explained {
			return x
		}
	}
	if len(recognised) > 1 {
		if x := try(recognised); x.explained {
			return x
		}
	}
	return explanation{}
}

func neutralisedAgree(c diffCase, ds []deviation) (ok, refFails bool) {
	ours, ref := c, c
	for _, d := range ds {
		ours, ref = d.neutralise(ours, ref)
	}
	o, p := runOurs(ours)
	if p != nil || o.failed {
		return false, false
	}
	r := runRef(ref)
	if r.failed {
		return true, true
	}
	return sameOutcome(o, r), false
}

// hasMissingKeyArray reports whether a missing has a literal array as its first key.
func hasMissingKeyArray(x any) bool {
	found := false
	walkRule(x, func(op string, args any) {
		if a, ok := args.([]any); ok && op == "missing" && len(a) > 0 {
			if _, isArray := a[0].([]any); isArray {
				found = true
			}
		}
	})
	return found
}

// sugarOp reports whether the reference evaluates a non-array argument of op and then
// uses the result as the argument list (if it is one).
func sugarOp(op string) bool {
	switch op {
	case "var", "!", "!!", "==", "!=", "===", "!==", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
		"min", "max", "cat", "substr", "in", "merge", "missing", "missing_some":
		return true
	}
	return false
}

// operator returns the operator and raw arguments of a rule object.
func operator(x any) (op string, args any, ok bool) {
	m, isMap := x.(map[string]any)
	if !isMap || len(m) != 1 {
		return "", nil, false
	}
	for k, v := range m {
		return k, v, true
	}
	return "", nil, false
}

func isRuleObject(x any) bool { _, _, ok := operator(x); return ok }

func hasSugar(x any) bool {
	found := false
	walkRule(x, func(op string, args any) {
		if sugarOp(op) && isRuleObject(args) {
			found = true
		}
	})
	return found
}

// walkRule calls fn for every operator in a rule tree.
func walkRule(x any, fn func(op string, args any)) {
	switch t := x.(type) {
	case map[string]any:
		if op, args, ok := operator(t); ok {
			fn(op, args)
		}
		for _, v := range t {
			walkRule(v, fn)
		}
	case []any:
		for _, v := range t {
			walkRule(v, fn)
		}
	}
}

// mapRule rebuilds a rule tree bottom-up, letting fn replace each operator object.
func mapRule(x any, fn func(op string, args any) any) any {
	switch t := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[k] = mapRule(v, fn)
		}
		if op, args, ok := operator(out); ok {
			return fn(op, args)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, v := range t {
			out[i] = mapRule(v, fn)
		}
		return out
	}
	return x
}

func wrapSugar(x any) any {
	return mapRule(x, func(op string, args any) any {
		if sugarOp(op) && isRuleObject(args) {
			return map[string]any{op: []any{args}}
		}
		return map[string]any{op: args}
	})
}

// substituting reports whether the reference substitutes outer variables into op's inner rule.
func substituting(op string) bool {
	return op == "filter" || op == "some" || op == "all" || op == "none"
}

// iterationBodyHasVar reports whether the inner rule of a filter/some/all/none holds a
// var the reference's solveVars tries to resolve (any path but "" and ".x").
func iterationBodyHasVar(x any, inBody bool) bool {
	switch t := x.(type) {
	case map[string]any:
		op, args, ok := operator(t)
		if ok && op == "var" && inBody {
			if s, isString := args.(string); !isString || (s != "" && !strings.HasPrefix(s, ".")) {
				return true
			}
		}
		if ok && substituting(op) {
			if a, isList := args.([]any); isList && len(a) >= 2 {
				return iterationBodyHasVar(a[0], inBody) || iterationBodyHasVar(a[1], true)
			}
		}
		for _, v := range t {
			if iterationBodyHasVar(v, inBody) {
				return true
			}
		}
	case []any:
		for _, v := range t {
			if iterationBodyHasVar(v, inBody) {
				return true
			}
		}
	}
	return false
}

// rewriteIterations expresses filter/some/all/none with map, which the reference
// evaluates without substituting outer variables:
//
//	filter(S, B) = merge-spread of map(S, if(B, [elem], []))
//	some(S, B)   = in(true, map(S, !!B))
//	none(S, B)   = !some(S, B)
//	all(S, B)    = !!S and !in(false, map(S, !!B))
func rewriteIterations(x any) any {
	return mapRule(x, func(op string, args any) any {
		a, isList := args.([]any)
		if !substituting(op) || !isList || len(a) < 2 {
			return map[string]any{op: args}
		}
		subject, body := a[0], a[1]
		truths := map[string]any{"map": []any{subject, map[string]any{"!!": []any{body}}}}
		some := map[string]any{"in": []any{true, truths}}
		switch op {
		case "filter":
			keep := map[string]any{"if": []any{body, []any{map[string]any{"var": ""}}, []any{}}}
			return map[string]any{"merge": map[string]any{"map": []any{subject, keep}}}
		case "some":
			return some
		case "none":
			return map[string]any{"!": []any{some}}
		default: // all
			anyFalse := map[string]any{"in": []any{false, truths}}
			return map[string]any{"and": []any{
				map[string]any{"!!": []any{subject}},
				map[string]any{"!": []any{anyFalse}},
			}}
		}
	})
}

// scopedPath is a constant var or missing path of a rule, split into segments, with
// the scope it reads.
type scopedPath struct {
	parts []string
	sc    scope
}

// wordPaths returns the var and missing paths of a rule that have a segment that is
// not an integer.
func wordPaths(x any, sc scope, out []scopedPath) []scopedPath {
	add := func(p any) {
		s, ok := p.(string)
		if !ok {
			return
		}
		parts := strings.Split(s, ".")
		for _, part := range parts {
			if _, err := strconv.Atoi(part); err != nil && part != "" {
				out = append(out, scopedPath{parts, sc})
				return
			}
		}
	}
	switch t := x.(type) {
	case []any:
		for _, v := range t {
			out = wordPaths(v, sc, out)
		}
		return out
	case map[string]any:
		op, args, ok := operator(t)
		if !ok {
			return out
		}
		a, isList := args.([]any)
		switch {
		case op == "var":
			if isList && len(a) > 0 {
				add(a[0])
				return wordPaths(a[1:], sc, out)
			}
			add(args)
			return wordPaths(args, sc, out)
		case op == "missing" || op == "missing_some":
			eachString(args, add)
		case isList && len(a) >= 2 && (substituting(op) || op == "map"):
			out = wordPaths(a[0], sc, out)
			out = wordPaths(a[1], scopeElem, out)
			return wordPaths(a[2:], sc, out)
		case isList && len(a) >= 2 && op == "reduce":
			out = wordPaths(a[0], sc, out)
			out = wordPaths(a[1], scopeReduce, out)
			return wordPaths(a[2:], sc, out)
		}
		return wordPaths(args, sc, out)
	}
	return out
}

// eachString calls fn for every string in a rule tree (the keys of missing can be computed).
func eachString(x any, fn func(any)) {
	switch t := x.(type) {
	case string:
		fn(t)
	case map[string]any:
		for _, v := range t {
			eachString(v, fn)
		}
	case []any:
		for _, v := range t {
			eachString(v, fn)
		}
	}
}

// arraysHitByWords finds the non-empty context arrays that a word segment of a rule
// path reaches, walking the path the reference's way: from the context for the paths
// at the root, from every value in the context for those inside map/filter/… (any of
// them can be an element), and likewise after "current." inside reduce.
func arraysHitByWords(c diffCase) map[*any]bool {
	hit := map[*any]bool{}
	paths := wordPaths(c.rule, scopeRoot, nil)
	if len(paths) == 0 {
		return hit
	}
	var values []any
	var collect func(v any)
	collect = func(v any) {
		values = append(values, v)
		switch t := v.(type) {
		case map[string]any:
			for _, e := range t {
				collect(e)
			}
		case []any:
			for _, e := range t {
				collect(e)
			}
		}
	}
	collect(any(c.ctx))
	for _, a := range dataArrays(c.rule, false, nil) {
		collect(a)
	}
	for _, p := range paths {
		switch p.sc {
		case scopeRoot:
			walkRefPath(c.ctx, p.parts, hit)
		case scopeElem:
			for _, v := range values {
				walkRefPath(v, p.parts, hit)
			}
		case scopeReduce:
			if p.parts[0] == "current" {
				for _, v := range values {
					walkRefPath(v, p.parts[1:], hit)
				}
			}
		}
	}
	return hit
}

func walkRefPath(cur any, parts []string, hit map[*any]bool) {
	for _, part := range parts {
		if part == "" {
			continue
		}
		switch t := cur.(type) {
		case map[string]any:
			cur = t[part]
		case []any:
			if len(t) == 0 {
				return
			}
			if _, err := strconv.Atoi(part); err != nil {
				hit[&t[0]] = true
			}
			f, _ := strconv.ParseFloat(part, 64)
			i := int(f)
			if i < 0 || i >= len(t) {
				return
			}
			cur = t[i]
		default:
			return
		}
	}
}

// dataArrays returns the arrays of a rule that are values (elements of map's result,
// for instance), not the argument list of an operator.
func dataArrays(x any, argList bool, out []any) []any {
	switch t := x.(type) {
	case map[string]any:
		if _, args, ok := operator(t); ok {
			return dataArrays(args, true, out)
		}
		for _, v := range t {
			out = dataArrays(v, false, out)
		}
	case []any:
		if !argList {
			out = append(out, t)
		}
		for _, v := range t {
			out = dataArrays(v, false, out)
		}
	}
	return out
}

// objectifyRuleArrays copies a rule, turning the hit literal data arrays into objects
// keyed "0", "1", … plus "_" (so that no such object has a single key, which would
// make it an operator).
func objectifyRuleArrays(x any, hit map[*any]bool, argList bool) any {
	switch t := x.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		_, _, isOp := operator(t)
		for k, v := range t {
			out[k] = objectifyRuleArrays(v, hit, isOp)
		}
		return out
	case []any:
		if !argList && len(t) > 0 && hit[&t[0]] && !isRuleObject(t) && isLiteralTree(t) {
			out := map[string]any{"_": true}
			for i, e := range t {
				out[strconv.Itoa(i)] = e
			}
			return out
		}
		out := make([]any, len(t))
		for i, v := range t {
			out[i] = objectifyRuleArrays(v, hit, false)
		}
		return out
	}
	return x
}

// isLiteralTree reports whether a rule tree holds no operator.
func isLiteralTree(x any) bool {
	found := false
	walkRule(x, func(string, any) { found = true })
	return !found
}

// objectifyArrays copies v, turning the hit arrays into objects keyed "0", "1", …:
// integer segments still find their elements and word segments find nothing, in both engines.
func objectifyArrays(v any, hit map[*any]bool) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = objectifyArrays(e, hit)
		}
		return out
	case []any:
		if len(t) > 0 && hit[&t[0]] {
			out := make(map[string]any, len(t))
			for i, e := range t {
				out[strconv.Itoa(i)] = objectifyArrays(e, hit)
			}
			return out
		}
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = objectifyArrays(e, hit)
		}
		return out
	}
	return v
}

// TestDifferential runs the generated cases.
func TestDifferential(t *testing.T) {
	seed, n := *differentialSeed, *differentialN
	stats := map[string]int{}
	failures := 0
	for i := range n {
		g := ruleGen{r: rand.New(rand.NewPCG(seed, uint64(i)))}
		c := diffCase{rule: g.rule(), ctx: g.context()}
		ours, panicked := runOurs(c)
		if panicked != nil {
			t.Errorf("seed %d case %d: our engine panicked: %v\n%s", seed, i, panicked, c)
			failures++
			continue
		}
		ref := runRef(c)
		switch {
		case ref.failed:
			stats["reference fails"]++
			continue
		case sameOutcome(ours, ref):
			stats["same"]++
			continue
		}
		x := explain(c)
		if !x.explained {
			failures++
			t.Errorf("seed %d case %d: unexplained difference\n%s\nours:      %s\nreference: %s", seed, i, c, ours, ref)
		} else {
			stats["explained: "+x.String()]++
		}
		if failures >= 20 {
			t.Fatalf("stopping after %d failures (seed %d)", failures, seed)
		}
	}
	t.Logf("seed %d, %d cases: %v", seed, n, stats)
	for _, d := range deviations() {
		t.Logf("deviation %s: %s", d.name, d.why)
	}
	if compared := n - stats["reference fails"]; compared*2 < n {
		t.Errorf("seed %d: the reference engine failed on %d of %d cases: the generator is too often out of its domain", seed, n-compared, n)
	}
}

// TestDeviations pins each documented deviation (and each difference we fixed) on a
// minimal case, with what both engines give.
func TestDeviations(t *testing.T) {
	type engines struct {
		Ours, Ref any
		OursFails bool
		RefFails  bool
		Explained string
	}
	cases := map[string]struct {
		rule, ctx string
		amd64Only bool // Go leaves int(NaN) to the platform
		want      engines
	}{
		"sugar: ! of an array": {
			rule: `{"!": {"var": "xs"}}`, ctx: `{"xs": [0]}`,
			want: engines{Ours: false, Ref: true, Explained: "unarySugarSpread (then equal)"},
		},
		"sugar: + of an array": {
			rule: `{"+": {"var": "xs"}}`, ctx: `{"xs": [1, 2]}`,
			want: engines{Ours: math.NaN(), Ref: 3.0, Explained: "unarySugarSpread (then the reference fails)"},
		},
		"sugar: missing of merge (JsonLogic's documented form) agrees": {
			rule: `{"missing": {"merge": ["a", "b"]}}`, ctx: `{"a": 1}`,
			want: engines{Ours: []any{"b"}, Ref: []any{"b"}},
		},
		"filter substitutes an outer var": {
			rule: `{"filter": [{"var": "xs"}, {"==": [{"var": "n"}, 1]}]}`, ctx: `{"xs": [{"n": 1}, {"n": 2}], "n": 2}`,
			want: engines{Ours: []any{map[string]any{"n": 1.0}}, Ref: []any{}, Explained: "iterationScope (then equal)"},
		},
		"some substitutes a default": {
			rule: `{"some": [[{"x": 1, "y": 0}], {"==": [{"var": ["x", 2]}, 2]}]}`, ctx: `{}`,
			want: engines{Ours: false, Ref: true, Explained: "iterationScope (then equal)"},
		},
		"none with a var only the element has agrees": {
			rule: `{"none": [{"var": "xs"}, {">": [{"var": "v"}, 5]}]}`, ctx: `{"xs": [{"v": 1}, {"v": 9}]}`,
			want: engines{Ours: false, Ref: false},
		},
		"word segment on an array": {
			rule: `{"var": "items.first"}`, ctx: `{"items": ["a", "b"]}`,
			want: engines{Ours: nil, Ref: "a", Explained: "nonIntegerArraySegment (then equal)"},
		},
		"word segment in missing": {
			rule: `{"missing": ["items.x"]}`, ctx: `{"items": [1]}`,
			want: engines{Ours: []any{"items.x"}, Ref: []any{}, Explained: "nonIntegerArraySegment (then equal)"},
		},
		"missing with an array of keys": {
			rule: `{"missing": [["a", "b"]]}`, ctx: `{"b": 1}`,
			want: engines{Ours: []any{"a"}, Ref: []any{}, Explained: "missingKeyArray (then equal)"},
		},
		"fixed: NaN is truthy": {
			rule: `{"if": [{"/": [0, 0]}, "yes", "no"]}`, ctx: `{}`,
			want: engines{Ours: "yes", Ref: "yes"},
		},
		"fixed: reduce over a missing array gives 0, not the initial value": {
			rule: `{"reduce": [{"var": "xs"}, {"+": [{"var": "accumulator"}, 1]}, 10]}`, ctx: `{}`,
			want: engines{Ours: 0.0, Ref: 0.0},
		},
		"fixed: var null reads nothing from an object scope": {
			rule: `{"var": null}`, ctx: `{"a": 1}`,
			want: engines{Ours: nil, Ref: nil},
		},
		"fixed: var null reads a scalar element": {
			rule: `{"map": [[1, "x", [2]], {"var": null}]}`, ctx: `{}`,
			want: engines{Ours: []any{1.0, "x", nil}, Ref: []any{1.0, "x", nil}},
		},
		"fixed: a number string out of range compares as NaN": {
			rule: `{"<": [1, "1e999"]}`, ctx: `{}`,
			want: engines{Ours: false, Ref: false},
		},
		"a number string out of range is Infinity in arithmetic": {
			rule: `{"+": ["1e999", 1]}`, ctx: `{}`,
			want: engines{Ours: math.Inf(1), Ref: math.Inf(1)},
		},
		"fixed: substr start beyond 2^31": {
			rule: `{"substr": ["abc", 1e10, 1]}`, ctx: `{}`,
			want: engines{Ours: "abc", Ref: "abc"},
		},
		"fixed: substr start NaN (as the reference on amd64)": {
			rule: `{"substr": ["abc", "NaN", 1]}`, ctx: `{}`, amd64Only: true,
			want: engines{Ours: "abc", Ref: "abc"},
		},
		"fixed: missing_some truncates its count": {
			rule: `{"missing_some": [1.5, ["a", "b"]]}`, ctx: `{"a": 1}`,
			want: engines{Ours: []any{}, Ref: []any{}},
		},
		"fixed: + of one -0 is -0": {
			rule: `{"cat": ["x", {"+": ["-0"]}]}`, ctx: `{}`,
			want: engines{Ours: "x-0", Ref: "x-0"},
		},
		"null in arithmetic: reference fails": {
			rule: `{"+": [{"var": "missing"}, 1]}`, ctx: `{}`,
			want: engines{Ours: 1.0, RefFails: true},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.amd64Only && runtime.GOARCH != "amd64" {
				t.Skip("the reference's int(NaN) differs on " + runtime.GOARCH)
			}
			var c diffCase
			if err := json.Unmarshal([]byte(tc.rule), &c.rule); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.ctx), &c.ctx); err != nil {
				t.Fatal(err)
			}
			ours, panicked := runOurs(c)
			if panicked != nil {
				t.Fatalf("our engine panicked: %v", panicked)
			}
			ref := runRef(c)
			got := engines{Ours: ours.value, Ref: ref.value, OursFails: ours.failed, RefFails: ref.failed}
			if !ref.failed && !sameOutcome(ours, ref) {
				got.Explained = explain(c).String()
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c, diff)
			}
		})
	}
}

// ruleGen generates rules over the standard operators and contexts to run them with.
// The context keys and the paths the rules read are drawn from the same small sets, so
// that most variables resolve.
type ruleGen struct {
	r *rand.Rand
}

// scope is what var reads where a rule is generated.
type scope uint8

const (
	scopeRoot   scope = iota // the context
	scopeElem                // an element of map/filter/all/none/some
	scopeReduce              // {current, accumulator}
)

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

func (g ruleGen) chance(percent int) bool { return g.r.IntN(100) < percent }

func (g ruleGen) number() any {
	switch g.r.IntN(4) {
	case 0:
		return float64(g.r.IntN(16) - 5)
	case 1:
		return float64(g.r.IntN(2001)-1000) / 100
	default:
		return pick(g.r, 0.0, 1.0, -1.0, 2.0, 3.0, 10.0, -7.0, 0.5, -2.5, 3.14, 100.0, 1e-7, 1e21, 123456789.0)
	}
}

func (g ruleGen) numericString() any {
	return pick(g.r, "0", "1", "-1", "2.5", "10", "007", " 3", "3 ", "1e3", "0x10", "-0", "Infinity", "NaN", "1e999", "+4")
}

func (g ruleGen) word() any {
	return pick(g.r, "abc", "a", "b", "hello world", " padded ", "ABC", "é", "a,b", "", " ", "x", "name", "true", "null")
}

func (g ruleGen) scalar() any {
	switch g.r.IntN(10) {
	case 0, 1, 2:
		return g.number()
	case 3, 4:
		return g.numericString()
	case 5, 6:
		return g.word()
	case 7, 8:
		return g.chance(50)
	default:
		return nil
	}
}

func (g ruleGen) array(depth int) []any {
	out := make([]any, g.r.IntN(4))
	for i := range out {
		out[i] = g.value(depth - 1)
	}
	return out
}

func (g ruleGen) object(depth int) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"x", "name", "age", "tags", "address"} {
		if !g.chance(60) {
			continue
		}
		switch k {
		case "name":
			out[k] = g.word()
		case "age":
			out[k] = g.number()
		case "tags":
			out[k] = g.array(depth - 1)
		case "address":
			if depth > 0 {
				out[k] = map[string]any{"city": g.word()}
			}
		default:
			out[k] = g.value(depth - 1)
		}
	}
	return out
}

// value is a context value: mostly scalars, sometimes small arrays and objects.
func (g ruleGen) value(depth int) any {
	if depth > 0 {
		switch g.r.IntN(8) {
		case 0:
			return g.array(depth)
		case 1:
			return g.object(depth)
		}
	}
	return g.scalar()
}

func (g ruleGen) context() map[string]any {
	ctx := map[string]any{}
	for _, k := range []string{"a", "b", "n", "s", "flag", "user", "items", "nums", "empty"} {
		if !g.chance(70) {
			continue
		}
		switch k {
		case "n":
			ctx[k] = g.number()
		case "s":
			ctx[k] = pick(g.r, g.word(), g.numericString())
		case "flag":
			ctx[k] = pick(g.r, any(true), any(false), nil, any(0.0), any("yes"))
		case "user":
			ctx[k] = g.object(2)
		case "items":
			items := make([]any, g.r.IntN(4))
			for i := range items {
				if g.chance(70) {
					items[i] = g.object(1)
				} else {
					items[i] = g.scalar()
				}
			}
			ctx[k] = items
		case "nums":
			nums := make([]any, g.r.IntN(5))
			for i := range nums {
				nums[i] = pick(g.r, g.number(), g.number(), g.numericString())
			}
			ctx[k] = nums
		case "empty":
			ctx[k] = pick(g.r, any(""), any([]any{}), any(map[string]any{}), any(0.0), nil)
		default:
			ctx[k] = g.value(2)
		}
	}
	return ctx
}

func (g ruleGen) path(sc scope) string {
	switch sc {
	case scopeElem:
		if g.chance(15) {
			return g.path(scopeRoot) // an outer name: the reference substitutes it
		}
		return pick(g.r, "", "x", "name", "age", "0", "1", "tags.0", "address.city", "x.name", "nope")
	case scopeReduce:
		return pick(g.r, "current", "current", "accumulator", "accumulator", "current.x", "current.age", "current.0")
	}
	return pick(g.r, "a", "b", "n", "s", "flag", "user", "user.name", "user.age", "user.tags", "user.tags.0",
		"user.tags.1", "user.address.city", "user.x", "items", "items.0", "items.1.name", "items.0.age",
		"items.x", "nums", "nums.0", "nums.2", "empty", "missing", "missing.deep", "user.")
}

func (g ruleGen) varRule(sc scope) any {
	p := g.path(sc)
	switch g.r.IntN(12) {
	case 0:
		return map[string]any{"var": []any{p}}
	case 1, 2, 3:
		return map[string]any{"var": []any{p, g.scalar()}}
	case 4:
		if n, err := strconv.Atoi(p); err == nil {
			return map[string]any{"var": float64(n)}
		}
	case 5:
		if g.chance(20) {
			return map[string]any{"var": pick[any](g.r, nil, []any{}, "")}
		}
	}
	return map[string]any{"var": p}
}

func (g ruleGen) leaf(sc scope) any {
	switch g.r.IntN(10) {
	case 0, 1, 2, 3, 4:
		return g.varRule(sc)
	case 5:
		lit := make([]any, g.r.IntN(4))
		for i := range lit {
			lit[i] = g.scalar()
		}
		return lit
	}
	return g.scalar()
}

func (g ruleGen) args(n, depth int, sc scope) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = g.expr(depth-1, sc)
	}
	return out
}

// numArg is an argument of an arithmetic operator: mostly something numeric, so that
// the reference engine (which refuses null and booleans there) gives an answer.
func (g ruleGen) numArg(depth int, sc scope) any {
	switch g.r.IntN(10) {
	case 0, 1, 2:
		return pick(g.r, g.number(), g.number(), g.numericString())
	case 3, 4, 5:
		var p string
		switch sc {
		case scopeElem:
			p = pick(g.r, "", "age", "x", "0")
		case scopeReduce:
			p = pick(g.r, "current", "accumulator", "current.age")
		default:
			p = pick(g.r, "n", "user.age", "nums.0", "nums.1", "items.0.age", "s", "a")
		}
		return map[string]any{"var": []any{p, g.number()}}
	}
	return g.expr(depth-1, sc)
}

// strArg is an argument of cat, substr or in: mostly a string or a number.
func (g ruleGen) strArg(depth int, sc scope) any {
	switch g.r.IntN(10) {
	case 0, 1, 2:
		return pick(g.r, g.word(), g.word(), g.numericString(), g.number())
	case 3, 4, 5:
		var p string
		switch sc {
		case scopeElem:
			p = pick(g.r, "", "name", "x", "0")
		case scopeReduce:
			p = pick(g.r, "current", "accumulator", "current.name")
		default:
			p = pick(g.r, "s", "user.name", "items.0.name", "user.address.city", "n", "b")
		}
		return map[string]any{"var": []any{p, g.word()}}
	}
	return g.expr(depth-1, sc)
}

func (g ruleGen) typedArgs(n, depth int, sc scope, arg func(ruleGen, int, scope) any) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = arg(g, depth, sc)
	}
	return out
}

// subject is the array argument of map/filter/all/none/some/reduce.
func (g ruleGen) subject(depth int, sc scope) any {
	switch g.r.IntN(6) {
	case 0:
		lit := make([]any, g.r.IntN(4))
		for i := range lit {
			lit[i] = g.scalar()
		}
		return lit
	case 1:
		return map[string]any{"merge": g.args(1+g.r.IntN(2), depth, sc)}
	case 2:
		return g.expr(depth-1, sc)
	}
	if sc == scopeElem {
		return map[string]any{"var": pick(g.r, "", "tags", "x")}
	}
	if sc == scopeReduce {
		return map[string]any{"var": "current"}
	}
	return map[string]any{"var": pick(g.r, "items", "nums", "user.tags", "a", "missing", "empty")}
}

func (g ruleGen) keys(sc scope) []any {
	out := make([]any, 1+g.r.IntN(3))
	for i := range out {
		out[i] = g.path(sc)
	}
	return out
}

// sugar sometimes writes a one-argument operator without the array.
func (g ruleGen) sugar(op string, arg any) any {
	if g.chance(25) {
		return map[string]any{op: arg}
	}
	return map[string]any{op: []any{arg}}
}

func (g ruleGen) expr(depth int, sc scope) any {
	if depth <= 0 || g.chance(20) {
		return g.leaf(sc)
	}
	op := pick(g.r, "==", "===", "!=", "!==", "<", "<=", ">", ">=", "!", "!!", "and", "or", "if", "if",
		"+", "-", "*", "/", "%", "min", "max", "cat", "substr", "in", "merge", "missing", "missing_some",
		"map", "filter", "all", "none", "some", "reduce")
	switch op {
	case "==", "===", "!=", "!==":
		return map[string]any{op: g.args(2, depth, sc)}
	case "<", "<=", ">", ">=":
		return map[string]any{op: g.args(2+g.r.IntN(2), depth, sc)}
	case "!", "!!":
		return g.sugar(op, g.expr(depth-1, sc))
	case "and", "or":
		return map[string]any{op: g.args(1+g.r.IntN(3), depth, sc)}
	case "if":
		return map[string]any{op: g.args(1+g.r.IntN(5), depth, sc)}
	case "+", "*", "min", "max":
		if g.chance(10) {
			return g.sugar(op, g.expr(depth-1, sc))
		}
		return map[string]any{op: g.typedArgs(1+g.r.IntN(3), depth, sc, ruleGen.numArg)}
	case "-":
		return map[string]any{op: g.typedArgs(1+g.r.IntN(2), depth, sc, ruleGen.numArg)}
	case "/", "%":
		return map[string]any{op: g.typedArgs(2, depth, sc, ruleGen.numArg)}
	case "cat":
		if g.chance(10) {
			return g.sugar(op, g.expr(depth-1, sc))
		}
		return map[string]any{op: g.typedArgs(g.r.IntN(4), depth, sc, ruleGen.strArg)}
	case "substr":
		a := []any{g.strArg(depth, sc), float64(g.r.IntN(11) - 5)}
		if g.chance(30) {
			a[1] = g.numArg(depth, sc)
		}
		if g.chance(60) {
			a = append(a, pick[any](g.r, float64(g.r.IntN(11)-5), g.numArg(depth, sc)))
		}
		return map[string]any{op: a}
	case "in":
		hay := pick[any](g.r, g.word(), g.strArg(depth, sc), g.leaf(sc), map[string]any{"merge": g.args(1+g.r.IntN(2), depth, sc)})
		return map[string]any{op: []any{g.strArg(depth, sc), hay}}
	case "merge":
		if g.chance(10) {
			return g.sugar(op, g.expr(depth-1, sc))
		}
		return map[string]any{op: g.args(g.r.IntN(4), depth, sc)}
	case "missing":
		switch g.r.IntN(10) {
		case 0, 1:
			return map[string]any{op: map[string]any{"merge": g.keys(sc)}}
		case 2:
			return map[string]any{op: []any{g.keys(sc)}}
		}
		return map[string]any{op: g.keys(sc)}
	case "missing_some":
		return map[string]any{op: []any{float64(g.r.IntN(4)), g.keys(sc)}}
	case "reduce":
		initial := pick[any](g.r, 0.0, 1.0, "", "x", true, false, g.expr(depth-1, sc))
		return map[string]any{op: []any{g.subject(depth, sc), g.expr(depth-1, scopeReduce), initial}}
	default: // map, filter, all, none, some
		return map[string]any{op: []any{g.subject(depth, sc), g.expr(depth-1, scopeElem)}}
	}
}

func (g ruleGen) rule() any {
	for {
		if r := g.expr(1+g.r.IntN(4), scopeRoot); isRuleObject(r) {
			return r
		}
	}
}
