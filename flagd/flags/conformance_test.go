package flags_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// testbedDir is the flagd-testbed checkout, relative to this package directory: the
// repository is cloned with shared/ beside it, locally and in CI.
const testbedDir = "../../../shared/flagd-testbed"

// fixedClock pins $flagd.timestamp so that timestamp targeting is deterministic
// (2026-01-01T00:00:00Z; the testbed compares it with 1 and with 4133980802, year 2100).
func fixedClock() time.Time { return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC) }

// TestEvaluatorConformance runs the testbed's evaluator-level gherkin suite
// (evaluator/gherkin/*.feature, "Given an evaluator") against the engine, with
// evaluator/flags/testkit-flags.json parsed the way flagd serves it (lenient).
// Fractional v1 (pre-0.15 bucketing) and v3 (CBOR hashing, unreleased) are excluded:
// the engine implements v2, as flagd 0.16 does.
func TestEvaluatorConformance(t *testing.T) {
	features := filepath.Join(testbedDir, "evaluator", "gherkin")
	requireDir(t, features)
	set, err := flags.Parse(readShared(t, filepath.Join(testbedDir, "evaluator", "flags", "testkit-flags.json")), flags.Lenient)
	if err != nil {
		t.Fatalf("parsing testkit-flags.json: %v", err)
	}
	byKey := make(map[string]*eval.Flag, len(set.Flags))
	for _, f := range set.Flags {
		byKey[f.Key] = f
	}
	evaluator := func(key string, typ eval.Type, ctx map[string]any) (eval.Resolution, error) {
		f, ok := byKey[key]
		if !ok {
			return eval.NotFound(key), nil
		}
		return f.EvaluateAs(typ, ctx, fixedClock), nil
	}

	runGherkin(t, gherkinSuite{
		name:  "flagd-evaluator",
		paths: []string{features},
		tags:  "~@fractional-v1 && ~@fractional-v3",
		initialize: func(sc *godog.ScenarioContext, s *scenario) {
			sc.Step(`^an evaluator$`, func() error {
				s.resolve = evaluator
				return nil
			})
			s.registerFlagSteps(sc, "fallback", int64ContextNumbers)
		},
	})
}

// resolver resolves a flag key as a type for an evaluation context.
type resolver func(key string, typ eval.Type, ctx map[string]any) (eval.Resolution, error)

// details is what an OpenFeature client returns for an evaluation with details.
type details struct {
	Value     any
	Variant   string
	Reason    string
	ErrorCode string
	Metadata  map[string]any
}

// scenario is the state of one gherkin scenario.
type scenario struct {
	resolve      resolver
	flagType     string
	key          string
	fallback     any
	ctx          map[string]any
	targetingKey *string
	details      *details
}

// numberMode says how "Integer" context values enter the context: as Go integers
// (what an in-process caller passes) or as float64 (what a wire request decodes to).
type numberMode bool

const (
	int64ContextNumbers   numberMode = false
	float64ContextNumbers numberMode = true
)

// flagType maps a gherkin flag type to its resolution type.
func flagType(name string) (eval.Type, bool) {
	switch name {
	case "Boolean":
		return eval.TypeBoolean, true
	case "String":
		return eval.TypeString, true
	case "Integer":
		return eval.TypeInteger, true
	case "Float":
		return eval.TypeFloat, true
	case "Object":
		return eval.TypeObject, true
	}
	return eval.TypeAny, false
}

