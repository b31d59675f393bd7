// Package render turns deploy/'s kustomize directories and the Helm chart
// deploy/chart/flagpole into manifests, as `kubectl kustomize` and `helm template`
// do, with the same libraries (sigs.k8s.io/kustomize/api, helm.sh/helm/v4).
package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Kustomize builds the kustomization in dir, as `kubectl kustomize dir` does, and
// returns the YAML stream.
func Kustomize(dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	return m.AsYaml()
}

// Chart is what Helm renders.
type Chart struct {
	// Dir is the chart's directory; Release and Namespace as `helm template
	// <release> <dir> --namespace <ns>`.
	Dir, Release, Namespace string
	// Values are merged over values.yaml (the chart's defaults), as --values does.
	Values map[string]any
	// KubeVersion is the cluster version templates see; DefaultKubeVersion when
	// empty.
	KubeVersion string
}

// DefaultKubeVersion is the Kubernetes version a chart renders for when none is
// given: the one flagpole builds and tests against (k8s.io/api in the main
// go.mod). Helm's own default derives from the client-go it is built with, which
// a test binary does not always record.
const DefaultKubeVersion = "v1.34.0"

// Helm renders the chart as `helm template --include-crds` does (client side, no
// cluster), CRDs first.
func Helm(ctx context.Context, c Chart) ([]byte, error) {
	ch, err := loader.Load(c.Dir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart %s: %w", c.Dir, err)
	}
	cfg := action.NewConfiguration(func(cfg *action.Configuration) {
		cfg.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler())
	})
	cfg.Releases = storage.Init(driver.NewMemory())
	cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
	cfg.Capabilities = common.DefaultCapabilities.Copy()
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = c.Release
	install.Namespace = c.Namespace
	install.Replace = true
	install.IncludeCRDs = true
	kubeVersion := c.KubeVersion
	if kubeVersion == "" {
		kubeVersion = DefaultKubeVersion
	}
	v, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", kubeVersion, err)
	}
	install.KubeVersion = v
	values := c.Values
	if values == nil {
		values = map[string]any{}
	}
	rel, err := install.RunWithContext(ctx, ch, values)
	if err != nil {
		return nil, fmt.Errorf("helm template %s: %w", c.Dir, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a %T, want a v1 release", rel)
	}
	return []byte(r.Manifest), nil
}

// ValuesFile reads a values file (YAML) into the map Helm merges.
func ValuesFile(data []byte) (map[string]any, error) {
	var v map[string]any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// Documents splits a YAML stream into its non-empty documents.
func Documents(stream []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), stream...), []byte("\n---")) {
		// a separator line may carry a comment ("--- # Source: ...")
		if i := bytes.IndexByte(d, '\n'); i >= 0 && strings.TrimSpace(string(d[:i])) != "" && strings.HasPrefix(strings.TrimSpace(string(d[:i])), "#") {
			d = d[i:]
		}
		if strings.TrimSpace(stripComments(string(d))) == "" {
			continue
		}
		out = append(out, d)
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// RepoRoot finds the repository root from a directory below it (the one holding
// the main module's go.mod and deploy/).
func RepoRoot(from string) (string, error) {
	dir, err := filepath.Abs(from)
	if err != nil {
		return "", err
	}
	for {
		if ok, _ := exists(filepath.Join(dir, "deploy", "base", "kustomization.yaml")); ok {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (a directory with deploy/base/kustomization.yaml) above " + from)
		}
		dir = parent
	}
}

func exists(p string) (bool, error) {
	_, err := os.Stat(p)
	if err == nil {
		return true, nil
	}
	return false, err
}
