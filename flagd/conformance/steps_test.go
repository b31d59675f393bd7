package conformance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// The step vocabulary is the one flagd/flags/testbed_test.go binds to the engine
// directly (flag, context and assertion steps), plus the provider steps a live server
// needs: providers per launchpad configuration, provider events and flag changes.

// details is what an OpenFeature client returns for an evaluation with details.
type details struct {
	Value     any
	Variant   string
	Reason    string
	ErrorCode string
	Metadata  map[string]any
}

// scenario is the state of one gherkin scenario in one mode.
type scenario struct {
	mode    mode
	daemons map[daemonConfig]*daemon

	selector string
	daemon   *daemon
	provider provider

	flagType     string
	key          string
	fallback     any
	ctx          map[string]any
	targetingKey *string
	details      *details

	handlers   map[string]int // event type → log position the handler was added at
	lastChange *event
}

// register binds every step of the daemon scenarios.
func (s *scenario) register(sc *godog.ScenarioContext) {
	sc.Step(`^an option "([^"]*)" of type "([^"]*)" with value "([^"]*)"$`, s.option)
	sc.Step(`^a (\w+) flagd provider$`, s.startProvider)
	sc.Step(`^a (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a default value "(.*)"$`, s.flag)
	sc.Step(`^a context containing a key "([^"]*)", with type "([^"]*)" and with value "(.*)"$`, s.contextValue)
	sc.Step(`^a context containing a nested property with outer key "([^"]*)" and inner key "([^"]*)", with value "(.*)"$`, s.nestedContextValue)
	sc.Step(`^a context containing a targeting key with value "(.*)"$`, func(v string) error {
		s.targetingKey = &v
		return nil
	})
	sc.Step(`^the flag was evaluated with details$`, s.evaluate)
	sc.Step(`^the resolved details value should be "(.*)"$`, s.valueShouldBe)
	sc.Step(`^the variant should be "([^"]*)"$`, func(want string) error {
		return s.check("variant", want, func(d *details) any { return d.Variant })
	})
	sc.Step(`^the reason should be "([^"]*)"$`, func(want string) error {
		return s.check("reason", want, func(d *details) any { return d.Reason })
	})
	sc.Step(`^the error-code should be "([^"]*)"$`, func(want string) error {
		return s.check("error code", want, func(d *details) any { return d.ErrorCode })
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

	sc.Step(`^a (\w+) event handler$`, s.addHandler)
	sc.Step(`^a (\w+) event was fired$`, s.eventFired)
	sc.Step(`^the (\w+) event handler should have been executed$`, s.eventFired)
	sc.Step(`^the flag was modified$`, func() error {
		if s.daemon == nil {
			return errors.New("no flagd provider was set up")
		}
		return s.daemon.changeFlag()
	})
	sc.Step(`^the flag should be part of the event payload$`, func() error {
		if s.lastChange == nil {
			return errors.New("no change event was fired")
		}
		if !slices.Contains(s.lastChange.Flags, s.key) {
			return fmt.Errorf("change event flags %v do not include %q", s.lastChange.Flags, s.key)
		}
		return nil
	})

	sc.After(func(ctx context.Context, _ *godog.Scenario, err error) (context.Context, error) {
		if s.provider != nil {
			s.provider.close()
		}
		return ctx, nil // the scenario's error is already reported
	})
}

// option sets a provider option. Only the options of the selected scenarios are
// known: the selector, and disabling the cache (providers here never cache).
func (s *scenario) option(name, typ, value string) error {
	switch {
	case name == "selector" && typ == "String":
		s.selector = value
	case name == "cache" && typ == "CacheType" && value == "disabled":
	default:
		return fmt.Errorf("provider option %s (%s) = %q is not supported", name, typ, value)
	}
	return nil
}

// startProvider connects a provider of the scenario's mode to the daemon started
// with the provider name's launchpad configuration, and waits until it is ready.
func (s *scenario) startProvider(ctx context.Context, name string) error {
	config, ok := providerConfig(name)
	if !ok {
		return fmt.Errorf("no launchpad configuration for a %q flagd provider", name)
	}
	d, ok := s.daemons[config]
	if !ok {
		return fmt.Errorf("no daemon for configuration %s", config)
	}
	if s.provider != nil {
		s.provider.close()
		s.provider = nil
	}
	p, err := newProvider(ctx, s.mode, d, s.selector)
	if err != nil {
		return fmt.Errorf("%s provider for %s: %w", s.mode, config, err)
	}
	s.daemon, s.provider = d, p
	return nil
}

func (s *scenario) flag(typ, key, raw string) error {
	v, err := parseTyped(typ, raw)
	if err != nil {
		return fmt.Errorf("default value: %w", err)
	}
	s.flagType, s.key, s.fallback = typ, key, v
	return nil
}

func (s *scenario) context() map[string]any {
	if s.ctx == nil {
		s.ctx = map[string]any{}
	}
	return s.ctx
}

func (s *scenario) contextValue(key, typ, raw string) error {
	v, err := parseTyped(typ, raw)
	if err != nil {
		return fmt.Errorf("context value %q: %w", key, err)
	}
	s.context()[key] = v
	return nil
}

func (s *scenario) nestedContextValue(outer, inner, v string) error {
	m, ok := s.context()[outer].(map[string]any)
	if !ok {
		m = map[string]any{}
		s.context()[outer] = m
	}
	m[inner] = v
	return nil
}

// flagTypes maps a gherkin flag type to its resolution type.
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

// evaluate resolves the flag through the provider as an OpenFeature client does: the
// resolved value, or the caller's default when the resolution carries none (an
// error, DISABLED, or no default variant).
func (s *scenario) evaluate(ctx context.Context) error {
	if s.provider == nil {
		return errors.New("no flagd provider was set up")
	}
	typ, ok := flagType(s.flagType)
	if !ok {
		return fmt.Errorf("no flag type set (got %q)", s.flagType)
	}
	evalCtx := make(map[string]any, len(s.ctx)+1)
	for k, v := range s.ctx {
		evalCtx[k] = v
	}
	if s.targetingKey != nil {
		evalCtx["targetingKey"] = *s.targetingKey
	}
	out, err := s.provider.resolve(ctx, s.key, typ, evalCtx)
	if err != nil {
		return err
	}
	d := &details{Value: out.Value, Variant: out.Variant, Reason: out.Reason, ErrorCode: out.ErrorCode, Metadata: out.Metadata}
	if !out.HasValue {
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

func (s *scenario) valueShouldBe(raw string) error {
	want, err := parseTyped(s.flagType, raw)
	if err != nil {
		return fmt.Errorf("expected value: %w", err)
	}
	return s.check("value", want, func(d *details) any { return d.Value })
}

func (s *scenario) check(what string, want any, field func(*details) any) error {
	d, err := s.result()
	if err != nil {
		return err
	}
	return diff(what, want, field(d))
}

// addHandler adds an event handler. As in OpenFeature, a ready handler added to a
// ready provider runs at once (so it counts the ready event already logged); other
// handlers see only later events.
func (s *scenario) addHandler(typ string) error {
	if s.provider == nil {
		return errors.New("no flagd provider was set up")
	}
	switch typ {
	case eventReady:
		s.handlers[typ] = 0
	case eventChange, eventError, eventStale:
		s.handlers[typ] = s.provider.events().len()
	default:
		return fmt.Errorf("unknown provider event %q", typ)
	}
	return nil
}

// eventFired waits for an event of the handler's type after the handler was added,
// and moves the handler past it (so a second wait needs a second event).
func (s *scenario) eventFired(ctx context.Context, typ string) error {
	from, ok := s.handlers[typ]
	if !ok {
		return fmt.Errorf("no %s event handler was added", typ)
	}
	e, at, err := s.provider.events().wait(ctx, typ, from)
	if err != nil {
		return err
	}
	s.handlers[typ] = at + 1
	if typ == eventChange {
		s.lastChange = &e
	}
	return nil
}

func diff(what string, want, got any) error {
	if d := cmp.Diff(want, got); d != "" {
		return fmt.Errorf("%s mismatch (-want +got):\n%s", what, d)
	}
	return nil
}

// parseTyped converts a gherkin cell to a value of a gherkin type: Integer as int64
// (what an OpenFeature caller passes; on the wire it becomes a JSON number), Object
// as JSON with the \" escapes the feature files use inside tables.
func parseTyped(typ, raw string) (any, error) {
	switch typ {
	case "String":
		return raw, nil
	case "Boolean":
		return strconv.ParseBool(raw)
	case "Integer":
		return strconv.ParseInt(raw, 10, 64)
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
// Metadata numbers are JSON numbers (float64), Integer ones included.
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
		want, err := parseTyped(typ, raw)
		if err != nil {
			return fmt.Errorf("metadata %q: %w", key, err)
		}
		if n, ok := want.(int64); ok {
			want = float64(n)
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

// connectionLossTag marks, in memory, the scenarios that take the server away ("the
// connection is lost for Ns"): they test a provider's reconnection, and not all of
// them carry @reconnect or @grace (events.feature's ready -> error -> ready chain).
const connectionLossTag = "@connection-loss"

// loadFeatures reads feature files from dir and tags the scenarios with a
// "the connection is lost" step with connectionLossTag, so that a tag filter can
// exclude them. Tags are added on a line of their own above the scenario.
func loadFeatures(dir string, names []string) ([]godog.Feature, error) {
	out := make([]godog.Feature, 0, len(names))
	for _, name := range names {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("flagd-testbed feature (the repository must be checked out with shared/ beside it): %w", err)
		}
		out = append(out, godog.Feature{Name: name, Contents: []byte(tagConnectionLoss(string(raw)))})
	}
	return out, nil
}

// tagConnectionLoss adds connectionLossTag above each scenario (or outline) whose
// steps contain "the connection is lost". Comment lines do not count.
func tagConnectionLoss(src string) string {
	keyword := func(l string, kws ...string) bool {
		t := strings.TrimSpace(l)
		for _, kw := range kws {
			if strings.HasPrefix(t, kw) {
				return true
			}
		}
		return false
	}
	scenarioKWs := []string{"Scenario:", "Scenario Outline:", "Scenario Template:", "Example:"}
	blockKWs := append([]string{"Background:", "Rule:"}, scenarioKWs...)
	lines := strings.Split(src, "\n")
	out := make([]string, 0, len(lines)+4)
	for i, l := range lines {
		if keyword(l, scenarioKWs...) {
			for _, next := range lines[i+1:] {
				if keyword(next, blockKWs...) {
					break
				}
				if !keyword(next, "#") && strings.Contains(next, "the connection is lost") {
					indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
					out = append(out, indent+connectionLossTag)
					break
				}
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// suite is one godog run: the features of one mode, against that mode's daemons.
type suite struct {
	name     string
	features []godog.Feature
	tags     string
	mode     mode
	daemons  map[daemonConfig]*daemon
}

// counts are the scenario and step outcomes of a suite, per feature file.
type counts struct {
	mu        sync.Mutex
	scenarios map[string][2]int // feature file → {passed, total}
	steps     map[string][2]int // feature file → {passed, total}
}

// run runs the suite strictly (undefined and pending steps fail), logs the counts, and
// fails the test unless every selected scenario and step passed. It returns the
// number of scenarios per feature file.
func (st suite) run(t *testing.T) map[string]int {
	t.Helper()
	c := &counts{scenarios: map[string][2]int{}, steps: map[string][2]int{}}
	godogSuite := godog.TestSuite{
		Name: st.name,
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			s := &scenario{mode: st.mode, daemons: st.daemons, handlers: map[string]int{}}
			s.register(sc)
			var uri string
			sc.Before(func(ctx context.Context, p *godog.Scenario) (context.Context, error) {
				uri = filepath.Base(p.Uri)
				return ctx, nil
			})
			sc.StepContext().After(func(ctx context.Context, _ *godog.Step, status godog.StepResultStatus, err error) (context.Context, error) {
				c.mu.Lock()
				n := c.steps[uri]
				n[1]++
				if status == godog.StepPassed {
					n[0]++
				}
				c.steps[uri] = n
				c.mu.Unlock()
				return ctx, nil
			})
			sc.After(func(ctx context.Context, p *godog.Scenario, err error) (context.Context, error) {
				c.mu.Lock()
				n := c.scenarios[filepath.Base(p.Uri)]
				n[1]++
				if err == nil {
					n[0]++
				}
				c.scenarios[filepath.Base(p.Uri)] = n
				c.mu.Unlock()
				return ctx, nil
			})
		},
		Options: &godog.Options{
			Format:          "progress",
			FeatureContents: st.features,
			Tags:            st.tags,
			Strict:          true,
			TestingT:        t,
		},
	}
	status := godogSuite.Run()

	c.mu.Lock()
	defer c.mu.Unlock()
	files := make([]string, 0, len(c.scenarios))
	var passed, total, stepsPassed, stepsTotal int
	perFile := map[string]int{}
	for f, n := range c.scenarios {
		files = append(files, f)
		passed += n[0]
		total += n[1]
		perFile[f] = n[1]
	}
	sort.Strings(files)
	for _, f := range files {
		stepsPassed += c.steps[f][0]
		stepsTotal += c.steps[f][1]
		t.Logf("%s: %s: %d/%d scenarios, %d/%d steps passed", st.name, f, c.scenarios[f][0], c.scenarios[f][1], c.steps[f][0], c.steps[f][1])
	}
	t.Logf("%s (tags %q): %d/%d scenarios, %d/%d steps passed", st.name, st.tags, passed, total, stepsPassed, stepsTotal)

	if status != 0 {
		t.Errorf("godog suite %s failed (status %d)", st.name, status)
	}
	if total == 0 {
		t.Errorf("godog suite %s selected no scenario", st.name)
	}
	if passed != total || stepsPassed != stepsTotal {
		t.Errorf("godog suite %s: %d/%d scenarios and %d/%d steps passed", st.name, passed, total, stepsPassed, stepsTotal)
	}
	return perFile
}
