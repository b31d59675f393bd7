// Package verify checks a built flagpole image the way a careful user would: the
// OCI layout holds one index over exactly the shipped platforms; each image runs
// the static binary as the non-root user with no shell; its one layer holds
// exactly the expected files, owned by root; each binary is a static ELF for its
// architecture built from this commit with CGO off and -trimpath; each image has
// its SBOM (an SPDX document attached as an OCI artifact whose subject is the
// image's manifest, and a file next to the archives) listing exactly its modules
// and files; the archives hold the same images; the binary of the build machine's architecture runs
// `version`; and, when given, it is byte for byte the binary `make build` wrote.
package verify

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
)

// Entry is one file of an image's file system, as a listing compares it.
type Entry struct {
	Path     string
	Type     byte // tar type flag
	Mode     fs.FileMode
	UID, GID int
	SHA256   string // regular files
	Link     string // links
}

func (e Entry) String() string {
	s := fmt.Sprintf("%c %s %s %d:%d", e.Type, e.Path, e.Mode.Perm(), e.UID, e.GID)
	if e.SHA256 != "" {
		s += " sha256:" + e.SHA256[:16]
	}
	if e.Link != "" {
		s += " -> " + e.Link
	}
	return s
}

// Listing reads the file system of a single-layer image (the only kind built
// here; Docker's COPY of one directory makes one layer too), sorted by path. The
// special mode bits are kept; "/" itself is left out.
func Listing(img v1.Image) ([]Entry, map[string][]byte, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, err
	}
	var out []Entry
	contents := map[string][]byte{}
	seen := map[string]bool{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, nil, err
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				rc.Close()
				return nil, nil, fmt.Errorf("reading a layer: %w", err)
			}
			p := "/" + strings.TrimSuffix(strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+h.Name)), "/"), "/")
			if p == "/" {
				continue
			}
			if seen[p] {
				return nil, nil, fmt.Errorf("%s appears twice", p)
			}
			seen[p] = true
			e := Entry{Path: p, Type: h.Typeflag, Mode: fs.FileMode(h.Mode) & (fs.ModePerm | 0o7000), UID: h.Uid, GID: h.Gid, Link: h.Linkname}
			if h.Typeflag == tar.TypeReg {
				data, err := io.ReadAll(io.LimitReader(tr, 512<<20))
				if err != nil {
					rc.Close()
					return nil, nil, err
				}
				sum := sha256.Sum256(data)
				e.SHA256 = hex.EncodeToString(sum[:])
				contents[p] = data
			}
			out = append(out, e)
		}
		rc.Close()
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
	return out, contents, nil
}

// Options say what to compare with.
type Options struct {
	// Dir is the output of `hack/image build` (the OCI layout and the archives).
	Dir string
	// Meta is what the image must say about itself.
	Meta oci.Meta
	// Written is the build's record (image.json).
	Written oci.Written
	// HostBinary, when set, is the binary `make build` wrote: the image's binary of
	// the build machine's architecture must be the same bytes.
	HostBinary string
	// WantDigest, when set, is the index digest of a second, independent build.
	WantDigest string
	// Rebuild, when set, is the record of a second build of the same commit in
	// RebuildDir: its SBOMs must be the same bytes and the same artifacts.
	Rebuild    *oci.Written
	RebuildDir string
	// GoCommand, when set, is the go command: `go version -m` of each binary must
	// list exactly the modules of its SBOM.
	GoCommand string
	// Log receives what was checked.
	Log io.Writer
}

