package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha1" //nolint:gosec // compares the SHA1 checksums SPDX requires on files
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
	"github.com/flagpole-dev/flagpole/hack/image/sbom"
)

// checkSBOM checks the SBOM of one platform image: the artifact in the layout
// (artifactType, empty config, one SPDX layer, subject = the image's manifest),
// the file next to the archives (the same bytes), and the document: its
// namespace and image checksum name the manifest, it lists exactly the modules
// of the binary's build information (and of `go version -m` when goCmd is set),
// its Go version and build settings, and every regular file of the layer with
// its SHA-1 and SHA-256; generated again from the layer, it is the same bytes.
// It returns the document's bytes.
func checkSBOM(ctx context.Context, lp layout.Path, o Options, p oci.Platform, subject v1.Descriptor, artifactDesc *v1.Descriptor, img v1.Image) ([]byte, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	arch := p.Arch
	if artifactDesc == nil {
		return nil, fmt.Errorf("index.json lists no SBOM artifact %s (image.json sbomArtifacts)", o.Written.SBOMArtifacts[arch])
	}
	if artifactDesc.ArtifactType != sbom.MediaType || artifactDesc.MediaType != types.OCIManifestSchema1 {
		fail("index.json lists the SBOM artifact as %s with artifactType %q, want %s with %s", artifactDesc.MediaType, artifactDesc.ArtifactType, types.OCIManifestSchema1, sbom.MediaType)
	}
	art, err := lp.Image(artifactDesc.Digest)
	if err != nil {
		return nil, fmt.Errorf("SBOM artifact %s: %w", artifactDesc.Digest, err)
	}
	m, err := art.Manifest()
	if err != nil {
		return nil, fmt.Errorf("SBOM artifact %s: %w", artifactDesc.Digest, err)
	}
	empty := oci.EmptyDescriptor()
	switch {
	case m.MediaType != types.OCIManifestSchema1 || m.ArtifactType != sbom.MediaType:
		fail("SBOM artifact: manifest %s with artifactType %q, want %s with %s", m.MediaType, m.ArtifactType, types.OCIManifestSchema1, sbom.MediaType)
	case m.Config.MediaType != empty.MediaType || m.Config.Digest != empty.Digest || m.Config.Size != empty.Size:
		fail("SBOM artifact: config %s %s, want the empty descriptor %s %s", m.Config.MediaType, m.Config.Digest, empty.MediaType, empty.Digest)
	case len(m.Layers) != 1 || m.Layers[0].MediaType != sbom.MediaType:
		fail("SBOM artifact: layers %v, want one %s layer", m.Layers, sbom.MediaType)
	}
	if m.Subject == nil {
		fail("SBOM artifact %s has no subject", artifactDesc.Digest)
	} else if m.Subject.Digest != subject.Digest || m.Subject.MediaType != subject.MediaType || m.Subject.Size != subject.Size {
		fail("SBOM artifact: subject %s %s (%d bytes), want the %s image's manifest %s %s (%d bytes)",
			m.Subject.MediaType, m.Subject.Digest, m.Subject.Size, p, subject.MediaType, subject.Digest, subject.Size)
	}
	if len(m.Layers) != 1 {
		return nil, errors.Join(errs...)
	}
	if got, want := m.Layers[0].Annotations[oci.AnnotationTitle], o.Written.SBOMs[arch]; got != want {
		fail("SBOM artifact: layer title %q, want %q", got, want)
	}
	layers, err := art.Layers()
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	rc.Close()
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	if file, err := os.ReadFile(filepath.Join(o.Dir, o.Written.SBOMs[arch])); err != nil {
		fail("the SBOM file: %v", err)
	} else if !bytes.Equal(file, data) {
		fail("%s is not the SBOM in the layout's artifact %s", o.Written.SBOMs[arch], artifactDesc.Digest)
	}
	doc, err := sbom.Parse(data)
	if err != nil {
		return data, errors.Join(append(errs, err)...)
	}
	if want := sbom.Namespace(o.Meta.Source, o.Meta.Repository, o.Meta.Version, p.V1(), subject.Digest); doc.DocumentNamespace != want {
		fail("SBOM namespace %q, want %q (derived from the manifest digest)", doc.DocumentNamespace, want)
	}
	if want := o.Meta.Created.UTC().Format(time.RFC3339); doc.CreationInfo.Created != want {
		fail("SBOM created %q, want the commit time %s", doc.CreationInfo.Created, want)
	}
	if i := slices.IndexFunc(doc.Packages, func(p sbom.Package) bool { return p.SPDXID == sbom.ImageID }); i < 0 {
		fail("the SBOM has no image package %s", sbom.ImageID)
	} else if want := (sbom.Checksum{Algorithm: "SHA256", ChecksumValue: subject.Digest.Hex}); !slices.Contains(doc.Packages[i].Checksums, want) {
		fail("the SBOM's image package has checksums %v, want the manifest digest %s", doc.Packages[i].Checksums, subject.Digest)
	}

	listing, contents, err := Listing(img)
	if err != nil {
		return data, errors.Join(append(errs, err)...)
	}
	errs = append(errs, checkSBOMFiles(doc, listing, contents)...)
	binary := contents[rootfs.Binary]
	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		return data, errors.Join(append(errs, fmt.Errorf("%s: %w", rootfs.Binary, err))...)
	}
	errs = append(errs, checkSBOMModules(doc, info)...)
	if o.GoCommand != "" {
		listed, err := goVersionModules(ctx, o.GoCommand, binary)
		switch {
		case err != nil:
			errs = append(errs, err)
		default:
			got, _ := sbom.Modules(doc)
			errs = append(errs, diffModules("the SBOM", "`go version -m`", got, listed)...)
		}
	}

	// generated again from the layer's files: the same bytes
	files := make([]rootfs.File, 0, len(listing))
	for _, e := range listing {
		f := rootfs.File{Path: e.Path, Mode: e.Mode.Perm(), Data: contents[e.Path]}
		if e.Type == tar.TypeDir {
			f.Mode |= fs.ModeDir
		}
		files = append(files, f)
	}
	again, err := oci.SBOM(o.Meta, p, img, files, rootfs.CABundleSource())
	switch {
	case err != nil:
		fail("generating the SBOM again from the layer: %v", err)
	case !bytes.Equal(again, data):
		fail("the SBOM is not the document the layer's files and the binary's build information give (generated again: %d bytes, stored: %d)", len(again), len(data))
	}
	return data, errors.Join(errs...)
}

