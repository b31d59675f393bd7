package modes

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of debug inject")

// runInject runs `debug inject` with the given options and returns stdout, stderr
// and the exit code.
func runInject(t *testing.T, c DebugInjectCmd) (string, string, int) {
	t.Helper()
	if c.PullPolicy == "" {
		c.PullPolicy = "IfNotPresent"
	}
	if c.CrossNamespace == "" {
		c.CrossNamespace = "deny"
	}
	if c.Output == "" {
		c.Output = "yaml"
	}
	var out, errOut bytes.Buffer
	err := c.Run(context.Background(), BuildInfo{Version: "v0.0.0-test"}, Stdio{Out: &out, Err: &errOut})
	code := 0
	var exit ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.Code
	case err != nil:
		t.Fatalf("debug inject: %v", err)
	}
	return out.String(), errOut.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "inject", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", name, diff)
	}
}

// TestDebugInject renders what the webhook does, through its admit function: a
// Deployment's pod template (YAML and patch), the side effects on stderr, and a
// denial with the webhook's message and exit code 1.
func TestDebugInject(t *testing.T) {
	dir := filepath.Join("testdata", "inject")
	objects := []string{filepath.Join(dir, "objects.yaml")}
	const grant = "would grant ServiceAccount shop/storefront get/list/watch on FeatureFlags checkout in namespace shop (Role and RoleBinding flagpole-featureflags-shop.storefront)\n"

	out, stderr, code := runInject(t, DebugInjectCmd{File: filepath.Join(dir, "deployment.yaml"), Objects: objects, SidecarImage: "flagpole:test"})
	if code != 0 || stderr != grant {
		t.Errorf("deployment: exit %d, stderr %q", code, stderr)
	}
	golden(t, "deployment.golden.yaml", out)

	out, _, code = runInject(t, DebugInjectCmd{File: filepath.Join(dir, "deployment.yaml"), Objects: objects, SidecarImage: "flagpole:test", Output: "patch"})
	if code != 0 {
		t.Errorf("patch: exit %d", code)
	}
	golden(t, "deployment.golden.patch.json", out)

	out, stderr, code = runInject(t, DebugInjectCmd{File: filepath.Join(dir, "bare-pod.yaml"), Objects: objects})
	if code != 1 || out != "" || stderr != "denied (403): static or orphaned pods cannot be mutated\n" {
		t.Errorf("bare pod: exit %d, stdout %q, stderr %q", code, out, stderr)
	}

	out, stderr, code = runInject(t, DebugInjectCmd{File: filepath.Join(dir, "deployment.yaml"), Objects: nil})
	want := "denied (404): featureflagsources.core.openfeature.dev \"shop/flags\" not found\n"
	if code != 1 || out != "" || stderr != want {
		t.Errorf("without objects: exit %d, stderr %q, want %q", code, stderr, want)
	}
}
