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
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
	"github.com/flagpole-dev/flagpole/hack/image/sbom"
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
	return buildWith(t, bins, nil)
}

// buildWith builds the image as `hack/image build` does; edit, when set, may
// change each platform's SPDX document before it is written.
func buildWith(t *testing.T, bins map[string][]byte, edit func(arch string, doc *sbom.Document)) (string, oci.Written, map[string]v1.Image) {
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
	ca, _ := rootfs.CABundle()
	sboms := map[string][]byte{}
	for _, p := range oci.Platforms {
		data, err := oci.SBOM(meta, p, images[p.Arch], rootfs.Files(bins[p.Arch], ca), rootfs.CABundleSource())
		if err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			doc, err := sbom.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			edit(p.Arch, doc)
			if data, err = sbom.Marshal(doc); err != nil {
				t.Fatal(err)
			}
		}
		sboms[p.Arch] = data
	}
	dir := t.TempDir()
	w, err := oci.Write(dir, meta, idx, images, sboms, runtime.GOARCH)
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
	againDir, again, _ := build(t, bins)
	var log bytes.Buffer
	if err := Verify(context.Background(), Options{Dir: dir, Meta: meta, Written: w, HostBinary: host, WantDigest: w.Digest,
		Rebuild: &again, RebuildDir: againDir, GoCommand: "go", Log: &log}); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	for _, want := range []string{"runs `version` natively", "byte for byte", "reproducible", "linux/arm64/v8 archive",
		"linux/arm64/v8 SBOM flagpole-v9.9.9-test-linux-arm64.spdx.json (SPDX 2.3", "and `go version -m`", "same SBOM bytes"} {
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

// TestVerifyRefusesABadSBOM: an SBOM that leaves out a module, misstates a
// file's hash, describes the other platform's image, differs from the file next
// to the archives or from a second build is reported, naming what is wrong.
func TestVerifyRefusesABadSBOM(t *testing.T) {
	bins := fakeBinaries(t)
	dropModule := func(arch string, doc *sbom.Document) {
		if arch != "amd64" {
			return
		}
		id := sbom.ModuleID("github.com/opencontainers/go-digest")
		doc.Packages = slices.DeleteFunc(doc.Packages, func(p sbom.Package) bool { return p.SPDXID == id })
		doc.Relationships = slices.DeleteFunc(doc.Relationships, func(r sbom.Relationship) bool { return r.RelatedSPDXElement == id })
	}
	wrongHash := func(arch string, doc *sbom.Document) {
		for i, f := range doc.Files {
			if f.FileName == "./etc/passwd" {
				doc.Files[i].Checksums[1].ChecksumValue = strings.Repeat("0", 64)
			}
		}
	}
	extraFile := func(arch string, doc *sbom.Document) {
		doc.Files = append(doc.Files, sbom.File{SPDXID: "SPDXRef-File-bin-sh", FileName: "./bin/sh"})
	}
	otherPlatform := func(arch string, doc *sbom.Document) {
		if arch == "amd64" {
			doc.DocumentNamespace = strings.Replace(doc.DocumentNamespace, "linux-amd64", "linux-arm64-v8", 1)
		}
	}
	for name, c := range map[string]struct {
		edit func(string, *sbom.Document)
		want []string
	}{
		"a module left out": {dropModule, []string{"linux/amd64 SBOM: the SBOM lacks the module github.com/opencontainers/go-digest v1.0.0 h1:", "that the binary's build information lists",
			"that `go version -m` lists", "not the document the layer's files"}},
		"a wrong file hash": {wrongHash, []string{"the SBOM's /etc/passwd has checksums", "the layer's file has SHA256"}},
		"a file not there":  {extraFile, []string{"the SBOM lists /bin/sh, which the layer does not hold"}},
		"another namespace": {otherPlatform, []string{"linux/amd64 SBOM: SBOM namespace", "derived from the manifest digest"}},
	} {
		dir, w, _ := buildWith(t, bins, c.edit)
		err := Verify(context.Background(), Options{Dir: dir, Meta: meta, Written: w, GoCommand: "go", Log: io.Discard})
		for _, want := range c.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want %q", name, err, want)
			}
		}
	}

	// the file next to the archives edited; a second build with another SBOM
	dir, w, _ := build(t, bins)
	againDir, again, _ := buildWith(t, bins, wrongHash)
	if err := os.WriteFile(filepath.Join(dir, w.SBOMs["arm64"]), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Verify(context.Background(), Options{Dir: dir, Meta: meta, Written: w, Rebuild: &again, RebuildDir: againDir, Log: io.Discard})
	for _, want := range []string{"flagpole-v9.9.9-test-linux-arm64.spdx.json is not the SBOM in the layout's artifact",
		"not reproducible: the linux/amd64 SBOM artifact is", "not reproducible: the linux/amd64 SBOM differs from the second build's"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want %q", err, want)
		}
	}
}

// TestCheckSBOMWantsTheRightSubject: the amd64 image's SBOM artifact refers to
// the amd64 manifest; checked against the arm64 image, its subject is refused.
func TestCheckSBOMWantsTheRightSubject(t *testing.T) {
	bins := fakeBinaries(t)
	dir, w, images := build(t, bins)
	lp, err := layout.FromPath(filepath.Join(dir, w.Layout))
	if err != nil {
		t.Fatal(err)
	}
	top, _ := lp.ImageIndex()
	im, _ := top.IndexManifest()
	var artifact *v1.Descriptor
	for i, d := range im.Manifests {
		if d.Digest.String() == w.SBOMArtifacts["amd64"] {
			artifact = &im.Manifests[i]
		}
	}
	armDesc, err := partial.Descriptor(images["arm64"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = checkSBOM(context.Background(), lp, Options{Dir: dir, Meta: meta, Written: w}, oci.Platforms[1], *armDesc, artifact, images["arm64"])
	if err == nil || !strings.Contains(err.Error(), "want the linux/arm64/v8 image's manifest application/vnd.oci.image.manifest.v1+json "+armDesc.Digest.String()) {
		t.Errorf("err = %v", err)
	}
	if _, err := checkSBOM(context.Background(), lp, Options{Dir: dir, Meta: meta, Written: w}, oci.Platforms[1], *armDesc, nil, images["arm64"]); err == nil ||
		!strings.Contains(err.Error(), "index.json lists no SBOM artifact") {
		t.Errorf("no artifact: err = %v", err)
	}
}

func TestParseGoVersionM(t *testing.T) {
	out := "/x: go1.26.8\n\tpath\tex.com/m\n\tmod\tex.com/m\t(devel)\t\n\tdep\tex.com/a\tv1.0.0\th1:AAA=\n\tdep\tex.com/b\tv0.1.0\th1:BBB=\n\t=>\tex.com/fork\tv0.2.0\th1:CCC=\n\tbuild\tGOOS=linux\n"
	got, err := parseGoVersionM(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []sbom.Module{{Path: "ex.com/a", Version: "v1.0.0", Sum: "h1:AAA="}, {Path: "ex.com/fork", Version: "v0.2.0", Sum: "h1:CCC=", Replaces: "ex.com/b v0.1.0"}}
	if !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}
