package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// Binaries are the control-plane executables.
type Binaries struct {
	// KubeAPIServer and Etcd are paths to the executables.
	KubeAPIServer, Etcd string
	// KubernetesVersion and EtcdVersion are the module versions they were built from.
	KubernetesVersion, EtcdVersion string
}

// Module paths of the control-plane binaries, as required in the tools module.
const (
	kubernetesModule = "k8s.io/kubernetes"
	etcdModule       = "go.etcd.io/etcd/server/v3"
)

// CacheDir is where built control-plane binaries are kept:
// $FLAGPOLE_E2E_CACHE, else <user cache dir>/flagpole-e2e.
func CacheDir() (string, error) {
	if d := os.Getenv("FLAGPOLE_E2E_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache directory (set FLAGPOLE_E2E_CACHE): %w", err)
	}
	return filepath.Join(d, "flagpole-e2e"), nil
}

// EnsureBinaries returns kube-apiserver and etcd built from the versions pinned in
// toolsDir/go.mod, building them into the cache on the first use of each version
// (kube-apiserver takes several minutes on two cores; later runs start at once).
// Progress goes to logw.
func EnsureBinaries(ctx context.Context, toolsDir string, logw io.Writer) (Binaries, error) {
	toolsDir, err := filepath.Abs(toolsDir)
	if err != nil {
		return Binaries{}, err
	}
	data, err := os.ReadFile(filepath.Join(toolsDir, "go.mod"))
	if err != nil {
		return Binaries{}, err
	}
	mf, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return Binaries{}, err
	}
	var b Binaries
	for _, r := range mf.Require {
		switch r.Mod.Path {
		case kubernetesModule:
			b.KubernetesVersion = r.Mod.Version
		case etcdModule:
			b.EtcdVersion = r.Mod.Version
		}
	}
	if b.KubernetesVersion == "" || b.EtcdVersion == "" {
		return Binaries{}, fmt.Errorf("%s/go.mod must require %s and %s", toolsDir, kubernetesModule, etcdModule)
	}
	cache, err := CacheDir()
	if err != nil {
		return Binaries{}, err
	}
	platform := runtime.GOOS + "-" + runtime.GOARCH
	b.KubeAPIServer = filepath.Join(cache, "kube-apiserver-"+b.KubernetesVersion+"-"+platform, "kube-apiserver")
	b.Etcd = filepath.Join(cache, "etcd-"+b.EtcdVersion+"-"+platform, "etcd")

	if err := ensureBuilt(ctx, toolsDir, b.Etcd, "./etcd", nil, logw); err != nil {
		return Binaries{}, err
	}
	if err := ensureBuilt(ctx, toolsDir, b.KubeAPIServer, kubernetesModule+"/cmd/kube-apiserver",
		kubeVersionLDFlags(b.KubernetesVersion), logw); err != nil {
		return Binaries{}, err
	}
	return b, nil
}

// kubeVersionLDFlags stamps the version the API server reports (/version), as
// Kubernetes' own build does (hack/lib/version.sh), so that clients can parse it.
func kubeVersionLDFlags(version string) []string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(semver.MajorMinor(version), "v"), ".")
	var flags []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=clean",
			"-X", pkg+".buildDate=1970-01-01T00:00:00Z",
		)
	}
	return flags
}

// ensureBuilt builds pkg in the tools module into out unless out exists. The binary
// is written next to out and renamed, so that an interrupted build leaves nothing
// and concurrent runs do not see a partial file.
func ensureBuilt(ctx context.Context, toolsDir, out, pkg string, ldflags []string, logw io.Writer) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".build-*")
	if err != nil {
		return err
	}
	_ = tmp.Close()
	defer func() { _ = os.Remove(tmp.Name()) }() // gone already after the rename below

	goBin, err := GoCommand()
	if err != nil {
		return err
	}
	args := []string{"build", "-trimpath", "-buildvcs=false", "-o", tmp.Name(), "-ldflags", strings.Join(append([]string{"-s", "-w"}, ldflags...), " "), pkg}
	fmt.Fprintf(logw, "e2e: building %s into %s (first run of this version only)\n", pkg, filepath.Dir(out))
	start := time.Now()
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = toolsDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, output)
	}
	fmt.Fprintf(logw, "e2e: built %s in %s\n", pkg, time.Since(start).Round(time.Second))
	return os.Rename(tmp.Name(), out)
}

// GoCommand finds the go command on PATH (go test puts its own toolchain first).
func GoCommand() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command on PATH: %w", err)
	}
	return p, nil
}

// BuildFlagpole builds the flagpole command of the main module at repoRoot into dir
// and returns its path.
func BuildFlagpole(ctx context.Context, repoRoot, dir string) (string, error) {
	goBin, err := GoCommand()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "flagpole")
	cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-o", out, ".")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building flagpole in %s: %w\n%s", repoRoot, err, output)
	}
	return out, nil
}
