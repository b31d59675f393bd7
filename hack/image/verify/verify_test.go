package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
)

var meta = oci.Meta{Repository: "ghcr.io/flagpole-dev/flagpole", Version: "v9.9.9-test", Revision: "0123456789abcdef0123456789abcdef01234567",
	Source: "https://github.com/flagpole-dev/flagpole", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}

// fakeBinaries builds testdata/fakeflagpole for every platform, as the Makefile
// builds flagpole (static, -trimpath, the version stamped).
func fakeBinaries(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dir := t.TempDir()
	for _, p := range oci.Platforms {
		path := filepath.Join(dir, p.Arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+meta.Version, "-o", path, "./testdata/fakeflagpole")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.Arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		out[p.Arch] = data
	}
	return out
}

func build(t *testing.T, bins map[string][]byte) (string, oci.Written, map[string]v1.Image) {
	t.Helper()
	images := map[string]v1.Image{}
	for _, p := range oci.Platforms {
		img, err := oci.Image(meta, p, bins[p.Arch])
		if err != nil {
			t.Fatal(err)
		}
		images[p.Arch] = img
	}
	idx, err := oci.Index(meta, images)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := oci.Write(dir, meta, idx, images, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	return dir, w, images
}

func TestVerifyAcceptsABuild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("runs the linux binary")
	}
	bins := fakeBinaries(t)
	dir, w, _ := build(t, bins)
	host := filepath.Join(t.TempDir(), "flagpole")
	if err := os.WriteFile(host, bins[runtime.GOARCH], 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	if err := Verify(context.Background(), Options{Dir: dir, Meta: meta, Written: w, HostBinary: host, WantDigest: w.Digest, Log: &log}); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, want := range []string{"runs `version` natively", "byte for byte", "reproducible", "linux/arm64/v8 archive"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	// another binary for this machine, another digest: both named
	other := filepath.Join(t.TempDir(), "other")
	if err := os.WriteFile(other, append(bins[runtime.GOARCH], 0), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Verify(context.Background(), Options{Dir: dir, Meta: meta, Written: w, HostBinary: other, WantDigest: "sha256:0000", Log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "not the one `make build` wrote") || !strings.Contains(err.Error(), "not reproducible") {
		t.Errorf("err = %v", err)
	}
}

func layerWith(t *testing.T, name string, mode int64) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: 2, Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte("#!"))
	_ = tw.Close()
	l, err := tarball.LayerFromReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestCheckImageRefuses(t *testing.T) {
	bins := fakeBinaries(t)
	p := oci.Platforms[0]
	good, err := oci.Image(meta, p, bins[p.Arch])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkImage(good, p, meta); err != nil {
		t.Fatalf("the good image: %v", err)
	}
	withShell, err := mutate.AppendLayers(good, layerWith(t, "bin/sh", 0o755))
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := good.ConfigFile()
	root := cf.DeepCopy()
	root.Config.User = "0"
	asRoot, err := mutate.ConfigFile(good, root)
	if err != nil {
		t.Fatal(err)
	}
	wrongArch, err := oci.Image(meta, p, bins["arm64"])
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		img  v1.Image
		want string
	}{
		"a shell":               {withShell, "unexpected"},
		"root":                  {asRoot, `user "0"`},
		"another arch's binary": {wrongArch, "want a 64-bit EM_X86_64 binary"},
	} {
		_, err := checkImage(c.img, p, meta)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}