// registerFlagSteps binds the flag, context and assertion steps shared by the
// evaluator and the provider suites. valueWord is "fallback" (evaluator suite) or
// "default" (provider suite), as the feature files word the caller's default.
func (s *scenario) registerFlagSteps(sc *godog.ScenarioContext, valueWord string, numbers numberMode) {
	sc.Step(`^a (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a `+regexp.QuoteMeta(valueWord)+` value "(.*)"$`,
		func(typ, key, raw string) error {
			v, err := parseTyped(typ, raw, int64ContextNumbers)
			if err != nil {
				return fmt.Errorf("%s value: %w", valueWord, err)
			}
			s.flagType, s.key, s.fallback = typ, key, v
			return nil
		})
	sc.Step(`^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$`,
		func(key, typ, raw string) error {
			v, err := parseTyped(typ, raw, numbers)
			if err != nil {
				return fmt.Errorf("context value %q: %w", key, err)
			}
			s.context()[key] = v
			return nil
		})
	sc.Step(`^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$`,
		func(outer, inner, v string) error {
			m, ok := s.context()[outer].(map[string]any)
			if !ok {
				m = map[string]any{}
				s.context()[outer] = m
			}
			m[inner] = v
			return nil
		})
	sc.Step(`^a context containing a targeting key with value "(.*)"$`, func(v string) error {
		s.targetingKey = &v
		return nil
	})
	sc.Step(`^the flag was evaluated with details$`, s.evaluate)
	sc.Step(`^the resolved details value should be "(.*)"$`, func(raw string) error {
		d, err := s.result()
		if err != nil {
			return err
		}
		want, err := parseTyped(s.flagType, raw, int64ContextNumbers)
		if err != nil {
			return fmt.Errorf("expected value: %w", err)
		}
		return diff("value", want, d.Value)
	})
	sc.Step(`^the variant should be "([^"]*)"$`, func(want string) error {
		d, err := s.result()
		if err != nil {
			return err
		}
		return diff("variant", want, d.Variant)
	})
	sc.Step(`^the reason should be "([^"]*)"$`, func(want string) error {
		d, err := s.result()
		if err != nil {
			return err
		}
		return diff("reason", want, d.Reason)
	})
	sc.Step(`^the error-code should be "([^"]*)"$`, func(want string) error {
		d, err := s.result()
		if err != nil {
			return err
		}
		return diff("error code", want, d.ErrorCode)
	})
	sc.Step(`^the resolved metadata is empty$`, func() error {
		d, err := s.result()
		if err != nil {
			return err
		}
		if len(d.Metadata) != 0 {
			return fmt.Errorf("metadata: want none, got %v", d.Metadata)
		}
		return nil
	})
	sc.Step(`^the resolved metadata should contain$`, func(table *godog.Table) error {
		d, err := s.result()
		if err != nil {
			return err
		}
		return metadataContains(d.Metadata, table)
	})
}

func (s *scenario) context() map[string]any {
	if s.ctx == nil {
		s.ctx = map[string]any{}
	}
	return s.ctx
}

// evaluate resolves the flag as an OpenFeature client does: the resolved value on
// success, the caller's default on an error and when the resolution carries no
// variant (DISABLED, or no defaultVariant).
func (s *scenario) evaluate() error {
	if s.resolve == nil {
		return errors.New("no evaluator or provider was set up")
	}
	typ, ok := flagType(s.flagType)
	if !ok {
		return fmt.Errorf("no flag type set (got %q)", s.flagType)
	}
	ctx := make(map[string]any, len(s.ctx)+1)
	for k, v := range s.ctx {
		ctx[k] = v
	}
	if s.targetingKey != nil {
		ctx["targetingKey"] = *s.targetingKey
	}
	res, err := s.resolve(s.key, typ, ctx)
	if err != nil {
		return err
	}
	d := &details{
		Value:     res.Value,
		Variant:   res.Variant,
		Reason:    string(res.Reason),
		ErrorCode: string(res.ErrorCode),
		Metadata:  res.Metadata,
	}
	if res.Failed() || res.Variant == "" {
		d.Value = s.fallback
	}
	s.details = d
	return nil
}

func (s *scenario) result() (*details, error) {
	if s.details == nil {
		return nil, errors.New("the flag was not evaluated")
	}
	return s.details, nil
}