// Verify runs every check and returns all failures together.
func Verify(ctx context.Context, o Options) error {
	lp, err := layout.FromPath(filepath.Join(o.Dir, o.Written.Layout))
	if err != nil {
		return fmt.Errorf("OCI layout: %w", err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return err
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		return err
	}
	// index.json: the image index (tagged), then one SBOM artifact per platform
	if len(topManifest.Manifests) != 1+len(oci.Platforms) {
		return fmt.Errorf("OCI layout index.json: %d entries, want %d (the image index and an SBOM artifact per platform)", len(topManifest.Manifests), 1+len(oci.Platforms))
	}
	desc := topManifest.Manifests[0]
	artifacts := map[string]*v1.Descriptor{}
	for i, d := range topManifest.Manifests[1:] {
		artifacts[d.Digest.String()] = &topManifest.Manifests[1+i]
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if desc.MediaType != types.OCIImageIndex {
		fail("index.json names a %s first, want the OCI image index", desc.MediaType)
	}
	if got := desc.Annotations[oci.AnnotationRefName]; got != o.Meta.Version {
		fail("index.json ref.name %q, want the version %q", got, o.Meta.Version)
	}
	if desc.Digest.String() != o.Written.Digest {
		fail("index digest %s, image.json says %s", desc.Digest, o.Written.Digest)
	}
	if o.WantDigest != "" && desc.Digest.String() != o.WantDigest {
		fail("not reproducible: this build's index is %s, another build of the same commit made %s", desc.Digest, o.WantDigest)
	}
	idx, err := top.ImageIndex(desc.Digest)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for k, v := range o.Meta.Labels() {
		if im.Annotations[k] != v {
			fail("index annotation %s = %q, want %q", k, im.Annotations[k], v)
		}
	}
	if len(im.Manifests) != len(oci.Platforms) {
		fail("the index has %d images, want %d (%v)", len(im.Manifests), len(oci.Platforms), oci.Platforms)
	}
	for _, p := range oci.Platforms {
		artifact := artifacts[o.Written.SBOMArtifacts[p.Arch]]
		delete(artifacts, o.Written.SBOMArtifacts[p.Arch])
		var found *v1.Descriptor
		for i, m := range im.Manifests {
			if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == p.Arch {
				found = &im.Manifests[i]
			}
		}
		if found == nil {
			fail("no image for %s in the index", p)
			continue
		}
		if found.Platform.Variant != p.Variant {
			fail("%s: platform variant %q, want %q", p, found.Platform.Variant, p.Variant)
		}
		img, err := idx.Image(found.Digest)
		if err != nil {
			fail("%s: %v", p, err)
			continue
		}
		if found.Digest.String() != o.Written.Manifests[p.Arch] {
			fail("%s: manifest %s, image.json says %s", p, found.Digest, o.Written.Manifests[p.Arch])
		}
		binary, imageErr := checkImage(img, p, o.Meta)
		if imageErr != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, imageErr))
		} else {
			fmt.Fprintf(o.Log, "ok  %s image %s: config, layer, static %s binary (%d bytes) built from %s\n", p, found.Digest, p.Arch, len(binary), o.Meta.Revision)
		}
		doc, err := checkSBOM(ctx, lp, o, p, *found, artifact, img)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s SBOM: %w", p, err))
		} else {
			how := "the binary's build information"
			if o.GoCommand != "" {
				how += " and `go version -m`"
			}
			fmt.Fprintf(o.Log, "ok  %s SBOM %s (SPDX 2.3, %d bytes): artifact %s with subject %s, the modules of %s, the layer's file hashes\n",
				p, o.Written.SBOMs[p.Arch], len(doc), o.Written.SBOMArtifacts[p.Arch], found.Digest, how)
		}
		if o.Rebuild != nil {
			errs = append(errs, sameSBOM(o, p.Arch, doc)...)
		}
		if imageErr != nil {
			continue
		}
		if err := checkArchive(filepath.Join(o.Dir, o.Written.Archives[p.Arch]), o.Written.Tag, img); err != nil {
			errs = append(errs, fmt.Errorf("%s archive: %w", p, err))
		} else {
			fmt.Fprintf(o.Log, "ok  %s archive %s holds the same config and layer\n", p, o.Written.Archives[p.Arch])
		}
		if p.Arch != runtime.GOARCH {
			continue
		}
		if err := runVersion(ctx, binary, o.Meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		} else {
			fmt.Fprintf(o.Log, "ok  %s binary runs `version` natively\n", p)
		}
		if o.HostBinary != "" {
			built, err := os.ReadFile(o.HostBinary)
			switch {
			case err != nil:
				fail("%s: %v", o.HostBinary, err)
			case !bytes.Equal(built, binary):
				fail("%s: the image's binary (sha256 %s) is not the one `make build` wrote to %s (sha256 %s)", p, sum(binary), o.HostBinary, sum(built))
			default:
				fmt.Fprintf(o.Log, "ok  %s binary is %s byte for byte (sha256 %s)\n", p, o.HostBinary, sum(binary))
			}
		}
	}
	for d := range artifacts {
		fail("index.json lists %s, which is neither the index nor an SBOM artifact image.json names", d)
	}
	if o.WantDigest != "" && len(errs) == 0 {
		fmt.Fprintf(o.Log, "ok  reproducible: a second build made the same index %s\n", o.WantDigest)
	}
	if o.Rebuild != nil && len(errs) == 0 {
		fmt.Fprintf(o.Log, "ok  reproducible: a second build made the same SBOM bytes and artifacts\n")
	}
	return errors.Join(errs...)
}

