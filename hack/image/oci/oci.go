// Package oci assembles flagpole's multi-architecture image with
// go-containerregistry, with no Docker engine and no base image: one layer per
// architecture (package rootfs), an OCI config (entrypoint, non-root user, labels),
// an OCI image index over linux/amd64 and linux/arm64. Everything that goes into a
// digest is a function of the binaries and Meta, so two builds of one commit have
// the same digest.
package oci

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
	"github.com/flagpole-dev/flagpole/hack/image/sbom"
)

// OCI annotation and label keys (opencontainers image-spec, annotations.md).
const (
	LabelTitle       = "org.opencontainers.image.title"
	LabelDescription = "org.opencontainers.image.description"
	LabelVersion     = "org.opencontainers.image.version"
	LabelRevision    = "org.opencontainers.image.revision"
	LabelSource      = "org.opencontainers.image.source"
	LabelCreated     = "org.opencontainers.image.created"
	// AnnotationRefName names the index in the OCI layout (the tag); containerd's
	// importer reads the full name from AnnotationImageName.
	AnnotationRefName   = "org.opencontainers.image.ref.name"
	AnnotationImageName = "io.containerd.image.name"
)

// DefaultPath is the PATH of the image's config.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Meta is what the image says about itself.
type Meta struct {
	// Repository is the image name without a tag, e.g. ghcr.io/flagpole-dev/flagpole.
	Repository string
	// Version is the tag (git describe), Revision the full commit, Source the
	// repository URL.
	Version, Revision, Source string
	// Created is the commit time: every timestamp in the image (config, history,
	// file times) is this one, never the time of the build.
	Created time.Time
}

// Tag is Repository:Version.
func (m Meta) Tag() (name.Tag, error) {
	t, err := name.NewTag(m.Repository+":"+m.Version, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name %s:%s: %w", m.Repository, m.Version, err)
	}
	return t, nil
}

// Labels are the config labels (and the index's annotations).
func (m Meta) Labels() map[string]string {
	return map[string]string{
		LabelTitle:       "flagpole",
		LabelDescription: "The OpenFeature Operator and flagd in one binary: operator, injected sidecar, standalone flagd",
		LabelVersion:     m.Version,
		LabelRevision:    m.Revision,
		LabelSource:      m.Source,
		LabelCreated:     m.Created.UTC().Format(time.RFC3339),
	}
}

// Validate names what is missing.
func (m Meta) Validate() error {
	var errs []error
	for field, v := range map[string]string{"repository": m.Repository, "version": m.Version, "revision": m.Revision, "source": m.Source} {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("image metadata: no %s", field))
		}
	}
	if m.Created.IsZero() {
		errs = append(errs, errors.New("image metadata: no creation time (the commit time)"))
	}
	if len(errs) == 0 {
		if _, err := m.Tag(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Platform is one architecture of the image.
type Platform struct {
	// Arch is the GOARCH (amd64, arm64); Variant the OCI variant (v8 for arm64).
	Arch, Variant string
}

// Platforms are the architectures flagpole ships.
var Platforms = []Platform{{Arch: "amd64"}, {Arch: "arm64", Variant: "v8"}}

// V1 is the OCI platform.
func (p Platform) V1() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: p.Arch, Variant: p.Variant}
}

// String is os/arch[/variant].
func (p Platform) String() string { return p.V1().String() }

// Image builds the image of one platform from its binary.
func Image(meta Meta, p Platform, binary []byte) (v1.Image, error) {
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	ca, n := rootfs.CABundle()
	if n == 0 {
		return nil, errors.New("the CA bundle is empty")
	}
	layerTar, err := rootfs.Tar(rootfs.Files(binary, ca), meta.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(opener(layerTar), tarball.WithMediaType(types.OCILayer),
		tarball.WithCompressionLevel(gzip.BestCompression))
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: meta.Created.UTC()}
	cfg := &v1.ConfigFile{
		Architecture: p.Arch, Variant: p.Variant, OS: "linux", Created: created,
		Config: v1.Config{
			Entrypoint: []string{rootfs.Binary},
			User:       rootfs.User,
			WorkingDir: "/",
			// Docker sets this PATH on images built FROM scratch; the same here keeps
			// the Dockerfile's image identical. Nothing in the image is on it.
			Env:    []string{DefaultPath},
			Labels: meta.Labels(),
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
		History: v1.History{Created: created, CreatedBy: "flagpole hack/image: " + rootfs.Binary + ", CA certificates, /etc/passwd, /etc/group"}})
}

// Index puts one image per platform, in the order of Platforms, into an OCI
// image index annotated like the images.
func Index(meta Meta, images map[string]v1.Image) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range Platforms {
		img, ok := images[p.Arch]
		if !ok {
			return nil, fmt.Errorf("no image for %s", p)
		}
		plat := p.V1()
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	if len(images) != len(Platforms) {
		return nil, fmt.Errorf("images for %d platforms, want %d", len(images), len(Platforms))
	}
	withAnnotations, ok := mutate.Annotations(idx, meta.Labels()).(v1.ImageIndex)
	if !ok {
		return nil, errors.New("annotating the index did not return an index")
	}
	return withAnnotations, nil
}

