package conformance

import (
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cucumber/godog"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
)

// features are the testbed's daemon feature files each mode runs.
//
// Not run in either mode: config.feature (provider option defaults and FLAGD_*
// variables of the SDK provider; no server involved) and rpc-caching.feature (the
// rpc provider's cache). In rpc mode, sync-payload.feature is not run either: it is
// about the sync API (GetMetadata disabled, context from sync_context).
//
// rpc mode also runs metadata.feature and selector.feature, which the testbed tags
// @in-process only: they check what the server returns to any provider (flag and
// flag-set metadata merged into the v2 response metadata; Flagd-Selector filtering),
// so a server must pass them over rpc too.
func features(m mode) []string {
	common := append(steps.EvaluationFeatures(), "events.feature", "connection.feature")
	if m == modeInProcess {
		return append(common, "sync-payload.feature")
	}
	return common
}

// excludedTags are the scenario tags neither mode runs, with the reason:
//   - @fractional-v1: pre-0.15 bucketing, replaced by v2 in flagd 0.15;
//   - @fractional-v3: CBOR hashing, in no released flagd (0.16.x hashes with v2);
//   - @deprecated (with @no-default): the FLAG_NOT_FOUND-for-code-default era,
//     replaced by @no-default-variant (DEFAULT with the code default);
//   - @grace: the provider's stale state and grace period during a connection loss;
//   - @reconnect and @connection-loss (added in memory to every scenario with a
//     "the connection is lost" step, see tagConnectionLoss): the provider's
//     reconnection after the launchpad restarts flagd;
//   - @caching: the rpc provider's cache;
//   - @targetURI: routing by authority through the testbed's envoy proxy;
//   - @unavailable: no server listening at all (provider error handling);
//   - @forbidden: the testbed's envoy answering PERMISSION_DENIED, not flagd;
//   - @os.linux, except on Linux: the testbed runs its unix socket scenarios there only.
//
// @customCert (the ssl configuration, with a server certificate issued by the
// testbed CA) and @unixsocket (--socket-path / --sync-socket-path) do run.
func excludedTags() []string {
	tags := []string{
		"@fractional-v1", "@fractional-v3", "@deprecated",
		"@grace", "@reconnect", connectionLossTag, "@caching",
		"@targetURI", "@unavailable", "@forbidden",
	}
	if runtime.GOOS != "linux" {
		tags = append(tags, "@os.linux")
	}
	return tags
}

// tagFilter selects the mode's scenarios (@rpc or @in-process; rpc mode also takes the
// @in-process scenarios of its feature files, see features) minus excludedTags.
func tagFilter(m mode) string {
	if m == modeInProcess {
		return steps.TagFilter([]string{"@in-process"}, excludedTags())
	}
	return steps.TagFilter([]string{"@rpc", "@in-process"}, excludedTags())
}

// wantScenarios are the scenario counts per mode and feature file the filters select
// from flagd-testbed 3.9.0: a change in the testbed or in the filters must be a
// deliberate update of this table, never a silent drop.
func wantScenarios(m mode) map[string]int {
	want := map[string]int{
		"connection.feature":        3, // stable, ssl (@customCert), socket (@unixsocket)
		"contextEnrichment.feature": 1,
		"disabled.feature":          7,
		"evaluation.feature":        23,
		"events.feature":            1, // the flag change event
		"metadata.feature":          4,
		"selector.feature":          5,
		"targeting.feature":         98,
	}
	if m == modeInProcess {
		want["sync-payload.feature"] = 2
	}
	return want
}

// TestTestbedLive runs the testbed's daemon scenarios against live `flagpole start`
// subprocesses, started from the launchpad configurations, in rpc mode and in
// in-process mode (each mode with its own daemons, as "the flag was modified" changes
// a daemon's flags).
func TestTestbedLive(t *testing.T) {
	testbed := steps.Testbed(t)
	gherkinDir := steps.Testbed(t, "gherkin")
	bin := buildFlagpole(t)

	for _, m := range []mode{modeRPC, modeInProcess} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			feats, err := loadFeatures(gherkinDir, features(m))
			if err != nil {
				t.Fatal(err)
			}
			daemons := startDaemons(t, bin, testbed)
			got := steps.Suite{
				Name:     "flagd-testbed-live-" + string(m),
				Features: feats,
				Tags:     tagFilter(m),
				Initialize: func(sc *godog.ScenarioContext) {
					s := &scenario{mode: m, daemons: daemons, handlers: map[string]int{}}
					s.register(sc)
				},
			}.Run(t)
			if d := cmp.Diff(wantScenarios(m), got); d != "" {
				t.Errorf("%s: scenarios per feature file (-want +got):\n%s", m, d)
			}
		})
	}
}

// startDaemons starts one daemon per launchpad configuration, concurrently.
func startDaemons(t *testing.T, bin, testbed string) map[daemonConfig]*daemon {
	t.Helper()
	configs := allConfigs()
	started := make([]*daemon, len(configs))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i, c := range configs {
		wg.Go(func() {
			d, err := startDaemon(t, bin, testbed, c)
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return
			}
			started[i] = d
		})
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("starting daemons:\n%s", strings.Join(failures, "\n"))
	}
	out := make(map[daemonConfig]*daemon, len(configs))
	for i, c := range configs {
		out[c] = started[i]
	}
	return out
}
