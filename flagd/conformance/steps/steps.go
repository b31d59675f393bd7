// Package steps holds the step definitions shared by the conformance suites: the godog
// suites that run flagd-testbed gherkin against the engine (flagd/flags) and against a
// live flagpole subprocess (flagd/conformance). It is test support, a normal package
// only so that test packages in different directories can import it; no production
// code uses it.
//
// Each step is defined once here. What differs between the suites is how a flag is
// resolved — the engine, an in-test flag store, an rpc client, an in-process sync
// client — and that is the [Resolver] a suite's setup step installs in the [Scenario].
package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strconv"
	"strings"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// Outcome is a resolution as an OpenFeature provider reports it. HasValue is false when
// it carries no value (an error, DISABLED, or a flag without default variant): the
// OpenFeature client then returns the caller's default.
type Outcome struct {
	Value     any
	HasValue  bool
	Variant   string
	Reason    string
	ErrorCode string
	Metadata  map[string]any
}

// FromResolution is the outcome of an engine resolution: it has a value unless the
// resolution failed or carries no variant.
func FromResolution(res eval.Resolution) Outcome {
	return Outcome{
		Value:     res.Value,
		HasValue:  !res.Failed() && res.Variant != "",
		Variant:   res.Variant,
		Reason:    string(res.Reason),
		ErrorCode: string(res.ErrorCode),
		Metadata:  res.Metadata,
	}
}

// Resolver resolves a flag key as a type for an evaluation context. An error fails the
// step: it is for failures that are not resolutions (a broken connection), not for
// resolutions with an error code.
type Resolver interface {
	Resolve(ctx context.Context, key string, typ eval.Type, evalCtx map[string]any) (Outcome, error)
}

// ResolverFunc adapts a function to a Resolver.
type ResolverFunc func(ctx context.Context, key string, typ eval.Type, evalCtx map[string]any) (Outcome, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, key string, typ eval.Type, evalCtx map[string]any) (Outcome, error) {
	return f(ctx, key, typ, evalCtx)
}

// Numbers says how the Integer values of context steps enter the evaluation context.
type Numbers int

const (
	// Int64Numbers passes them as int64, as an OpenFeature caller does.
	Int64Numbers Numbers = iota
	// Float64Numbers passes them as float64, as a JSON or protobuf request decodes them.
	Float64Numbers
)

// Scenario is the state of one gherkin scenario. The zero value is ready to register.
type Scenario struct {
	// Resolver resolves "the flag was evaluated with details". A suite's setup step
	// ("an evaluator", or "a <name> flagd provider" through RegisterProvider) sets it.
	Resolver Resolver

	selector     string
	flagType     string
	key          string
	fallback     any
	ctx          map[string]any
	targetingKey *string
	details      *Outcome
}

// Key is the key of the scenario's flag ("" before the flag step).
func (s *Scenario) Key() string { return s.key }