// sameSBOM wants the second build's SBOM of arch to be the same artifact and
// the same bytes.
func sameSBOM(o Options, arch string, doc []byte) []error {
	var errs []error
	if got, want := o.Rebuild.SBOMArtifacts[arch], o.Written.SBOMArtifacts[arch]; got != want {
		errs = append(errs, fmt.Errorf("not reproducible: the linux/%s SBOM artifact is %s, another build of the same commit made %s", arch, want, got))
	}
	again, err := os.ReadFile(filepath.Join(o.RebuildDir, o.Rebuild.SBOMs[arch]))
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("the second build's SBOM: %w", err))
	case doc != nil && !bytes.Equal(again, doc):
		errs = append(errs, fmt.Errorf("not reproducible: the linux/%s SBOM differs from the second build's %s", arch, filepath.Join(o.RebuildDir, o.Rebuild.SBOMs[arch])))
	}
	return errs
}

// checkImage checks one platform's image and returns its binary.
func checkImage(img v1.Image, p oci.Platform, meta oci.Meta) ([]byte, error) {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		fail("manifest media type %s, want %s", mt, types.OCIManifestSchema1)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if cf.OS != "linux" || cf.Architecture != p.Arch || cf.Variant != p.Variant {
		fail("config platform %s/%s/%s, want %s", cf.OS, cf.Architecture, cf.Variant, p)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{rootfs.Binary}) || len(c.Cmd) != 0 {
		fail("entrypoint %q cmd %q, want [%s] and no cmd (exec form: no shell)", c.Entrypoint, c.Cmd, rootfs.Binary)
	}
	if c.User != rootfs.User {
		fail("user %q, want %q (numeric, non-root: runAsNonRoot can check it)", c.User, rootfs.User)
	}
	if !cf.Created.Time.Equal(meta.Created) {
		fail("created %s, want the commit time %s", cf.Created.Time, meta.Created)
	}
	for k, v := range meta.Labels() {
		if c.Labels[k] != v {
			fail("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	if len(layers) != 1 {
		fail("%d layers, want 1", len(layers))
	}
	listing, contents, err := Listing(img)
	if err != nil {
		return nil, err
	}
	binary := contents[rootfs.Binary]
	want := map[string]fs.FileMode{}
	for _, f := range rootfs.Files(nil, nil) {
		want[f.Path] = f.Mode
	}
	for _, e := range listing {
		mode, ok := want[e.Path]
		switch {
		case !ok:
			fail("unexpected %s in the image (only the binary, CA certificates, passwd and group belong there)", e)
		case mode.IsDir() != (e.Type == tar.TypeDir) || (!mode.IsDir() && e.Type != tar.TypeReg):
			fail("%s: wrong type", e)
		case mode.Perm() != e.Mode:
			fail("%s: mode %s, want %s", e.Path, e.Mode, mode.Perm())
		case e.UID != 0 || e.GID != 0:
			fail("%s: owned by %d:%d, want root (the process must not be able to change it)", e.Path, e.UID, e.GID)
		}
		delete(want, e.Path)
	}
	for p := range want {
		fail("%s missing from the image", p)
	}
	if err := checkCAs(contents[rootfs.CACertificates]); err != nil {
		errs = append(errs, err)
	}
	if !strings.Contains(string(contents["/etc/passwd"]), ":65532:65532:") {
		fail("/etc/passwd does not name the user 65532")
	}
	if binary != nil {
		if err := checkBinary(binary, p, meta); err != nil {
			errs = append(errs, err)
		}
	}
	return binary, errors.Join(errs...)
}

// checkCAs wants a PEM file of many parseable CA certificates.
func checkCAs(data []byte) error {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return fmt.Errorf("%s: certificate %d: %w", rootfs.CACertificates, n+1, err)
		}
		if !c.IsCA {
			return fmt.Errorf("%s: certificate %q is not a CA", rootfs.CACertificates, c.Subject)
		}
		n++
	}
	if n < 100 {
		return fmt.Errorf("%s holds %d certificates, want the NSS roots (more than 100)", rootfs.CACertificates, n)
	}
	return nil
}

