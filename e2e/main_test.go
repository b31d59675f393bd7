// Package e2e tests flagpole against a real kube-apiserver and etcd (see README.md):
// the CRDs, and `flagpole flagd start` following a FeatureFlag.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/flagpole-dev/flagpole/e2e/harness"
)

// suite is the run's shared environment. TestMain sets it once, before any test runs,
// and nothing writes it afterwards.
var suite *harness.Suite

func TestMain(m *testing.M) { os.Exit(run(m)) }

// run sets the suite up, runs the tests and tears everything down, also when setup
// fails or the run is interrupted.
func run(m *testing.M) int {
	janitor, err := harness.NewJanitor()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer janitor.Cleanup()
	defer janitor.CleanupOnSignal()()
	s, err := harness.Setup(context.Background(), janitor, harness.Options{RepoRoot: "..", ToolsDir: "tools", Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: setup:", err)
		return 1
	}
	suite = s
	code := m.Run()
	if scan := scanLogsForMarkers(os.Stderr); code == 0 {
		code = scan // attack_pii_test.go: no personal data or secret in any process log
	}
	return code
}
