package flags_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cucumber/godog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// daemonFeatures are the provider/daemon feature files (gherkin/) whose flag
// expectations the engine must meet when it serves the testbed's flags as flagd does.
// targeting, evaluation, disabled and metadata are the core; selector (source
// filtering) and contextEnrichment (the static -X context, flagd-context-aware) only
// need the same steps, so they run too.
//
// Not run, because they test a provider or a connection rather than evaluation:
// config.feature (provider option defaults and env vars), connection.feature
// (TLS, unix sockets, reconnects, envoy), events.feature (event streams),
// rpc-caching.feature (provider-side cache) and sync-payload.feature (GetMetadata
// versus sync_context transport).
func daemonFeatures() []string {
	return []string{
		"targeting.feature",
		"evaluation.feature",
		"disabled.feature",
		"metadata.feature",
		"selector.feature",
		"contextEnrichment.feature",
	}
}

// daemonTags selects the scenarios a flagd daemon serves (@rpc: gRPC evaluation;
// @in-process: the sync payload a provider evaluates) and excludes:
//   - @fractional-v1: pre-0.15 bucketing, replaced by v2 in flagd 0.15;
//   - @fractional-v3: CBOR hashing, not in any released flagd (0.16.x uses v2);
//   - @deprecated (@no-default): the FLAG_NOT_FOUND-for-code-default era, replaced
//     by @no-default-variant (DEFAULT with the code default);
//   - @grace, @reconnect, @events, @caching: connection loss, event streams and the
//     provider cache (in these files: contextEnrichment's two @grace scenarios and
//     its @caching scenario), which need a running server and provider.
//
// godog's tag filter has no parentheses: "," is OR between &&-groups.
func daemonTags() string {
	excluded := " && ~@fractional-v1 && ~@fractional-v3 && ~@deprecated && ~@grace && ~@reconnect && ~@events && ~@caching"
	return "@rpc" + excluded + ", @in-process" + excluded
}

// launchpadConfig maps the provider names of "Given a <name> flagd provider" to the
// launchpad configuration the testbed starts flagd with.
func launchpadConfig(provider string) (string, bool) {
	switch provider {
	case "stable":
		return "default", true
	case "metadata":
		return "metadata", true
	}
	return "", false
}

// TestTestbedDaemon checks the engine directly (no server) against the testbed's
// provider scenarios, with the flag sources, priorities, selectors, metadata
// reflection and static context of a flagd started by the testbed's launchpad.
func TestTestbedDaemon(t *testing.T) {
	gherkinDir := filepath.Join(testbedDir, "gherkin")
	requireDir(t, gherkinDir)
	features := daemonFeatures()
	paths := make([]string, len(features))
	for i, f := range features {
		paths[i] = filepath.Join(gherkinDir, f)
	}
	daemons := map[string]*daemon{}
	for _, provider := range []string{"stable", "metadata"} {
		config, _ := launchpadConfig(provider)
		d, err := loadDaemon(config)
		if err != nil {
			t.Fatalf("launchpad config %s: %v", config, err)
		}
		daemons[provider] = d
	}

	runGherkin(t, gherkinSuite{
		name:  "flagd-daemon",
		paths: paths,
		tags:  daemonTags(),
		initialize: func(sc *godog.ScenarioContext, s *scenario) {
			selector := ""
			sc.Step(`^an option "([^"]*)" of type "([^"]*)" with value "([^"]*)"$`, func(name, typ, value string) error {
				switch {
				case name == "selector" && typ == "String":
					selector = value
				case name == "cache" && typ == "CacheType" && value == "disabled":
					// Resolution here is never cached.
				default:
					return fmt.Errorf("provider option %s (%s) = %q is not supported by the in-test resolver", name, typ, value)
				}
				return nil
			})
			sc.Step(`^a (\w+) flagd provider$`, func(provider string) error {
				d, ok := daemons[provider]
				if !ok {
					return fmt.Errorf("no launchpad configuration for a %q flagd provider", provider)
				}
				s.resolve = func(key string, typ eval.Type, ctx map[string]any) (eval.Resolution, error) {
					return d.resolve(selector, key, typ, ctx)
				}
				return nil
			})
			s.registerFlagSteps(sc, "default", float64ContextNumbers)
		},
	})
}

// TestSelectorParsing covers the selector grammar of flagd-compat §1.6 as the
// in-test resolver implements it.
func TestSelectorParsing(t *testing.T) {
	tests := []struct {
		in      string
		want    flagSelector
		wantErr bool
	}{
		{in: "", want: flagSelector{}},
		{in: "flags/allFlags.json", want: flagSelector{Field: "source", Value: "flags/allFlags.json"}},
		{in: "source=a=b", want: flagSelector{Field: "source", Value: "a=b"}},
		{in: "flagSetId=selector-set", want: flagSelector{Field: "flagSetId", Value: "selector-set"}},
		{in: "flagSetId=", want: flagSelector{Field: "flagSetId", Value: ""}},
		{in: "key=x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parseSelector(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseSelector(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err := diff(fmt.Sprintf("parseSelector(%q)", tt.in), tt.want, got); err != nil {
			t.Error(err)
		}
	}
}