// elfMachines are the ELF machines of the shipped architectures.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// checkBinary reads the ELF header and Go's build information (what `go version
// -m` prints): the architecture, static linking, CGO off, -trimpath, the commit it
// was built from, and the version stamped by the Makefile.
func checkBinary(binary []byte, p oci.Platform, meta oci.Meta) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		return fmt.Errorf("%s is not an ELF file: %w", rootfs.Binary, err)
	}
	defer f.Close()
	if f.Class != elf.ELFCLASS64 || f.Machine != elfMachines[p.Arch] || f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		fail("ELF %s %s %s, want a 64-bit %s binary", f.Class, f.Machine, f.OSABI, elfMachines[p.Arch])
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			fail("the binary is dynamically linked (%s): the image has no libc", prog.Type)
		}
	}
	info, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("no Go build information: %w", err))...)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, v := range map[string]string{"GOOS": "linux", "GOARCH": p.Arch, "CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[k] != v {
			fail("built with %s=%q, want %q", k, settings[k], v)
		}
	}
	// -trimpath keeps -ldflags out of the build information; the stamped version is
	// a string in the data (run natively, `version` prints it: runVersion)
	if !bytes.Contains(binary, []byte(meta.Version)) {
		fail("the binary does not hold the version %s (-X main.version)", meta.Version)
	}
	if rev, ok := settings["vcs.revision"]; ok && rev != meta.Revision {
		fail("built from commit %s, want %s", rev, meta.Revision)
	}
	return errors.Join(errs...)
}

// runVersion runs the binary's `version` and wants the version in its output.
func runVersion(ctx context.Context, binary []byte, meta oci.Meta) error {
	dir, err := os.MkdirTemp("", "flagpole-image-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "flagpole")
	if err := os.WriteFile(path, binary, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("`flagpole version`: %w: %s", err, out)
	}
	if !strings.Contains(string(out), "flagpole "+meta.Version+" ") {
		return fmt.Errorf("`flagpole version` printed %q, want version %s", out, meta.Version)
	}
	return nil
}

// checkArchive wants the docker-save archive to hold img's config and layer under
// the tag (its manifest is Docker's, so compare the parts, not the digest).
func checkArchive(path, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	archived, err := tarball.ImageFromPath(path, &t)
	if err != nil {
		return err
	}
	got, err := archived.ConfigName()
	if err != nil {
		return err
	}
	want, err := img.ConfigName()
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("config %s, want %s", got, want)
	}
	gl, err := archived.Layers()
	if err != nil {
		return err
	}
	wl, err := img.Layers()
	if err != nil {
		return err
	}
	if len(gl) != len(wl) {
		return fmt.Errorf("%d layers, want %d", len(gl), len(wl))
	}
	for i := range gl {
		g, _ := gl[i].DiffID()
		w, _ := wl[i].DiffID()
		if g != w {
			return fmt.Errorf("layer %d is %s, want %s", i, g, w)
		}
	}
	return nil
}

// Same compares two images as a user sees them: the files (path, type, mode,
// owner, content) and the config that runs them (entrypoint, cmd, user, working
// directory, environment, labels, platform). It is how the Dockerfile's image is
// checked against the one built here (their digests differ: Docker writes its own
// timestamps and layer encoding).
func Same(ours, theirs v1.Image) error {
	var errs []error
	a, _, err := Listing(ours)
	if err != nil {
		return err
	}
	b, _, err := Listing(theirs)
	if err != nil {
		return err
	}
	as, bs := strs(a), strs(b)
	for _, e := range as {
		if !slices.Contains(bs, e) {
			errs = append(errs, fmt.Errorf("only in ours: %s", e))
		}
	}
	for _, e := range bs {
		if !slices.Contains(as, e) {
			errs = append(errs, fmt.Errorf("only in theirs: %s", e))
		}
	}
	ca, err := ours.ConfigFile()
	if err != nil {
		return err
	}
	cb, err := theirs.ConfigFile()
	if err != nil {
		return err
	}
	type view struct {
		Entrypoint, Cmd, Env []string
		User, WorkingDir     string
		Labels               map[string]string
		OS, Architecture     string
	}
	va := view{ca.Config.Entrypoint, ca.Config.Cmd, ca.Config.Env, ca.Config.User, ca.Config.WorkingDir, ca.Config.Labels, ca.OS, ca.Architecture}
	vb := view{cb.Config.Entrypoint, cb.Config.Cmd, cb.Config.Env, cb.Config.User, cb.Config.WorkingDir, cb.Config.Labels, cb.OS, cb.Architecture}
	if fmt.Sprintf("%+v", va) != fmt.Sprintf("%+v", vb) {
		errs = append(errs, fmt.Errorf("config differs:\n ours   %+v\n theirs %+v", va, vb))
	}
	return errors.Join(errs...)
}

func strs(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.String()
	}
	return out
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
