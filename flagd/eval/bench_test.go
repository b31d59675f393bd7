package eval_test

import (
	"testing"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// benchFlags are the shapes the budgets are stated for.
const benchFlags = `{
  "$evaluators": {
    "rule0": {"==": [{"var": "tier"}, "gold"]},
    "rule1": {"in": [{"var": "country"}, ["de", "fr", "it"]]},
    "rule2": {">=": [{"var": "age"}, 21]},
    "rule3": {"ends_with": [{"var": "email"}, "@example.com"]},
    "rule4": {"starts_with": [{"var": "email"}, "admin"]},
    "rule5": {"<": [{"var": "age"}, 18]},
    "rule6": {"==": [{"var": "beta"}, true]},
    "rule7": {"in": ["vip", {"var": "groups"}]},
    "rule8": {"!=": [{"var": "country"}, "us"]},
    "rule9": {"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}
  },
  "flags": {
    "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "flagd-shape": {"state": "ENABLED", "variants": {"bool1": true, "bool2": false}, "defaultVariant": "bool2",
      "targeting": {"if": [{"==": [{"var": ["color"]}, "yellow"]}, "bool1", null]}},
    "if-in-ends-with": {"state": "ENABLED", "variants": {"internal": "internal", "beta": "beta", "public": "public"}, "defaultVariant": "public",
      "targeting": {"if": [
        {"ends_with": [{"var": "email"}, "@example.com"]}, "internal",
        {"in": [{"var": "country"}, ["de", "fr", "nl"]]}, "beta",
        "public"]}},
    "fractional-4": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c", "d": "d"}, "defaultVariant": "a",
      "targeting": {"fractional": [["a", 25], ["b", 25], ["c", 25], ["d", 25]]}},
    "semver": {"state": "ENABLED", "variants": {"new": "new", "old": "old"}, "defaultVariant": "old",
      "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "1.5.0"]}, "new", "old"]}},
    "ten-rules": {"state": "ENABLED", "variants": {"r0": 0, "r1": 1, "r2": 2, "r3": 3, "r4": 4, "r5": 5, "r6": 6, "r7": 7, "r8": 8, "r9": 9, "none": -1}, "defaultVariant": "none",
      "targeting": {"if": [
        {"$ref": "rule0"}, "r0", {"$ref": "rule1"}, "r1", {"$ref": "rule2"}, "r2", {"$ref": "rule3"}, "r3",
        {"$ref": "rule4"}, "r4", {"$ref": "rule5"}, "r5", {"$ref": "rule6"}, "r6", {"$ref": "rule7"}, "r7",
        {"$ref": "rule8"}, "r8", {"$ref": "rule9"}, "r9", null]}}
  }
}`

func benchFlag(b *testing.B, key string) *eval.Flag {
	b.Helper()
	set, err := flags.Parse([]byte(benchFlags), flags.Strict)
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range set.Flags {
		if f.Key == key {
			return f
		}
	}
	b.Fatalf("no flag %q", key)
	return nil
}

func runBench(b *testing.B, key string, t eval.Type, ctx map[string]any, wantVariant string) {
	b.Helper()
	f := benchFlag(b, key)
	if res := f.EvaluateAs(t, ctx, nil); res.Variant != wantVariant || res.Failed() {
		b.Fatalf("resolution %+v, want variant %q", res, wantVariant)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		f.EvaluateAs(t, ctx, nil)
	}
}

func BenchmarkStaticBoolean(b *testing.B) {
	runBench(b, "static-bool", eval.TypeBoolean, map[string]any{"targetingKey": "user-1"}, "on")
}

func BenchmarkFlagdTargetingShape(b *testing.B) {
	runBench(b, "flagd-shape", eval.TypeBoolean, map[string]any{"color": "yellow"}, "bool1")
}

func BenchmarkIfInEndsWith(b *testing.B) {
	ctx := map[string]any{"email": "ada@corp.io", "country": "fr", "targetingKey": "user-1"}
	runBench(b, "if-in-ends-with", eval.TypeString, ctx, "beta")
}

func BenchmarkFractional4(b *testing.B) {
	runBench(b, "fractional-4", eval.TypeString, map[string]any{"targetingKey": "user-1234"}, "b")
}

func BenchmarkSemVer(b *testing.B) {
	runBench(b, "semver", eval.TypeString, map[string]any{"version": "2.3.0"}, "new")
}

func BenchmarkTenRulesRef(b *testing.B) {
	ctx := map[string]any{"tier": "silver", "country": "us", "age": 19.0, "email": "bob@corp.io",
		"beta": false, "groups": []any{"staff"}, "version": "2.1.0"}
	runBench(b, "ten-rules", eval.TypeInteger, ctx, "r9")
}
