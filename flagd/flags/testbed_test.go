package flags_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// daemonTags selects the scenarios a flagd daemon serves (@rpc: gRPC evaluation;
// @in-process: the sync payload a provider evaluates) and excludes:
//   - @fractional-v1: pre-0.15 bucketing, replaced by v2 in flagd 0.15;
//   - @fractional-v3: CBOR hashing, not in any released flagd (0.16.x uses v2);
//   - @deprecated (@no-default): the FLAG_NOT_FOUND-for-code-default era, replaced
//     by @no-default-variant (DEFAULT with the code default);
//   - @grace, @reconnect, @events, @caching: connection loss, event streams and the
//     provider cache (in these files: contextEnrichment's two @grace scenarios and
//     its @caching scenario), which need a running server and provider.
func daemonTags() string {
	return steps.TagFilter([]string{"@rpc", "@in-process"}, []string{
		"@fractional-v1", "@fractional-v3", "@deprecated", "@grace", "@reconnect", "@events", "@caching",
	})
}

// TestTestbedDaemon checks the engine directly (no server) against the testbed's
// provider scenarios about evaluation (steps.EvaluationFeatures), with the flag
// sources, priorities, selectors, metadata reflection and static context of a flagd
// started by the testbed's launchpad configurations "default" (stable provider) and
// "metadata" (metadata provider).
//
// Not run, because they test a provider or a connection rather than evaluation:
// config.feature (provider option defaults and env vars), connection.feature
// (TLS, unix sockets, reconnects, envoy), events.feature (event streams),
// rpc-caching.feature (provider-side cache) and sync-payload.feature (GetMetadata
// versus sync_context transport).
func TestTestbedDaemon(t *testing.T) {
	testbed := steps.Testbed(t)
	var paths []string
	for _, f := range steps.EvaluationFeatures() {
		paths = append(paths, steps.Testbed(t, "gherkin", f))
	}
	daemons := map[string]*daemon{}
	for _, config := range []string{"default", "metadata"} {
		d, err := loadDaemon(testbed, config)
		if err != nil {
			t.Fatalf("launchpad config %s: %v", config, err)
		}
		daemons[config] = d
	}
	connect := func(_ context.Context, config, selector string) (steps.Resolver, error) {
		d, ok := daemons[config]
		if !ok {
			return nil, fmt.Errorf("no in-test daemon for launchpad configuration %s", config)
		}
		return steps.ResolverFunc(func(_ context.Context, key string, typ eval.Type, ctx map[string]any) (steps.Outcome, error) {
			res, err := d.resolve(selector, key, typ, ctx)
			return steps.FromResolution(res), err
		}), nil
	}

	steps.Suite{
		Name:  "flagd-daemon",
		Paths: paths,
		Tags:  daemonTags(),
		Initialize: func(sc *godog.ScenarioContext) {
			s := &steps.Scenario{}
			s.RegisterProvider(sc, connect)
			s.Register(sc, "default", steps.Float64Numbers)
		},
	}.Run(t)
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
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("parseSelector(%q) (-want +got):\n%s", tt.in, d)
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

// loadDaemon builds the store a flagd started with launchpad/configs/<name>.json of the
// testbed holds.
func loadDaemon(testbed, config string) (*daemon, error) {
	raw, err := os.ReadFile(filepath.Join(testbed, "launchpad", "configs", config+".json"))
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
		data, err := sourceDocument(testbed, src.URI)
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
func sourceDocument(testbed, uri string) ([]byte, error) {
	if uri == "flags/allFlags.json" {
		merged, err := steps.MergedFlags(filepath.Join(testbed, "flags"))
		if err != nil {
			return nil, err
		}
		return json.Marshal(merged)
	}
	if name, ok := strings.CutPrefix(uri, "rawflags/"); ok {
		return os.ReadFile(filepath.Join(testbed, "flags", name))
	}
	return nil, fmt.Errorf("unknown source location")
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
	maps.Copy(ctx, reqCtx)
	maps.Copy(ctx, d.static)
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
