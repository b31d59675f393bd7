package steps

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Testbed is the path of elem inside the flagd-testbed checkout: shared/flagd-testbed
// beside the repository (the module root, found from the test's package directory),
// locally and in CI. It fails the test when that path does not exist: a suite must
// never pass by running nothing.
func Testbed(t testing.TB, elem ...string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatalf("locating flagd-testbed: %v", err)
	}
	root := wd
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			t.Fatalf("locating flagd-testbed: no go.mod above %s", wd)
		}
		root = parent
	}
	path := filepath.Join(append([]string{root, "..", "shared", "flagd-testbed"}, elem...)...)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("flagd-testbed: %v (the repository must be checked out with shared/ beside it)", err)
	}
	return path
}

// EvaluationFeatures are the daemon feature files (gherkin/) about flag evaluation,
// which every daemon suite runs: targeting, evaluation, disabled and metadata, plus
// selector (source filtering) and contextEnrichment (the static -X context), which need
// only the same steps and the provider steps.
func EvaluationFeatures() []string {
	return []string{
		"targeting.feature",
		"evaluation.feature",
		"disabled.feature",
		"metadata.feature",
		"selector.feature",
		"contextEnrichment.feature",
	}
}

// FlagFiles lists the *.json files of dir (the testbed's flags/), sorted.
func FlagFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && filepath.Ext(e.Name()) == ".json" {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// MergedFlags is the document the testbed's launchpad writes as flags/allFlags.json:
// the FlagFiles of dir not prefixed "selector-", deep-merged in name order.
func MergedFlags(dir string) (map[string]any, error) {
	names, err := FlagFiles(dir)
	if err != nil {
		return nil, err
	}
	merged := map[string]any{}
	for _, n := range names {
		if strings.HasPrefix(n, "selector-") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		merged = deepMerge(merged, doc)
	}
	return merged, nil
}

// deepMerge merges src into dst: objects merge recursively, anything else replaces.
func deepMerge(dst, src map[string]any) map[string]any {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				dst[k] = deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}
