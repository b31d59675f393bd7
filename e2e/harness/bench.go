package harness

import (
	"context"
	"os"
)

// SetupForBench is Setup for a benchmark command run from the e2e module's
// directory (the make targets cd there), with progress on stderr. done stops
// every process the run started; until it runs, SIGINT and SIGTERM do the same.
func SetupForBench(ctx context.Context) (s *Suite, done func(), err error) {
	j, err := NewJanitor()
	if err != nil {
		return nil, nil, err
	}
	stopSignals := j.CleanupOnSignal()
	done = func() {
		stopSignals()
		j.Cleanup()
	}
	if s, err = Setup(ctx, j, Options{RepoRoot: "..", ToolsDir: "tools", Log: os.Stderr}); err != nil {
		done()
		return nil, nil, err
	}
	return s, done, nil
}
