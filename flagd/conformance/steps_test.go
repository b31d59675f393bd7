package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cucumber/godog"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
)

// scenario is the state of one daemon scenario in one mode: the flag, context and
// assertion steps shared with the engine suites (steps.Scenario), plus a provider of
// the mode connected to a live daemon, and its events.
type scenario struct {
	steps.Scenario
	mode    mode
	daemons map[daemonConfig]*daemon

	daemon   *daemon
	provider provider

	handlers   map[string]int // event type → log position the handler was added at
	lastChange *event
}

// register binds every step of the daemon scenarios.
func (s *scenario) register(sc *godog.ScenarioContext) {
	s.RegisterProvider(sc, s.connect)
	s.Register(sc, "default", steps.Int64Numbers)

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
		if !slices.Contains(s.lastChange.Flags, s.Key()) {
			return fmt.Errorf("change event flags %v do not include %q", s.lastChange.Flags, s.Key())
		}
		return nil
	})

	sc.After(func(ctx context.Context, _ *godog.Scenario, _ error) (context.Context, error) {
		if s.provider != nil {
			s.provider.close()
		}
		return ctx, nil // the scenario's error is already reported
	})
}

// connect connects a provider of the scenario's mode, with the selector option, to the
// daemon started with the launchpad configuration, replacing the scenario's previous
// provider, and waits until it is ready.
func (s *scenario) connect(ctx context.Context, config, selector string) (steps.Resolver, error) {
	d, ok := s.daemons[daemonConfig(config)]
	if !ok {
		return nil, fmt.Errorf("no daemon for configuration %s", config)
	}
	if s.provider != nil {
		s.provider.close()
		s.provider = nil
	}
	p, err := newProvider(ctx, s.mode, d, selector)
	if err != nil {
		return nil, fmt.Errorf("%s provider for %s: %w", s.mode, config, err)
	}
	s.daemon, s.provider = d, p
	return p, nil
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
