package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/flagpole-dev/flagpole/hack/image/rootfs"
	"github.com/flagpole-dev/flagpole/hack/image/sbom"
)

// AnnotationTitle names a layer's file (`oras pull` writes the blob under it).
const AnnotationTitle = "org.opencontainers.image.title"

// EmptyJSON is the content of the OCI empty descriptor, the config of an
// artifact without one (image-spec manifest.md, "Guidance for an empty
// descriptor").
var EmptyJSON = []byte("{}")

// EmptyDescriptor is the descriptor of EmptyJSON, with its data inlined as the
// image-spec's reference code writes it.
func EmptyDescriptor() v1.Descriptor {
	h, n, _ := v1.SHA256(bytes.NewReader(EmptyJSON))
	return v1.Descriptor{MediaType: types.OCIEmptyJSON, Digest: h, Size: n, Data: EmptyJSON}
}

// Artifact is an OCI 1.1 artifact that refers to another manifest: an image
// manifest with artifactType, the empty config, one layer holding the content
// and subject = the manifest it is about (image-spec manifest.md, "Guidelines
// for Artifact Usage", case 2). A registry with the referrers API lists it under
// the subject's digest; in an OCI layout, index.json lists it.
type Artifact struct {
	// ArtifactType is also the layer's media type (application/spdx+json).
	ArtifactType string
	// Subject is the descriptor of the manifest the artifact is about; only its
	// media type, digest and size are kept.
	Subject v1.Descriptor
	// Title is the file name of the content (the layer's title annotation).
	Title string
	// Content is the layer.
	Content []byte
	// Created is the commit time (the manifest's created annotation, which
	// referrer listings sort by).
	Created time.Time
}

// Image returns the artifact as a v1.Image, so that layout.AppendImage and
// remote.Write store and push it like any manifest (remote.Write also updates a
// registry's referrers tag when it has no referrers API).
func (a Artifact) Image() (v1.Image, error) {
	if a.ArtifactType == "" || a.Title == "" || len(a.Content) == 0 || a.Created.IsZero() {
		return nil, errors.New("artifact: want an artifact type, a title, content and a creation time")
	}
	switch a.Subject.MediaType {
	case types.OCIManifestSchema1, types.OCIImageIndex:
	default:
		return nil, fmt.Errorf("artifact: subject media type %q, want an OCI manifest or index", a.Subject.MediaType)
	}
	if a.Subject.Digest.Algorithm != "sha256" || a.Subject.Size <= 0 {
		return nil, fmt.Errorf("artifact: subject %s of size %d is not a sha256 descriptor", a.Subject.Digest, a.Subject.Size)
	}
	layerDigest, layerSize, err := v1.SHA256(bytes.NewReader(a.Content))
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  a.ArtifactType,
		Config:        EmptyDescriptor(),
		Layers: []v1.Descriptor{{MediaType: types.MediaType(a.ArtifactType), Digest: layerDigest, Size: layerSize,
			Annotations: map[string]string{AnnotationTitle: a.Title}}},
		Subject:     &v1.Descriptor{MediaType: a.Subject.MediaType, Digest: a.Subject.Digest, Size: a.Subject.Size},
		Annotations: map[string]string{LabelCreated: a.Created.UTC().Format(time.RFC3339)},
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifactCore{manifest: raw, layer: layerDigest,
		content: a.Content, mediaType: types.MediaType(a.ArtifactType)})
}

// artifactCore is the minimum partial.CompressedToImage needs: the manifest, the
// (empty) config and the one layer.
type artifactCore struct {
	manifest, content []byte
	layer             v1.Hash
	mediaType         types.MediaType
}

func (c *artifactCore) RawConfigFile() ([]byte, error)      { return EmptyJSON, nil }
func (c *artifactCore) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (c *artifactCore) RawManifest() ([]byte, error)        { return c.manifest, nil }

func (c *artifactCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	switch h {
	case c.layer:
		return static.NewLayer(c.content, c.mediaType), nil
	case EmptyDescriptor().Digest:
		return static.NewLayer(EmptyJSON, types.OCIEmptyJSON), nil
	}
	return nil, fmt.Errorf("artifact: no blob %s", h)
}

// SBOM writes the SPDX document of one platform's image: img is the image,
// files the tree its layer holds (rootfs.Files of its binary), caSource the module
// the CA bundle comes from (nil: not named).
func SBOM(meta Meta, p Platform, img v1.Image, files []rootfs.File, caSource *debug.Module) ([]byte, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	doc, err := sbom.Generate(sbom.Input{Repository: meta.Repository, Version: meta.Version, Revision: meta.Revision,
		Source: meta.Source, Created: meta.Created, Platform: p.V1(), Manifest: d, Files: files, CASource: caSource})
	if err != nil {
		return nil, err
	}
	return sbom.Marshal(doc)
}