// daemon is a test-only stand-in for flagd's flag store: the flags of each source,
// looked up by key as flagd's store does.
type daemon struct {
	entries []storeEntry   // in source order, then document order
	static  map[string]any // -X context values, merged over the request context
}

// storeEntry is one flag as flagd's store holds it: identity (flagSetId, key), the
// source it came from and that source's priority (its index; later wins).
type storeEntry struct {
	flag     *eval.Flag
	source   string
	priority int
}

// launchpadFile is the part of a launchpad configuration the resolver needs.
type launchpadFile struct {
	Sources []struct {
		URI      string `json:"uri"`
		Provider string `json:"provider"`
	} `json:"sources"`
	ContextValue map[string]string `json:"context-value"`
}

// loadDaemon builds the store a flagd started with launchpad/configs/<name>.json holds.
func loadDaemon(config string) (*daemon, error) {
	raw, err := os.ReadFile(filepath.Join(testbedDir, "launchpad", "configs", config+".json"))
	if err != nil {
		return nil, err
	}
	var cfg launchpadFile
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, err
	}
	d := &daemon{static: map[string]any{}}
	for k, v := range cfg.ContextValue {
		d.static[k] = v
	}
	for priority, src := range cfg.Sources {
		if src.Provider != "file" {
			return nil, fmt.Errorf("source %s: provider %q is not supported", src.URI, src.Provider)
		}
		data, err := sourceDocument(src.URI)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src.URI, err)
		}
		set, err := flags.Parse(data, flags.Lenient)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", src.URI, err)
		}
		for _, f := range set.Flags {
			d.insert(storeEntry{flag: f, source: src.URI, priority: priority})
		}
	}
	return d, nil
}

// insert adds a flag, replacing a copy with the same (flagSetId, key) unless that copy
// comes from a higher-priority source (flagd-compat §1.6).
func (d *daemon) insert(e storeEntry) {
	for i, old := range d.entries {
		if old.flag.FlagSetID == e.flag.FlagSetID && old.flag.Key == e.flag.Key {
			if old.priority <= e.priority {
				d.entries[i] = e
			}
			return
		}
	}
	d.entries = append(d.entries, e)
}

// sourceDocument reads a launchpad source: flags/allFlags.json is the deep merge the
// launchpad writes at start; rawflags/<file> is the testbed's flags/<file>.
func sourceDocument(uri string) ([]byte, error) {
	if uri == "flags/allFlags.json" {
		return mergedFlags(filepath.Join(testbedDir, "flags"))
	}
	if name, ok := strings.CutPrefix(uri, "rawflags/"); ok {
		return os.ReadFile(filepath.Join(testbedDir, "flags", name))
	}
	return nil, fmt.Errorf("unknown source location")
}

// mergedFlags is the launchpad's allFlags.json: every *.json of dir not prefixed
// "selector-", deep-merged in name order.
func mergedFlags(dir string) ([]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && filepath.Ext(n) == ".json" && !strings.HasPrefix(n, "selector-") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	merged := map[string]any{}
	for _, n := range names {
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
	return json.Marshal(merged)
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

// flagSelector is a parsed Flagd-Selector: Field "" selects everything.
type flagSelector struct {
	Field, Value string
}

// parseSelector parses flagd's selector grammar: "", "flagSetId=<id>",
// "source=<uri>", or a bare value meaning source=<value>.
func parseSelector(s string) (flagSelector, error) {
	if s == "" {
		return flagSelector{}, nil
	}
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return flagSelector{Field: "source", Value: s}, nil
	}
	switch k {
	case "flagSetId", "source":
		return flagSelector{Field: k, Value: v}, nil
	}
	return flagSelector{}, fmt.Errorf("invalid selector key %q, valid keys: \"flagSetId\", \"source\"", k)
}

func (sel flagSelector) matches(e storeEntry) bool {
	switch sel.Field {
	case "source":
		return e.source == sel.Value
	case "flagSetId":
		return e.flag.FlagSetID == sel.Value
	}
	return true
}

// resolve evaluates a flag as flagd's evaluation.v2 service does: the highest-priority
// flag with the key among those the selector selects, the static context merged over
// the request context, and the selector reflected in the metadata (flagd-compat §1.4).
func (d *daemon) resolve(selector, key string, typ eval.Type, reqCtx map[string]any) (eval.Resolution, error) {
	sel, err := parseSelector(selector)
	if err != nil {
		return eval.Resolution{}, err
	}
	var found *storeEntry
	for i := range d.entries {
		e := &d.entries[i]
		if e.flag.Key == key && sel.matches(*e) && (found == nil || e.priority > found.priority) {
			found = e
		}
	}
	if found == nil {
		return eval.NotFound(key), nil
	}
	ctx := make(map[string]any, len(reqCtx)+len(d.static))
	for k, v := range reqCtx {
		ctx[k] = v
	}
	for k, v := range d.static {
		ctx[k] = v
	}
	res := found.flag.EvaluateAs(typ, ctx, fixedClock)
	meta := map[string]any{}
	if sel.Field != "" {
		meta[sel.Field] = sel.Value
	}
	for k, v := range res.Metadata {
		if v != nil {
			meta[k] = v
		}
	}
	res.Metadata = meta
	return res, nil
}
