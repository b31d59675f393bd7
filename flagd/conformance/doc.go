// Package conformance runs the flagd-testbed's daemon scenarios
// (../shared/flagd-testbed/gherkin) against a live `flagpole flagd start` subprocess,
// started from the testbed's launchpad configurations, in both OpenFeature flagd
// provider modes: rpc (flagd.evaluation.v2 over gRPC, with EventStream) and
// in-process (flagd.sync.v1 SyncFlags, with flagpole's evaluator evaluating the
// synced payload, as an in-process provider does). The package has no non-test
// code; see live_test.go. The step definitions it shares with the engine suites of
// flagd/flags are in the steps subpackage.
package conformance
