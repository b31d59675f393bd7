package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
)

var (
	binOnce sync.Once
	binData []byte
	binErr  error
)

// fakeBinary builds testdata/fakeflagpole for linux/arm64 as the Makefile builds
// flagpole: a real Go binary whose build information lists one dependency.
func fakeBinary(t *testing.T) []byte {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sbom-test-")
		if err != nil {
			binErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "flagpole")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1.2.3", "-o", out, "./testdata/fakeflagpole")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = &buildError{err, b}
			return
		}
		binData, binErr = os.ReadFile(out)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binData
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

var manifest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}

func input(t *testing.T) Input {
	t.Helper()
	return Input{
		Repository: "ghcr.io/flagpole-dev/flagpole", Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: "https://github.com/flagpole-dev/flagpole", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Platform: v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, Manifest: manifest,
		Files: rootfs.Files(fakeBinary(t), []byte("-----BEGIN CERTIFICATE-----\n")),
		CASource: &debug.Module{Path: rootfs.CABundleModule, Version: "v0.0.0-20261030153154-30a33513ff6d",
			Sum: "h1:" + "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
	}
}

func generate(t *testing.T, in Input) (*Document, []byte) {
	t.Helper()
	doc, err := Generate(in)
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return doc, data
}

func pkg(t *testing.T, doc *Document, id string) Package {
	t.Helper()
	for _, p := range doc.Packages {
		if p.SPDXID == id {
			return p
		}
	}
	t.Fatalf("no package %s in %v", id, doc.Packages)
	return Package{}
}

// TestGenerateFromBuildInfo checks the document against what the binary and the
// files really are: the modules `go version -m` lists, with their go.sum hashes
// as SHA256 checksums, the Go version, the build settings, and each file's hashes.
func TestGenerateFromBuildInfo(t *testing.T) {
	in := input(t)
	doc, _ := generate(t, in)
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" || doc.SPDXID != "SPDXRef-DOCUMENT" ||
		doc.CreationInfo.Created != "2026-01-02T03:04:05Z" || doc.Name != "flagpole-v1.2.3-linux-arm64-v8" {
		t.Errorf("header %+v %+v", doc, doc.CreationInfo)
	}
	if want := "https://github.com/flagpole-dev/flagpole/spdx/flagpole-v1.2.3-linux-arm64-v8-sha256-" + manifest.Hex; doc.DocumentNamespace != want {
		t.Errorf("namespace %q, want %q", doc.DocumentNamespace, want)
	}

	out, err := exec.Command("go", "version", "-m", writeTemp(t, fakeBinary(t))).Output()
	if err != nil {
		t.Fatal(err)
	}
	var want []Module
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Split(strings.TrimSpace(line), "\t"); f[0] == "dep" {
			want = append(want, Module{Path: f[1], Version: f[2], Sum: f[3]})
		}
	}
	got, err := Modules(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("modules %v, `go version -m` lists %v", got, want)
	}
	dep := pkg(t, doc, ModuleID("github.com/opencontainers/go-digest"))
	if dep.VersionInfo != "v1.0.0" || len(dep.Checksums) != 1 || dep.Checksums[0] != (Checksum{"SHA256", "6a93945ace755b93e586ec86cb3f4509e78120e50303fea75bc3a2ff23a18795"}) ||
		dep.ExternalRefs[0].ReferenceLocator != "pkg:golang/github.com/opencontainers/go-digest@v1.0.0" ||
		!strings.Contains(dep.Comment, "go.sum h1:apOUWs51W5PlhuyGyz9FCeeBIOUDA/6nW8Oi/yOhh5U=") {
		t.Errorf("go-digest package %+v", dep)
	}

	main := pkg(t, doc, ModuleID("github.com/flagpole-dev/flagpole/hack/image"))
	if main.VersionInfo != "v1.2.3" || main.PrimaryPackagePurpose != "APPLICATION" ||
		main.DownloadLocation != "git+https://github.com/flagpole-dev/flagpole@0123456789abcdef0123456789abcdef01234567" ||
		!strings.Contains(main.Comment, `"(devel)"`) {
		t.Errorf("main module %+v", main)
	}
	var settings []string
	for _, a := range main.Annotations {
		settings = append(settings, strings.TrimPrefix(a.Comment, BuildSettingPrefix))
	}
	for _, s := range []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64", "-trimpath=true"} {
		if !slices.Contains(settings, s) {
			t.Errorf("build settings %q lack %s", settings, s)
		}
	}
	std := pkg(t, doc, StdlibID)
	if !strings.HasPrefix(std.VersionInfo, "go1.") || !strings.HasPrefix(std.ExternalRefs[0].ReferenceLocator, "pkg:golang/stdlib@1.") {
		t.Errorf("stdlib %+v", std)
	}
	img := pkg(t, doc, ImageID)
	if img.Checksums[0].ChecksumValue != manifest.Hex || img.PrimaryPackagePurpose != "CONTAINER" ||
		img.ExternalRefs[0].ReferenceLocator != "pkg:oci/flagpole@sha256%3A"+manifest.Hex+"?arch=arm64&repository_url=ghcr.io%2Fflagpole-dev%2Fflagpole&tag=v1.2.3" {
		t.Errorf("image package %+v", img)
	}
	ca := pkg(t, doc, CASourceID)
	if ca.Name != rootfs.CABundleModule || ca.Checksums[0].ChecksumValue != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("CA source %+v", ca)
	}

	// every regular file, with its hashes; no directory
	var names []string
	for _, f := range doc.Files {
		names = append(names, f.FileName)
		for _, src := range in.Files {
			if "."+src.Path == f.FileName {
				sum := sha256.Sum256(src.Data)
				if !slices.Contains(f.Checksums, Checksum{"SHA256", hex.EncodeToString(sum[:])}) || f.Checksums[0].Algorithm != "SHA1" {
					t.Errorf("%s checksums %v", f.FileName, f.Checksums)
				}
			}
		}
	}
	if want := []string{"./etc/group", "./etc/passwd", "./etc/ssl/certs/ca-certificates.crt", "./flagpole"}; !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	for _, r := range []Relationship{
		{DocumentID, "DESCRIBES", ImageID},
		{ImageID, "CONTAINS", FileID("/flagpole")},
		{FileID("/flagpole"), "GENERATED_FROM", main.SPDXID},
		{main.SPDXID, "DEPENDS_ON", dep.SPDXID},
		{main.SPDXID, "DEPENDS_ON", StdlibID},
		{FileID(rootfs.CACertificates), "GENERATED_FROM", CASourceID},
	} {
		if !slices.Contains(doc.Relationships, r) {
			t.Errorf("no relationship %v", r)
		}
	}
}