// checkSBOMFiles wants exactly the layer's regular files in the document, with
// their SHA-1 and SHA-256.
func checkSBOMFiles(doc *sbom.Document, listing []Entry, contents map[string][]byte) []error {
	var errs []error
	listed := map[string]sbom.File{}
	for _, f := range doc.Files {
		listed[strings.TrimPrefix(f.FileName, ".")] = f
	}
	for _, e := range listing {
		if e.Type != tar.TypeReg {
			continue
		}
		f, ok := listed[e.Path]
		if !ok {
			errs = append(errs, fmt.Errorf("the SBOM does not list %s", e.Path))
			continue
		}
		delete(listed, e.Path)
		s1, s256 := sha1.Sum(contents[e.Path]), sha256.Sum256(contents[e.Path]) //nolint:gosec // SPDX's SHA1
		for _, want := range []sbom.Checksum{{Algorithm: "SHA1", ChecksumValue: hex.EncodeToString(s1[:])}, {Algorithm: "SHA256", ChecksumValue: hex.EncodeToString(s256[:])}} {
			if !slices.Contains(f.Checksums, want) {
				errs = append(errs, fmt.Errorf("the SBOM's %s has checksums %v, the layer's file has %s %s", e.Path, f.Checksums, want.Algorithm, want.ChecksumValue))
			}
		}
	}
	for p := range listed {
		errs = append(errs, fmt.Errorf("the SBOM lists %s, which the layer does not hold", p))
	}
	return errs
}

// checkSBOMModules wants the document's modules, main module, Go version and
// build settings to be the binary's.
func checkSBOMModules(doc *sbom.Document, info *buildinfo.BuildInfo) []error {
	var errs []error
	got, err := sbom.Modules(doc)
	if err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, diffModules("the SBOM", "the binary's build information", got, sbom.BuildInfoModules(info))...)
	var main, stdlib *sbom.Package
	for i, p := range doc.Packages {
		switch p.SPDXID {
		case sbom.ModuleID(info.Main.Path):
			main = &doc.Packages[i]
		case sbom.StdlibID:
			stdlib = &doc.Packages[i]
		}
	}
	if main == nil || main.Name != info.Main.Path {
		errs = append(errs, fmt.Errorf("the SBOM has no package for the main module %s", info.Main.Path))
	} else {
		var settings, want []string
		for _, a := range main.Annotations {
			if s, ok := strings.CutPrefix(a.Comment, sbom.BuildSettingPrefix); ok {
				settings = append(settings, s)
			}
		}
		for _, s := range info.Settings {
			want = append(want, s.Key+"="+s.Value)
		}
		if !slices.Equal(settings, want) {
			errs = append(errs, fmt.Errorf("the SBOM's build settings %q, the binary's %q", settings, want))
		}
	}
	if stdlib == nil || stdlib.VersionInfo != info.GoVersion {
		errs = append(errs, fmt.Errorf("the SBOM's Go standard library is not %s", info.GoVersion))
	}
	return errs
}

func diffModules(gotName, wantName string, got, want []sbom.Module) []error {
	var errs []error
	gs, ws := moduleStrings(got), moduleStrings(want)
	for _, m := range ws {
		if !slices.Contains(gs, m) {
			errs = append(errs, fmt.Errorf("%s lacks the module %s that %s lists", gotName, m, wantName))
		}
	}
	for _, m := range gs {
		if !slices.Contains(ws, m) {
			errs = append(errs, fmt.Errorf("%s lists the module %s, which %s does not", gotName, m, wantName))
		}
	}
	return errs
}

func moduleStrings(ms []sbom.Module) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}

// goVersionModules runs `go version -m` on the binary and reads its dep and =>
// lines.
func goVersionModules(ctx context.Context, goCmd string, binary []byte) ([]sbom.Module, error) {
	dir, err := os.MkdirTemp("", "flagpole-image-sbom-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "flagpole")
	if err := os.WriteFile(path, binary, 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, goCmd, "version", "-m", path).Output()
	if err != nil {
		return nil, fmt.Errorf("`%s version -m`: %w", goCmd, err)
	}
	return parseGoVersionM(string(out))
}

// parseGoVersionM reads the modules of `go version -m` output: "dep path version
// [sum]" lines, each perhaps followed by "=> path version [sum]".
func parseGoVersionM(out string) ([]sbom.Module, error) {
	var ms []sbom.Module
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(strings.TrimSpace(line), "\t")
		if len(f) < 3 || (f[0] != "dep" && f[0] != "=>") {
			continue
		}
		m := sbom.Module{Path: f[1], Version: f[2]}
		if len(f) > 3 {
			m.Sum = f[3]
		}
		if f[0] == "=>" {
			if len(ms) == 0 {
				return nil, errors.New("`go version -m`: a => line before any dep line")
			}
			last := &ms[len(ms)-1]
			m.Replaces = last.Path + " " + last.Version
			*last = m
			continue
		}
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b sbom.Module) int { return strings.Compare(a.Path, b.Path) })
	return ms, nil
}
