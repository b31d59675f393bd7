// Package kindtest runs flagpole where users run it: on a kind cluster whose node
// runs the image `make image` builds, with the operator installed from deploy/default,
// and with unmodified OpenFeature SDK apps (e2e/apps) reading their flags from the
// sidecar the webhook injects. `make kind-e2e` (e2e/kind/run.sh) creates the cluster
// and runs these tests; without it (FLAGPOLE_E2E_KIND unset) every test is skipped,
// so `go test ./...` and `make e2e` run as before. See e2e/README.md.
package kindtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flagpole-dev/flagpole/e2e/harness"
)

// KindEnv, set to "true" by e2e/kind/run.sh, enables the tests of this package.
const KindEnv = "FLAGPOLE_E2E_KIND"

// env is what e2e/kind/run.sh tells the tests about the cluster it made.
type env struct {
	// Cluster holds admin clients for the kind cluster (KUBECONFIG).
	Cluster *harness.Cluster
	// Image is the flagpole image under test, as loaded into the node.
	Image string
	// AppsImage is the image of the SDK test apps (e2e/apps).
	AppsImage string
	// Kubectl is the kubectl built from e2e/tools, used to apply kustomizations.
	Kubectl string
	// Kubeconfig is the path of the cluster's admin kubeconfig.
	Kubeconfig string
	// Node is the docker container of the kind node (for `ctr`, the kubelet's runtime).
	Node string
	// Install is the directory of e2e/kind/install.sh, which installs the operator.
	Install string
	// Operator is where the operator runs: its namespace and Deployment.
	OperatorNamespace, OperatorDeployment string
}

// suite is set by TestMain when the run targets a kind cluster, nil otherwise.
var suite *env

func TestMain(m *testing.M) {
	if os.Getenv(KindEnv) != "true" {
		fmt.Fprintf(os.Stderr, "kindtest: %s is not true: skipping (make kind-e2e runs these tests)\n", KindEnv)
		os.Exit(m.Run())
	}
	s, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kindtest: setup:", err)
		os.Exit(1)
	}
	suite = s
	os.Exit(m.Run())
}

func setup() (*env, error) {
	e := &env{
		Image:              os.Getenv("FLAGPOLE_E2E_IMAGE"),
		AppsImage:          os.Getenv("FLAGPOLE_E2E_APPS_IMAGE"),
		Kubectl:            os.Getenv("FLAGPOLE_E2E_KUBECTL"),
		Kubeconfig:         os.Getenv("KUBECONFIG"),
		Node:               os.Getenv("FLAGPOLE_E2E_KIND_NODE"),
		Install:            os.Getenv("FLAGPOLE_E2E_INSTALL"),
		OperatorNamespace:  os.Getenv("FLAGPOLE_E2E_OPERATOR_NAMESPACE"),
		OperatorDeployment: os.Getenv("FLAGPOLE_E2E_OPERATOR_DEPLOYMENT"),
	}
	for name, v := range map[string]string{
		"FLAGPOLE_E2E_IMAGE": e.Image, "FLAGPOLE_E2E_APPS_IMAGE": e.AppsImage, "FLAGPOLE_E2E_KUBECTL": e.Kubectl,
		"KUBECONFIG": e.Kubeconfig, "FLAGPOLE_E2E_KIND_NODE": e.Node, "FLAGPOLE_E2E_INSTALL": e.Install,
		"FLAGPOLE_E2E_OPERATOR_NAMESPACE": e.OperatorNamespace, "FLAGPOLE_E2E_OPERATOR_DEPLOYMENT": e.OperatorDeployment,
	} {
		if v == "" {
			return nil, fmt.Errorf("%s is not set (e2e/kind/run.sh sets it)", name)
		}
	}
	cfg, err := harness.LoadKubeconfig(e.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("KUBECONFIG %s: %w", e.Kubeconfig, err)
	}
	if e.Cluster, err = harness.NewCluster(cfg, nil); err != nil {
		return nil, err
	}
	return e, nil
}

// kind skips the test unless the run targets a kind cluster, and returns the suite.
func kind(t testing.TB) *env {
	t.Helper()
	if suite == nil {
		t.Skipf("needs a kind cluster (%s=true: make kind-e2e)", KindEnv)
	}
	return suite
}

// run runs a command of the test's (kubectl, docker) with a deadline and returns its
// combined output; a failure names the command and shows the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// nodeExec runs a command in the kind node's container (docker exec).
func (e *env) nodeExec(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", e.Node}, args...)...)
}
