// Command image builds, verifies and pushes flagpole's multi-architecture OCI
// image without a Docker engine (`make image`, `make image-verify`, `make
// image-push`; docs/install.md, "The image").
//
//	image build  -out bin/image -binary amd64=bin/linux_amd64/flagpole -binary arm64=... <meta flags>
//	image verify -dir bin/image [-host-binary bin/flagpole] [-want-digest sha256:...] [-rebuild dir] [-go go] <meta flags>
//	image digest -dir bin/image          # the index digest of the last build
//	image same   -dir bin/image -arch amd64 -archive docker-save.tar -tag name:tag
//	image push   -dir bin/image -repository registry.example/flagpole
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
	"github.com/flagpole-dev/flagpole/hack/image/verify"
)

// recordFile is the build's record in the output directory.
const recordFile = "image.json"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a command: build, verify, digest, same or push")
	}
	cmd, args := args[0], args[1:]
	fl := flag.NewFlagSet(cmd, flag.ContinueOnError)
	dir := fl.String("dir", "bin/image", "the build's output directory")
	var meta metaFlags
	switch cmd {
	case "build":
		fl.StringVar(dir, "out", "bin/image", "output directory (emptied of a previous build's image)")
		meta.register(fl)
		binaries := map[string]string{}
		fl.Func("binary", "arch=path of a static linux binary, once per architecture", func(s string) error {
			arch, path, ok := strings.Cut(s, "=")
			if !ok || arch == "" || path == "" {
				return fmt.Errorf("-binary %q: want arch=path", s)
			}
			binaries[arch] = path
			return nil
		})
		if err := fl.Parse(args); err != nil {
			return err
		}
		m, err := meta.meta()
		if err != nil {
			return err
		}
		return build(*dir, m, binaries, out)
	case "verify":
		meta.register(fl)
		host := fl.String("host-binary", "", "the binary `make build` wrote: the image's binary for this machine's architecture must be identical")
		want := fl.String("want-digest", "", "the index digest of an independent build of the same commit")
		rebuild := fl.String("rebuild", "", "the output directory of an independent build of the same commit: its SBOMs must be the same bytes")
		goCmd := fl.String("go", "", "the go command: `go version -m` of each binary must list the modules of its SBOM")
		if err := fl.Parse(args); err != nil {
			return err
		}
		m, err := meta.meta()
		if err != nil {
			return err
		}
		w, err := readRecord(*dir)
		if err != nil {
			return err
		}
		o := verify.Options{Dir: *dir, Meta: m, Written: w, HostBinary: *host, WantDigest: *want, GoCommand: *goCmd, Log: out}
		if *rebuild != "" {
			again, err := readRecord(*rebuild)
			if err != nil {
				return err
			}
			o.Rebuild, o.RebuildDir = &again, *rebuild
		}
		if err := verify.Verify(ctx, o); err != nil {
			return fmt.Errorf("the image in %s fails verification:\n%w", *dir, err)
		}
		return nil
	case "digest":
		if err := fl.Parse(args); err != nil {
			return err
		}
		w, err := readRecord(*dir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, w.Digest)
		return err
	case "same":
		arch := fl.String("arch", runtime.GOARCH, "architecture of ours to compare")
		archive := fl.String("archive", "", "a docker-save archive (e.g. of the Dockerfile's image)")
		tag := fl.String("tag", "", "the image's tag in the archive")
		if err := fl.Parse(args); err != nil {
			return err
		}
		return same(*dir, *arch, *archive, *tag, out)
	case "push":
		repo := fl.String("repository", "", "where to push, e.g. registry.example.com/team/flagpole (tag: the version)")
		if err := fl.Parse(args); err != nil {
			return err
		}
		return push(ctx, *dir, *repo, out)
	default:
		return fmt.Errorf("unknown command %q: want build, verify, digest, same or push", cmd)
	}
}

// metaFlags read oci.Meta from the command line.
type metaFlags struct {
	repository, version, revision, source, created string
}