// Register binds the flag, context, evaluation and assertion steps. defaultWord is how
// the feature files word the caller's default: "fallback" (evaluator gherkin) or
// "default" (daemon gherkin). numbers says how Integer context values are passed.
func (s *Scenario) Register(sc *godog.ScenarioContext, defaultWord string, numbers Numbers) {
	sc.Step(`^a (Boolean|String|Integer|Float|Object)-flag with key "([^"]*)" and a `+regexp.QuoteMeta(defaultWord)+` value "(.*)"$`,
		func(typ, key, raw string) error {
			v, err := parseTyped(typ, raw, Int64Numbers)
			if err != nil {
				return fmt.Errorf("%s value: %w", defaultWord, err)
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
		want, err := parseTyped(s.flagType, raw, Int64Numbers)
		if err != nil {
			return fmt.Errorf("expected value: %w", err)
		}
		return s.check("value", want, func(d *Outcome) any { return d.Value })
	})
	sc.Step(`^the variant should be "([^"]*)"$`, func(want string) error {
		return s.check("variant", want, func(d *Outcome) any { return d.Variant })
	})
	sc.Step(`^the reason should be "([^"]*)"$`, func(want string) error {
		return s.check("reason", want, func(d *Outcome) any { return d.Reason })
	})
	sc.Step(`^the error-code should be "([^"]*)"$`, func(want string) error {
		return s.check("error code", want, func(d *Outcome) any { return d.ErrorCode })
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

// Connect returns the resolver of a provider of the flagd the testbed starts with a
// launchpad configuration, with the provider's selector option ("" for none).
type Connect func(ctx context.Context, config, selector string) (Resolver, error)

// RegisterProvider binds the provider steps of the daemon scenarios: provider options
// (the selector, and disabling the cache, which no resolver here has) and "a <name>
// flagd provider", which installs the resolver connect returns for the name's
// launchpad configuration (see LaunchpadConfig).
func (s *Scenario) RegisterProvider(sc *godog.ScenarioContext, connect Connect) {
	sc.Step(`^an option "([^"]*)" of type "([^"]*)" with value "([^"]*)"$`, func(name, typ, value string) error {
		switch {
		case name == "selector" && typ == "String":
			s.selector = value
		case name == "cache" && typ == "CacheType" && value == "disabled":
		default:
			return fmt.Errorf("provider option %s (%s) = %q is not supported", name, typ, value)
		}
		return nil
	})
	sc.Step(`^a (\w+) flagd provider$`, func(ctx context.Context, name string) error {
		config, ok := LaunchpadConfig(name)
		if !ok {
			return fmt.Errorf("no launchpad configuration for a %q flagd provider", name)
		}
		s.Resolver = nil
		r, err := connect(ctx, config, s.selector)
		if err != nil {
			return err
		}
		s.Resolver = r
		return nil
	})
}

// LaunchpadConfig maps the provider names of "Given a <name> flagd provider" to the
// launchpad configuration (launchpad/configs/<name>.json) the testbed starts flagd
// with for them (flagd-compat §8.1). "socket" is not shipped by the testbed: it is
// "default" served on unix sockets.
func LaunchpadConfig(provider string) (string, bool) {
	switch provider {
	case "stable":
		return "default", true
	case "metadata":
		return "metadata", true
	case "syncpayload":
		return "sync-payload", true
	case "ssl":
		return "ssl", true
	case "socket":
		return "socket", true
	}
	return "", false
}

func (s *Scenario) context() map[string]any {
	if s.ctx == nil {
		s.ctx = map[string]any{}
	}
	return s.ctx
}

// evaluate resolves the flag as an OpenFeature client does: the resolved value, or the
// caller's default when the outcome carries none.
func (s *Scenario) evaluate(ctx context.Context) error {
	if s.Resolver == nil {
		return errors.New("no evaluator or provider was set up")
	}
	typ, ok := flagType(s.flagType)
	if !ok {
		return fmt.Errorf("no flag type set (got %q)", s.flagType)
	}
	evalCtx := make(map[string]any, len(s.ctx)+1)
	maps.Copy(evalCtx, s.ctx)
	if s.targetingKey != nil {
		evalCtx["targetingKey"] = *s.targetingKey
	}
	out, err := s.Resolver.Resolve(ctx, s.key, typ, evalCtx)
	if err != nil {
		return err
	}
	if !out.HasValue {
		out.Value = s.fallback
	}
	s.details = &out
	return nil
}

func (s *Scenario) result() (*Outcome, error) {
	if s.details == nil {
		return nil, errors.New("the flag was not evaluated")
	}
	return s.details, nil
}

func (s *Scenario) check(what string, want any, field func(*Outcome) any) error {
	d, err := s.result()
	if err != nil {
		return err
	}
	if diff := cmp.Diff(want, field(d)); diff != "" {
		return fmt.Errorf("%s mismatch (-want +got):\n%s", what, diff)
	}
	return nil
}

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

// parseTyped converts a gherkin cell to a value of a gherkin type: Integer as numbers
// says, Object as JSON with the \" escapes the feature files use inside tables.
func parseTyped(typ, raw string, numbers Numbers) (any, error) {
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
		if numbers == Float64Numbers {
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
		want, err := parseTyped(typ, raw, Float64Numbers)
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
