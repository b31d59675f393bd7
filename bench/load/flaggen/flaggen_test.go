package flaggen

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// TestGenerateParsesStrictly checks that generated documents pass strict parsing, hold
// the requested number of flags, and that the fixed flags answer what the load
// harness expects.
func TestGenerateParsesStrictly(t *testing.T) {
	for _, n := range []int{MinFlags, MinFlags + 1, 50, 1000, 2500} {
		data, err := Generate(n)
		if err != nil {
			t.Fatalf("Generate(%d): %v", n, err)
		}
		set, err := flags.Parse(data, flags.Strict)
		if err != nil {
			t.Fatalf("Generate(%d) does not parse strictly: %v", n, err)
		}
		if len(set.Warnings) != 0 {
			t.Errorf("Generate(%d): warnings %v", n, set.Warnings)
		}
		if len(set.Flags) != n {
			t.Errorf("Generate(%d): %d flags", n, len(set.Flags))
		}
		byKey := map[string]*eval.Flag{}
		kinds := map[string]int{}
		for _, f := range set.Flags {
			byKey[f.Key] = f
			if parts := strings.Split(f.Key, "-"); len(parts) == 3 {
				kinds[parts[2]]++
			}
		}
		type answer struct {
			Value  any
			Reason eval.Reason
		}
		cases := []struct {
			key  string
			ctx  map[string]any
			want answer
		}{
			{StaticBoolKey, nil, answer{true, eval.ReasonStatic}},
			{TargetingBoolKey, map[string]any{"email": "ada" + TargetingEmailSuffix}, answer{true, eval.ReasonTargetingMatch}},
			{TargetingBoolKey, map[string]any{"email": "ada@elsewhere.example"}, answer{false, eval.ReasonTargetingMatch}},
			{StaticStringKey, nil, answer{StaticString, eval.ReasonStatic}},
			{StaticIntKey, nil, answer{int64(StaticInt), eval.ReasonStatic}},
			{StaticFloatKey, nil, answer{StaticFloat, eval.ReasonStatic}},
			{StaticObjectKey, nil, answer{StaticObject(), eval.ReasonStatic}},
		}
		for _, c := range cases {
			f, ok := byKey[c.key]
			if !ok {
				t.Fatalf("Generate(%d): no flag %q", n, c.key)
			}
			r := f.EvaluateAs(eval.TypeAny, c.ctx, nil)
			if c.key == StaticIntKey {
				r = f.EvaluateAs(eval.TypeInteger, c.ctx, nil)
			}
			if diff := cmp.Diff(c.want, answer{r.Value, r.Reason}); diff != "" {
				t.Errorf("Generate(%d) %s %v (-want +got):\n%s", n, c.key, c.ctx, diff)
			}
		}
		if n == 1000 {
			want := map[string]int{"bool": 300, "email": 100, "country": 100, "rollout": 150, "semver": 100,
				"ref": 100, "int": 25, "float": 25, "object": 50, "disabled": 50}
			// 994 generated flags: the last six of the cycle (sem_ver, ref ×2, the number,
			// object, disabled) fall short by one.
			want["semver"], want["ref"], want["object"], want["disabled"] = 99, 98, 49, 49
			want["float"] = 24
			if diff := cmp.Diff(want, kinds); diff != "" {
				t.Errorf("Generate(1000) mix (-want +got):\n%s", diff)
			}
		}
	}
}

// TestGenerateRejectsTooFew checks the lower bound.
func TestGenerateRejectsTooFew(t *testing.T) {
	for _, n := range []int{-1, 0, 1, MinFlags - 1} {
		if _, err := Generate(n); err == nil {
			t.Errorf("Generate(%d): no error", n)
		}
	}
}