func (m *metaFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&m.repository, "repository", "ghcr.io/flagpole-dev/flagpole", "image name without tag")
	fl.StringVar(&m.version, "version", "", "version (the tag), from git describe")
	fl.StringVar(&m.revision, "revision", "", "full commit id")
	fl.StringVar(&m.source, "source", "https://github.com/flagpole-dev/flagpole", "source repository URL")
	fl.StringVar(&m.created, "created", "", "commit time: Unix seconds (SOURCE_DATE_EPOCH) or RFC 3339")
}

func (m metaFlags) meta() (oci.Meta, error) {
	var created time.Time
	if secs, err := strconv.ParseInt(m.created, 10, 64); err == nil {
		created = time.Unix(secs, 0).UTC()
	} else if t, err := time.Parse(time.RFC3339, m.created); err == nil {
		created = t.UTC()
	} else {
		return oci.Meta{}, fmt.Errorf("-created %q: want Unix seconds or an RFC 3339 time", m.created)
	}
	meta := oci.Meta{Repository: m.repository, Version: m.version, Revision: m.revision, Source: m.source, Created: created}
	return meta, meta.Validate()
}

// build assembles the image of every platform and its SBOM, and writes the
// layout (the index and, referring to each image, its SBOM artifact), the
// archives, the SBOM files, the record and the Dockerfile's build context
// (rootfs/linux_<arch>).
func build(dir string, meta oci.Meta, binaries map[string]string, out io.Writer) error {
	images := map[string]v1.Image{}
	contents := map[string][]byte{}
	for _, p := range oci.Platforms {
		path, ok := binaries[p.Arch]
		if !ok {
			return fmt.Errorf("no -binary %s=...", p.Arch)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		img, err := oci.Image(meta, p, data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		images[p.Arch], contents[p.Arch] = img, data
	}
	if len(binaries) != len(oci.Platforms) {
		return fmt.Errorf("-binary given for %d architectures, want exactly %v", len(binaries), oci.Platforms)
	}
	idx, err := oci.Index(meta, images)
	if err != nil {
		return err
	}
	ca, _ := rootfs.CABundle()
	caSource := rootfs.CABundleSource()
	if caSource == nil {
		return fmt.Errorf("the image tool has no build information naming %s (the CA bundle's source)", rootfs.CABundleModule)
	}
	sboms := map[string][]byte{}
	for _, p := range oci.Platforms {
		doc, err := oci.SBOM(meta, p, images[p.Arch], rootfs.Files(contents[p.Arch], ca), caSource)
		if err != nil {
			return fmt.Errorf("%s SBOM: %w", p, err)
		}
		sboms[p.Arch] = doc
	}
	w, err := oci.Write(dir, meta, idx, images, sboms, runtime.GOARCH)
	if err != nil {
		return err
	}
	for arch, data := range contents {
		if err := rootfs.WriteDir(filepath.Join(dir, "rootfs", "linux_"+arch), rootfs.Files(data, ca)); err != nil {
			return err
		}
	}
	record, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, recordFile), append(record, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "image %s@%s\n  OCI layout  %s\n", w.Tag, w.Digest, filepath.Join(dir, w.Layout))
	for _, p := range oci.Platforms {
		fmt.Fprintf(out, "  %-11s %s (manifest %s)\n", p, filepath.Join(dir, w.Archives[p.Arch]), w.Manifests[p.Arch])
		fmt.Fprintf(out, "  %-11s %s (SPDX 2.3; OCI artifact %s, subject the manifest)\n", "", filepath.Join(dir, w.SBOMs[p.Arch]), w.SBOMArtifacts[p.Arch])
	}
	if w.Archive != "" {
		fmt.Fprintf(out, "  docker load -i %s   (this machine's architecture)\n", filepath.Join(dir, w.Archive))
	}
	return nil
}

func readRecord(dir string) (oci.Written, error) {
	var w oci.Written
	data, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return w, fmt.Errorf("no image built in %s (run make image): %w", dir, err)
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return w, fmt.Errorf("%s: %w", filepath.Join(dir, recordFile), err)
	}
	return w, nil
}