func diff(what string, want, got any) error {
	if d := cmp.Diff(want, got); d != "" {
		return fmt.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
	return nil
}

// parseTyped converts a gherkin cell to a value of a gherkin type. Object cells are
// JSON, with the \" escapes the feature files use inside tables.
func parseTyped(typ, raw string, numbers numberMode) (any, error) {
	switch typ {
	case "String":
		return raw, nil
	case "Boolean":
		return strconv.ParseBool(raw)
	case "Integer":
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, err
		}
		if numbers == float64ContextNumbers {
			return float64(n), nil
		}
		return n, nil
	case "Float":
		return strconv.ParseFloat(raw, 64)
	case "Object":
		var m map[string]any
		if err := json.Unmarshal([]byte(strings.ReplaceAll(raw, `\"`, `"`)), &m); err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}

// metadataContains checks a | key | metadata_type | value | table against metadata.
// Metadata numbers are JSON numbers (float64); an Integer must be integral.
func metadataContains(meta map[string]any, table *godog.Table) error {
	if len(table.Rows) < 2 {
		return errors.New("the metadata table has no rows")
	}
	col := map[string]int{}
	for i, c := range table.Rows[0].Cells {
		col[c.Value] = i
	}
	for _, name := range []string{"key", "metadata_type", "value"} {
		if _, ok := col[name]; !ok {
			return fmt.Errorf("the metadata table has no %q column", name)
		}
	}
	var problems []string
	for _, row := range table.Rows[1:] {
		key, typ, raw := row.Cells[col["key"]].Value, row.Cells[col["metadata_type"]].Value, row.Cells[col["value"]].Value
		want, err := parseTyped(typ, raw, float64ContextNumbers)
		if err != nil {
			return fmt.Errorf("metadata %q: %w", key, err)
		}
		got, ok := meta[key]
		if !ok {
			problems = append(problems, fmt.Sprintf("%q is missing", key))
			continue
		}
		if d := cmp.Diff(want, got); d != "" {
			problems = append(problems, fmt.Sprintf("%q (-want +got):\n%s", key, d))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("metadata %v: %s", meta, strings.Join(problems, "; "))
	}
	return nil
}

// gherkinSuite is one godog run.
type gherkinSuite struct {
	name       string
	paths      []string
	tags       string
	initialize func(sc *godog.ScenarioContext, s *scenario)
}

// tally counts scenario and step outcomes, per feature file.
type tally struct {
	mu        sync.Mutex
	scenarios map[string][2]int // feature file -> {passed, total}
	steps     map[godog.StepResultStatus]int
}

// runGherkin runs a suite strictly (undefined and pending steps fail), logs the
// counts, and fails the test unless every selected scenario and step passed.
func runGherkin(t *testing.T, gs gherkinSuite) {
	t.Helper()
	counts := &tally{scenarios: map[string][2]int{}, steps: map[godog.StepResultStatus]int{}}
	suite := godog.TestSuite{
		Name: gs.name,
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			s := &scenario{}
			gs.initialize(sc, s)
			sc.StepContext().After(func(ctx context.Context, _ *godog.Step, status godog.StepResultStatus, err error) (context.Context, error) {
				counts.mu.Lock()
				counts.steps[status]++
				counts.mu.Unlock()
				return ctx, err
			})
			sc.After(func(ctx context.Context, p *godog.Scenario, err error) (context.Context, error) {
				counts.mu.Lock()
				c := counts.scenarios[filepath.Base(p.Uri)]
				c[1]++
				if err == nil {
					c[0]++
				}
				counts.scenarios[filepath.Base(p.Uri)] = c
				counts.mu.Unlock()
				return ctx, err
			})
		},
		Options: &godog.Options{
			Format:   "progress",
			Paths:    gs.paths,
			Tags:     gs.tags,
			Strict:   true,
			TestingT: t,
		},
	}
	status := suite.Run()

	counts.mu.Lock()
	defer counts.mu.Unlock()
	files := make([]string, 0, len(counts.scenarios))
	passed, total := 0, 0
	for f, c := range counts.scenarios {
		files = append(files, f)
		passed += c[0]
		total += c[1]
	}
	sort.Strings(files)
	for _, f := range files {
		t.Logf("%s: %s: %d/%d scenarios passed", gs.name, f, counts.scenarios[f][0], counts.scenarios[f][1])
	}
	stepTotal := 0
	for _, n := range counts.steps {
		stepTotal += n
	}
	t.Logf("%s (tags %q): %d/%d scenarios passed, %d/%d steps passed", gs.name, gs.tags, passed, total, counts.steps[godog.StepPassed], stepTotal)

	if status != 0 {
		t.Fatalf("godog suite %s failed (status %d)", gs.name, status)
	}
	if total == 0 {
		t.Fatalf("godog suite %s selected no scenario", gs.name)
	}
	if passed != total || counts.steps[godog.StepPassed] != stepTotal {
		t.Fatalf("godog suite %s: %d/%d scenarios and %d/%d steps passed", gs.name, passed, total, counts.steps[godog.StepPassed], stepTotal)
	}
}

// requireDir fails the test when a shared testbed directory is missing: the suite must
// never pass by silently running nothing.
func requireDir(t *testing.T, dir string) {
	t.Helper()
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		t.Fatalf("flagd-testbed directory %s not found (the repository must be checked out with shared/ beside it): %v", dir, err)
	}
}

func readShared(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading flagd-testbed file (the repository must be checked out with shared/ beside it): %v", err)
	}
	return data
}