// Written says what Write wrote, relative to its directory.
type Written struct {
	// Tag is the image name; Digest the index's digest (what a release pins).
	Tag    string `json:"tag"`
	Digest string `json:"digest"`
	// Layout is the OCI image layout directory (the index, both platforms).
	Layout string `json:"layout"`
	// Archives are docker-load-able tarballs (docker save format), one per
	// architecture, and Archive the one of the build machine's architecture.
	Archives map[string]string `json:"archives"`
	Archive  string            `json:"archive"`
	// Manifests are the per-architecture image manifest digests.
	Manifests map[string]string `json:"manifests"`
	// SBOMs are the per-architecture SPDX documents (flagpole-<version>-linux-<arch>.spdx.json),
	// the same bytes as the layer of the artifacts SBOMArtifacts names: the digests of
	// the OCI artifacts whose subject is the architecture's manifest.
	SBOMs         map[string]string `json:"sboms"`
	SBOMArtifacts map[string]string `json:"sbomArtifacts"`
	Version       string            `json:"version"`
	Revision      string            `json:"revision"`
}

// Write writes idx and its images into dir (which Write empties first): the OCI
// layout in dir/oci (index.json names the index by tag), one docker-save tarball
// per architecture, dir/flagpole-<version>-linux-<arch>.tar, and a copy of the
// hostArch one as dir/flagpole-<version>.tar. sboms holds the SPDX document of
// each architecture's image: it is written as dir/flagpole-<version>-linux-<arch>.spdx.json
// and, as an OCI artifact whose subject is that image's manifest, into the
// layout, whose index.json lists it after the index (untagged).
func Write(dir string, meta Meta, idx v1.ImageIndex, images map[string]v1.Image, sboms map[string][]byte, hostArch string) (Written, error) {
	tag, err := meta.Tag()
	if err != nil {
		return Written{}, err
	}
	digest, err := idx.Digest()
	if err != nil {
		return Written{}, err
	}
	w := Written{Tag: tag.String(), Digest: digest.String(), Layout: "oci", Archives: map[string]string{},
		Manifests: map[string]string{}, SBOMs: map[string]string{}, SBOMArtifacts: map[string]string{},
		Version: meta.Version, Revision: meta.Revision}
	im, err := idx.IndexManifest()
	if err != nil {
		return w, err
	}
	for _, sub := range []string{"oci", "rootfs"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			return w, err
		}
	}
	var old []string
	for _, pattern := range []string{"flagpole-*.tar", "flagpole-*.spdx.json", "sbom-linux-*.txt"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		old = append(old, m...)
	}
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			return w, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return w, err
	}
	lp, err := layout.Write(filepath.Join(dir, w.Layout), empty.Index)
	if err != nil {
		return w, err
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationRefName: meta.Version, AnnotationImageName: tag.String()})); err != nil {
		return w, err
	}
	arches := make([]string, 0, len(images))
	for arch := range images {
		arches = append(arches, arch)
	}
	slices.Sort(arches)
	for _, arch := range arches {
		img := images[arch]
		d, err := img.Digest()
		if err != nil {
			return w, err
		}
		w.Manifests[arch] = d.String()
		file := fmt.Sprintf("flagpole-%s-linux-%s.tar", meta.Version, arch)
		if err := tarball.WriteToFile(filepath.Join(dir, file), tag, img); err != nil {
			return w, fmt.Errorf("writing %s: %w", file, err)
		}
		w.Archives[arch] = file

		doc, ok := sboms[arch]
		if !ok {
			return w, fmt.Errorf("no SBOM for the %s image", arch)
		}
		var subject *v1.Descriptor
		for i, m := range im.Manifests {
			if m.Digest == d {
				subject = &im.Manifests[i]
			}
		}
		if subject == nil {
			return w, fmt.Errorf("the %s image %s is not in the index", arch, d)
		}
		sbomFile := SBOMFile(meta.Version, arch)
		artifact, err := Artifact{ArtifactType: SBOMMediaType, Subject: *subject, Title: sbomFile, Content: doc, Created: meta.Created}.Image()
		if err != nil {
			return w, err
		}
		if err := lp.AppendImage(artifact); err != nil {
			return w, fmt.Errorf("writing the %s SBOM artifact: %w", arch, err)
		}
		ad, err := artifact.Digest()
		if err != nil {
			return w, err
		}
		w.SBOMArtifacts[arch] = ad.String()
		if err := os.WriteFile(filepath.Join(dir, sbomFile), doc, 0o644); err != nil {
			return w, err
		}
		w.SBOMs[arch] = sbomFile
	}
	if len(sboms) != len(images) {
		return w, fmt.Errorf("SBOMs for %d architectures, images for %d", len(sboms), len(images))
	}
	if host, ok := w.Archives[hostArch]; ok {
		w.Archive = fmt.Sprintf("flagpole-%s.tar", meta.Version)
		if err := copyFile(filepath.Join(dir, host), filepath.Join(dir, w.Archive)); err != nil {
			return w, err
		}
	}
	return w, nil
}

// SBOMMediaType is the media type (and the artifactType) of the SBOMs: SPDX JSON.
const SBOMMediaType = sbom.MediaType

// SBOMFile is the name of an architecture's SBOM next to its archive.
func SBOMFile(version, arch string) string {
	return fmt.Sprintf("flagpole-%s-linux-%s.spdx.json", version, arch)
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

func opener(data []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}
