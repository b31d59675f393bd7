package flags_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/cucumber/godog"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// fixedClock pins $flagd.timestamp so that timestamp targeting is deterministic
// (2026-01-01T00:00:00Z; the testbed compares it with 1 and with 4133980802, year 2100).
func fixedClock() time.Time { return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC) }

// TestEvaluatorConformance runs the testbed's evaluator-level gherkin suite
// (evaluator/gherkin/*.feature, "Given an evaluator") against the engine, with
// evaluator/flags/testkit-flags.json parsed the way flagd serves it (lenient).
// Fractional v1 (pre-0.15 bucketing) and v3 (CBOR hashing, unreleased) are excluded:
// the engine implements v2, as flagd 0.16 does.
func TestEvaluatorConformance(t *testing.T) {
	features := steps.Testbed(t, "evaluator", "gherkin")
	data, err := os.ReadFile(steps.Testbed(t, "evaluator", "flags", "testkit-flags.json"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := flags.Parse(data, flags.Lenient)
	if err != nil {
		t.Fatalf("parsing testkit-flags.json: %v", err)
	}
	byKey := make(map[string]*eval.Flag, len(set.Flags))
	for _, f := range set.Flags {
		byKey[f.Key] = f
	}
	evaluator := steps.ResolverFunc(func(_ context.Context, key string, typ eval.Type, ctx map[string]any) (steps.Outcome, error) {
		f, ok := byKey[key]
		if !ok {
			return steps.FromResolution(eval.NotFound(key)), nil
		}
		return steps.FromResolution(f.EvaluateAs(typ, ctx, fixedClock)), nil
	})

	steps.Suite{
		Name:  "flagd-evaluator",
		Paths: []string{features},
		Tags:  steps.TagFilter(nil, []string{"@fractional-v1", "@fractional-v3"}),
		Initialize: func(sc *godog.ScenarioContext) {
			s := &steps.Scenario{}
			sc.Step(`^an evaluator$`, func() error {
				s.Resolver = evaluator
				return nil
			})
			s.Register(sc, "fallback", steps.Int64Numbers)
		},
	}.Run(t)
}
