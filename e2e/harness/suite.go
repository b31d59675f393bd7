// Package harness runs the e2e tests' Kubernetes: kube-apiserver and etcd built from
// Go modules (e2e/tools) and cached, started as local processes on loopback ports
// with RBAC and service-account tokens, or an existing cluster named by KUBECONFIG.
// It also runs flagpole itself as a subprocess (Flagd). See e2e/README.md.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExistingClusterEnv names the variable that, set to "true" together with KUBECONFIG,
// runs the suite against the cluster KUBECONFIG names instead of a local control
// plane. KUBECONFIG alone is not enough: it is often set in a developer's shell, and
// the suite installs the core.openfeature.dev CRDs cluster-wide (replacing the
// OpenFeature Operator's).
const ExistingClusterEnv = "FLAGPOLE_E2E_EXISTING_CLUSTER"

// Suite is what the tests of one run share.
type Suite struct {
	// Janitor owns the run's processes and temporary files.
	Janitor *Janitor
	// Cluster is the shared cluster, with the CRDs installed.
	Cluster *Cluster
	// Flagpole is the flagpole binary built from the main module.
	Flagpole string
	// RepoRoot is the main module's directory.
	RepoRoot string
	// Binaries are the control-plane binaries; nil on an existing cluster.
	Binaries *Binaries
	// OperatorKubeconfig, when set, is the kubeconfig StartOperator and the webhook
	// helpers run flagpole with on Cluster instead of the administrator's: a token
	// of the install's ServiceAccount (InstallManifestsEnv; install.go).
	OperatorKubeconfig string
}

// Options configure Setup.
type Options struct {
	// RepoRoot is the main module's directory; ToolsDir the tools module's.
	RepoRoot, ToolsDir string
	// Log receives progress (builds, control-plane start).
	Log io.Writer
}

// Setup builds flagpole, connects to an existing cluster (ExistingClusterEnv) or
// builds (first run only) and starts a local control plane, and installs the CRDs.
func Setup(ctx context.Context, j *Janitor, opts Options) (*Suite, error) {
	repo, err := filepath.Abs(opts.RepoRoot)
	if err != nil {
		return nil, err
	}
	s := &Suite{Janitor: j, RepoRoot: repo}
	start := time.Now()
	if s.Flagpole, err = BuildFlagpole(ctx, repo, j.Root()); err != nil {
		return nil, err
	}
	fmt.Fprintf(opts.Log, "e2e: built flagpole in %s\n", time.Since(start).Round(time.Millisecond))

	if kubeconfig := os.Getenv("KUBECONFIG"); os.Getenv(ExistingClusterEnv) == "true" {
		if kubeconfig == "" {
			return nil, fmt.Errorf("%s=true needs KUBECONFIG", ExistingClusterEnv)
		}
		cfg, err := LoadKubeconfig(kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("KUBECONFIG %s: %w", kubeconfig, err)
		}
		if s.Cluster, err = NewCluster(cfg, nil); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Log, "e2e: using the existing cluster at %s (KUBECONFIG)\n", cfg.Host)
	} else {
		if kubeconfig != "" {
			fmt.Fprintf(opts.Log, "e2e: ignoring KUBECONFIG (set %s=true to use it); starting a local control plane\n", ExistingClusterEnv)
		}
		bins, err := EnsureBinaries(ctx, opts.ToolsDir, opts.Log)
		if err != nil {
			return nil, err
		}
		s.Binaries = &bins
		if s.Cluster, err = s.startClusterWith(ctx, auditOptions()); err != nil {
			return nil, err
		}
		fmt.Fprintf(opts.Log, "e2e: kube-apiserver %s + etcd %s ready at %s in %s (admin kubeconfig %s)\n",
			bins.KubernetesVersion, bins.EtcdVersion, s.Cluster.ControlPlane.URL,
			time.Since(start).Round(time.Millisecond), s.Cluster.ControlPlane.Kubeconfig)
	}
	if _, err := s.Cluster.InstallCRDs(ctx); err != nil {
		return nil, err
	}
	if path := os.Getenv(InstallManifestsEnv); path != "" {
		if err := s.runAsInstall(ctx, path, opts.Log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startCluster starts a local control plane and connects to it.
func (s *Suite) startCluster(ctx context.Context) (*Cluster, error) {
	return s.startClusterWith(ctx, ControlPlaneOptions{})
}

// startClusterWith starts a local control plane with options and connects to it.
func (s *Suite) startClusterWith(ctx context.Context, opts ControlPlaneOptions) (*Cluster, error) {
	cp, err := StartControlPlaneWithOptions(ctx, *s.Binaries, s.Janitor, opts)
	if err != nil {
		return nil, err
	}
	return NewCluster(cp.Config, cp)
}

// PrivateCluster starts a control plane of the test's own, with the CRDs, for tests
// that disrupt it (restarting the API server); it is stopped when the test ends. The
// test is skipped on an existing cluster.
func (s *Suite) PrivateCluster(t testing.TB) *Cluster {
	t.Helper()
	if s.Binaries == nil {
		t.Skip("needs a local control plane (not available with an existing cluster)")
	}
	c, err := s.startCluster(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log (last lines):\n%s", c.ControlPlane.APIServerLogTail(30))
		}
		c.ControlPlane.Stop()
	})
	if _, err := c.InstallCRDs(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c
}

// TempDir is a new directory under the run's root, removed with it.
func (s *Suite) TempDir(t testing.TB) string {
	t.Helper()
	dir, err := s.Janitor.TempDir(strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// Namespace creates a namespace named prefix-<random> in c and deletes it when the
// test ends. (On a local control plane no namespace controller finalizes the
// deletion: it stays Terminating until the control plane goes.)
func Namespace(t testing.TB, c *Cluster, prefix string) string {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := prefix + "-" + hex.EncodeToString(suffix)
	_, err := c.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	recordNamespace(t, name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Kube.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	})
	return name
}

// StartFlagd runs flagpole with args and KUBECONFIG=kubeconfig (if not empty) in dir,
// and stops it when the test ends (logging its last lines if the test failed, and
// failing the test if it does not shut down cleanly).
func (s *Suite) StartFlagd(t testing.TB, dir, kubeconfig string, args ...string) *Flagd {
	t.Helper()
	var env []string
	if kubeconfig != "" {
		env = append(env, "KUBECONFIG="+kubeconfig)
	}
	f, err := StartFlagd(t.Context(), s.Janitor, s.Flagpole, dir, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("flagpole log (last lines):\n%s", f.Proc.Tail(60))
		}
	})
	return f
}
