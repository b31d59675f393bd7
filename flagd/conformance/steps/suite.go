package steps

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cucumber/godog"
)

// Suite is one godog run of a conformance suite.
type Suite struct {
	// Name names the run in godog's output and in the logged counts.
	Name string
	// Paths are feature files or directories; Features are feature contents, for
	// features edited in memory. A suite sets one of them.
	Paths    []string
	Features []godog.Feature
	// Tags is the godog tag filter (see TagFilter).
	Tags string
	// Initialize binds the steps of one scenario, with its own state.
	Initialize func(sc *godog.ScenarioContext)
}

// counts are a suite's passed and total scenarios and steps per feature file.
type counts struct {
	mu        sync.Mutex
	scenarios map[string][2]int // feature file → {passed, total}
	steps     map[string][2]int // feature file → {passed, total}
}

func (c *counts) add(m map[string][2]int, file string, passed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := m[file]
	n[1]++
	if passed {
		n[0]++
	}
	m[file] = n
}

// Run runs the suite strictly (undefined and pending steps fail), logs the scenario and
// step counts per feature file and in total, and fails the test unless the filter
// selected a scenario and every selected scenario and step passed. It returns the
// number of scenarios per feature file.
func (st Suite) Run(t *testing.T) map[string]int {
	t.Helper()
	c := &counts{scenarios: map[string][2]int{}, steps: map[string][2]int{}}
	suite := godog.TestSuite{
		Name: st.Name,
		ScenarioInitializer: func(sc *godog.ScenarioContext) {
			st.Initialize(sc)
			var file string
			sc.Before(func(ctx context.Context, p *godog.Scenario) (context.Context, error) {
				file = filepath.Base(p.Uri)
				return ctx, nil
			})
			sc.StepContext().After(func(ctx context.Context, _ *godog.Step, status godog.StepResultStatus, _ error) (context.Context, error) {
				c.add(c.steps, file, status == godog.StepPassed)
				return ctx, nil // the step's own error stands
			})
			sc.After(func(ctx context.Context, _ *godog.Scenario, err error) (context.Context, error) {
				c.add(c.scenarios, file, err == nil)
				return ctx, nil // the scenario's own error stands
			})
		},
		Options: &godog.Options{
			Format:          "progress",
			Paths:           st.Paths,
			FeatureContents: st.Features,
			Tags:            st.Tags,
			Strict:          true,
			TestingT:        t,
		},
	}
	status := suite.Run()

	c.mu.Lock()
	defer c.mu.Unlock()
	files := make([]string, 0, len(c.scenarios))
	perFile := make(map[string]int, len(c.scenarios))
	var passed, total, stepsPassed, stepsTotal int
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
		t.Logf("%s: %s: %d/%d scenarios passed, %d/%d steps passed", st.Name, f, c.scenarios[f][0], c.scenarios[f][1], c.steps[f][0], c.steps[f][1])
	}
	t.Logf("%s (tags %q): %d/%d scenarios passed, %d/%d steps passed", st.Name, st.Tags, passed, total, stepsPassed, stepsTotal)

	if status != 0 {
		t.Errorf("godog suite %s failed (status %d)", st.Name, status)
	}
	if total == 0 {
		t.Errorf("godog suite %s selected no scenario", st.Name)
	}
	if passed != total || stepsPassed != stepsTotal {
		t.Errorf("godog suite %s: %d/%d scenarios and %d/%d steps passed", st.Name, passed, total, stepsPassed, stepsTotal)
	}
	return perFile
}

// TagFilter is the godog tag filter selecting the scenarios tagged with any of include
// (every scenario when include is empty) and with none of exclude. godog's filter has no
// parentheses: "," is OR between &&-groups, so every group repeats the exclusions.
func TagFilter(include, exclude []string) string {
	not := make([]string, len(exclude))
	for i, tag := range exclude {
		not[i] = "~" + tag
	}
	if len(include) == 0 {
		return strings.Join(not, " && ")
	}
	groups := make([]string, len(include))
	for i, tag := range include {
		groups[i] = strings.Join(append([]string{tag}, not...), " && ")
	}
	return strings.Join(groups, ", ")
}