// ourImage reads the image of arch from the build's layout.
func ourImage(dir, arch string) (v1.Image, oci.Written, error) {
	w, err := readRecord(dir)
	if err != nil {
		return nil, w, err
	}
	lp, err := layout.FromPath(filepath.Join(dir, w.Layout))
	if err != nil {
		return nil, w, err
	}
	d, ok := w.Manifests[arch]
	if !ok {
		return nil, w, fmt.Errorf("no %s image in %s", arch, dir)
	}
	ih, err := v1.NewHash(w.Digest)
	if err != nil {
		return nil, w, err
	}
	h, err := v1.NewHash(d)
	if err != nil {
		return nil, w, err
	}
	top, err := lp.ImageIndex()
	if err != nil {
		return nil, w, err
	}
	idx, err := top.ImageIndex(ih)
	if err != nil {
		return nil, w, err
	}
	img, err := idx.Image(h)
	return img, w, err
}

func same(dir, arch, archive, tag string, out io.Writer) error {
	ours, _, err := ourImage(dir, arch)
	if err != nil {
		return err
	}
	var t *name.Tag
	if tag != "" {
		parsed, err := name.NewTag(tag)
		if err != nil {
			return err
		}
		t = &parsed
	}
	theirs, err := tarball.ImageFromPath(archive, t)
	if err != nil {
		return fmt.Errorf("%s: %w", archive, err)
	}
	if err := verify.Same(ours, theirs); err != nil {
		return fmt.Errorf("the image in %s is not the one built here:\n%w", archive, err)
	}
	fmt.Fprintf(out, "ok  %s holds the same files and config as our linux/%s image\n", archive, arch)
	return nil
}

// push writes the index and both images to repository:version, then each
// image's SBOM artifact, and prints the pinned reference. Credentials come from the Docker config (docker login, or
// credential helpers), never from flags.
func push(ctx context.Context, dir, repository string, out io.Writer) error {
	if repository == "" {
		return errors.New("push: no -repository (make image-push REGISTRY=registry.example.com/team)")
	}
	w, err := readRecord(dir)
	if err != nil {
		return err
	}
	ref, err := name.NewTag(repository+":"+w.Version, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	lp, err := layout.FromPath(filepath.Join(dir, w.Layout))
	if err != nil {
		return err
	}
	h, err := v1.NewHash(w.Digest)
	if err != nil {
		return err
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return err
	}
	ii, err := idx.ImageIndex(h)
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if err := remote.WriteIndex(ref, ii, opts...); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	// each SBOM artifact by digest, after its subject: a registry with the
	// referrers API lists it under the image's manifest; for one without,
	// go-containerregistry adds it to the index tagged sha256-<manifest hex> (the
	// referrers tag schema of the distribution spec), which clients read instead.
	for _, p := range oci.Platforms {
		d, ok := w.SBOMArtifacts[p.Arch]
		if !ok {
			return fmt.Errorf("push: %s names no SBOM artifact for %s (run make image)", recordFile, p)
		}
		h, err := v1.NewHash(d)
		if err != nil {
			return err
		}
		artifact, err := lp.Image(h)
		if err != nil {
			return fmt.Errorf("push: the %s SBOM artifact: %w", p, err)
		}
		if err := remote.Write(ref.Context().Digest(d), artifact, opts...); err != nil {
			return fmt.Errorf("push the %s SBOM %s: %w", p, d, err)
		}
		fmt.Fprintf(out, "%s@%s  SBOM of %s (subject %s)\n", ref.Context(), d, p, w.Manifests[p.Arch])
	}
	fmt.Fprintf(out, "%s@%s\n", ref, w.Digest)
	return nil
}