// TestGenerateIsDeterministic: the same input gives the same bytes whatever the
// order of the files; the manifest digest reaches the namespace.
func TestGenerateIsDeterministic(t *testing.T) {
	in := input(t)
	_, a := generate(t, in)
	shuffled := in
	shuffled.Files = slices.Clone(in.Files)
	slices.Reverse(shuffled.Files)
	if _, b := generate(t, shuffled); !bytes.Equal(a, b) {
		t.Error("the order of the files changes the document")
	}
	if _, b := generate(t, in); !bytes.Equal(a, b) {
		t.Error("two documents of one input differ")
	}
	other := in
	other.Manifest = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}
	if d, _ := generate(t, other); !strings.HasSuffix(d.DocumentNamespace, other.Manifest.Hex) {
		t.Errorf("namespace %s does not follow the manifest", d.DocumentNamespace)
	}
	if bytes.Contains(a, []byte(time.Now().UTC().Format("2006-01-02T"))) {
		t.Error("the document holds today's date")
	}
}

// TestGenerateIsValidSPDX checks what the SPDX 2.3 JSON schema and text require of
// the fields written: ids, checksum values, times, every relationship's ends,
// files with SHA1, packages with filesAnalyzed false (no verification code).
func TestGenerateIsValidSPDX(t *testing.T) {
	doc, data := generate(t, input(t))
	var generic map[string]any
	if err := json.Unmarshal(data, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo", "packages", "files", "relationships"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	idRE := regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)
	hexRE := map[string]*regexp.Regexp{"SHA1": regexp.MustCompile(`^[0-9a-f]{40}$`), "SHA256": regexp.MustCompile(`^[0-9a-f]{64}$`)}
	ids := map[string]bool{DocumentID: true}
	checkSums := func(who string, cs []Checksum) {
		for _, c := range cs {
			if re, ok := hexRE[c.Algorithm]; !ok || !re.MatchString(c.ChecksumValue) {
				t.Errorf("%s: checksum %v", who, c)
			}
		}
	}
	for _, p := range doc.Packages {
		if !idRE.MatchString(p.SPDXID) || ids[p.SPDXID] || p.Name == "" || p.DownloadLocation == "" || p.FilesAnalyzed {
			t.Errorf("package %+v", p)
		}
		ids[p.SPDXID] = true
		checkSums(p.SPDXID, p.Checksums)
	}
	for _, f := range doc.Files {
		if !idRE.MatchString(f.SPDXID) || ids[f.SPDXID] || !strings.HasPrefix(f.FileName, "./") || len(f.Checksums) != 2 || f.Checksums[0].Algorithm != "SHA1" {
			t.Errorf("file %+v", f)
		}
		ids[f.SPDXID] = true
		checkSums(f.SPDXID, f.Checksums)
	}
	for _, r := range doc.Relationships {
		if !ids[r.SPDXElementID] || !ids[r.RelatedSPDXElement] {
			t.Errorf("relationship %v names an element the document lacks", r)
		}
	}
	if strings.Contains(doc.DocumentNamespace, "#") {
		t.Errorf("namespace %q holds a #", doc.DocumentNamespace)
	}
	if _, err := time.Parse("2006-01-02T15:04:05Z", doc.CreationInfo.Created); err != nil {
		t.Error(err)
	}
	if back, err := Parse(data); err != nil || back.DocumentNamespace != doc.DocumentNamespace {
		t.Errorf("Parse: %v", err)
	}
}

func TestGenerateWithReplacedModule(t *testing.T) {
	p, err := modulePackage(&debug.Module{Path: "example.com/a", Version: "v1.0.0", Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		Replace: &debug.Module{Path: "example.com/fork", Version: "v1.0.1", Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "example.com/fork" || p.VersionInfo != "v1.0.1" || p.SourceInfo != "replaces example.com/a v1.0.0" ||
		p.ExternalRefs[0].ReferenceLocator != "pkg:golang/example.com/fork@v1.0.1" {
		t.Errorf("%+v", p)
	}
	if got := goPURL("github.com/docker/cli", "v29.7.2+incompatible"); got != "pkg:golang/github.com/docker/cli@v29.7.2%2Bincompatible" {
		t.Errorf("purl %s", got)
	}
}

func TestGenerateRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*Input)
		want string
	}{
		"no binary":     {func(in *Input) { in.Files = in.Files[:2] }, "no /flagpole"},
		"not Go":        {func(in *Input) { in.Files = rootfs.Files([]byte("#!/bin/sh\n"), nil) }, "no Go build information"},
		"no digest":     {func(in *Input) { in.Manifest = v1.Hash{} }, "not a sha256 digest"},
		"no time":       {func(in *Input) { in.Created = time.Time{} }, "no creation time"},
		"source":        {func(in *Input) { in.Source = "github.com/x#y" }, "not an http(s) URL"},
		"no platform":   {func(in *Input) { in.Platform = v1.Platform{} }, "lacks an OS"},
		"relative path": {func(in *Input) { in.Files = append(slices.Clone(in.Files), rootfs.File{Path: "etc/x"}) }, "absolute, clean"},
		"symlink": {func(in *Input) {
			in.Files = append(slices.Clone(in.Files), rootfs.File{Path: "/x", Mode: fs.ModeSymlink})
		}, "neither a regular file"},
		"bad module sum": {func(in *Input) { in.CASource = &debug.Module{Path: "a", Version: "v1", Sum: "h1:!!"} }, "not h1: and a base64 SHA-256"},
	} {
		in := input(t)
		c.edit(&in)
		if _, err := Generate(in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}

// TestModulesRefusesAForgedChecksum: a package whose SHA256 is not its go.sum
// hash is reported.
func TestModulesRefusesAForgedChecksum(t *testing.T) {
	doc, _ := generate(t, input(t))
	for i, p := range doc.Packages {
		if p.Name == "github.com/opencontainers/go-digest" {
			doc.Packages[i].Checksums[0].ChecksumValue = strings.Repeat("0", 64)
		}
	}
	if _, err := Modules(doc); err == nil || !strings.Contains(err.Error(), "its go.sum hash") {
		t.Errorf("err = %v", err)
	}
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
