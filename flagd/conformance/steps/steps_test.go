package steps

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

func TestTagFilter(t *testing.T) {
	tests := map[string]struct {
		include, exclude []string
		want             string
	}{
		"exclusions only": {
			exclude: []string{"@fractional-v1", "@fractional-v3"},
			want:    "~@fractional-v1 && ~@fractional-v3",
		},
		"one group": {
			include: []string{"@in-process"},
			exclude: []string{"@grace"},
			want:    "@in-process && ~@grace",
		},
		"exclusions repeat in every group": {
			include: []string{"@rpc", "@in-process"},
			exclude: []string{"@grace", "@caching"},
			want:    "@rpc && ~@grace && ~@caching, @in-process && ~@grace && ~@caching",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, TagFilter(tt.include, tt.exclude)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestMergedFlags(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a.json":          `{"flags": {"x": {"state": "ENABLED", "variants": {"on": true}}}, "metadata": {"v": 1}}`,
		"b.json":          `{"flags": {"x": {"variants": {"off": false}}, "y": {"state": "DISABLED"}}, "metadata": {"v": 2}}`,
		"selector-z.json": `{"flags": {"z": {}}}`,
		"notes.txt":       `not a flag file`,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := MergedFlags(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"flags": map[string]any{
			"x": map[string]any{"state": "ENABLED", "variants": map[string]any{"on": true, "off": false}},
			"y": map[string]any{"state": "DISABLED"},
		},
		"metadata": map[string]any{"v": 2.0},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("MergedFlags (-want +got):\n%s", d)
	}
}

// failingSuiteEnv names, in a re-run of the test binary, the suite TestRunFails expects
// to fail: a failing godog run also fails the test that runs it.
const failingSuiteEnv = "STEPS_FAILING_SUITE"

// failingSuites are suites Run must fail, by name.
func failingSuites() map[string]string {
	return map[string]string{
		"undefined step": `Feature: f
  Scenario: s
    Given an evaluator
    And a step nobody defined`,
		"failing scenario": `Feature: f
  Scenario: s
    Given an evaluator
    And a Boolean-flag with key "on" and a fallback value "false"
    When the flag was evaluated with details
    Then the resolved details value should be "false"`,
		"no scenario selected": `Feature: f
  @other
  Scenario: s
    Given an evaluator`,
	}
}

func TestRunFails(t *testing.T) {
	if name := os.Getenv(failingSuiteEnv); name != "" {
		runFailingSuite(t, name, failingSuites()[name])
		return
	}
	for name := range failingSuites() {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunFails$", "-test.count=1")
			cmd.Env = append(os.Environ(), failingSuiteEnv+"="+name)
			out, err := cmd.CombinedOutput()
			if _, ok := errors.AsType[*exec.ExitError](err); !ok {
				t.Fatalf("suite %q: want the test to fail, got %v\n%s", name, err, out)
			}
			if !strings.Contains(string(out), "godog suite "+name) {
				t.Errorf("suite %q: no failure report from Run in:\n%s", name, out)
			}
		})
	}
}

// runFailingSuite runs one of failingSuites with an evaluator whose only flag "on"
// resolves to true.
func runFailingSuite(t *testing.T, name, feature string) {
	t.Helper()
	evaluator := ResolverFunc(func(_ context.Context, key string, _ eval.Type, _ map[string]any) (Outcome, error) {
		if key != "on" {
			return FromResolution(eval.NotFound(key)), nil
		}
		return Outcome{Value: true, HasValue: true, Variant: "on", Reason: string(eval.ReasonStatic)}, nil
	})
	Suite{
		Name:     name,
		Features: []godog.Feature{{Name: "f.feature", Contents: []byte(feature)}},
		Tags:     "~@other",
		Initialize: func(sc *godog.ScenarioContext) {
			s := &Scenario{}
			sc.Step(`^an evaluator$`, func() error {
				s.Resolver = evaluator
				return nil
			})
			s.Register(sc, "fallback", Int64Numbers)
		},
	}.Run(t)
}
