package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasoci "oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
)

// testImages builds both platform images of a made-up binary and their index.
func testImages(t *testing.T) (v1.ImageIndex, map[string]v1.Image) {
	t.Helper()
	images := map[string]v1.Image{}
	for _, p := range Platforms {
		img, err := Image(testMeta(), p, []byte("bin"+p.Arch))
		if err != nil {
			t.Fatal(err)
		}
		images[p.Arch] = img
	}
	idx, err := Index(testMeta(), images)
	if err != nil {
		t.Fatal(err)
	}
	return idx, images
}

func subjectOf(t *testing.T, idx v1.ImageIndex, img v1.Image) v1.Descriptor {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		if m.Digest == d {
			return m
		}
	}
	t.Fatalf("%s not in the index", d)
	return v1.Descriptor{}
}

// TestSBOMArtifactDescriptors checks the referrer's manifest against the
// image-spec's guidelines for artifacts: artifactType, the empty config, one
// layer of the SBOM's media type named by its title, subject = the image's
// descriptor (media type, digest, size), the commit time; and that every tool
// computing its descriptor sees the artifactType.
func TestSBOMArtifactDescriptors(t *testing.T) {
	idx, images := testImages(t)
	subject := subjectOf(t, idx, images["arm64"])
	doc := []byte(`{"spdxVersion":"SPDX-2.3"}` + "\n")
	a := Artifact{ArtifactType: SBOMMediaType, Subject: subject, Title: "flagpole-v1.2.3-linux-arm64.spdx.json", Content: doc, Created: testMeta().Created}
	img, err := a.Image()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        map[string]any    `json:"config"`
		Layers        []map[string]any  `json:"layers"`
		Subject       map[string]any    `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(doc)
	if m.SchemaVersion != 2 || m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.ArtifactType != "application/spdx+json" {
		t.Errorf("manifest %s", raw)
	}
	if m.Config["mediaType"] != "application/vnd.oci.empty.v1+json" || m.Config["digest"] != "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a" ||
		m.Config["size"] != float64(2) || m.Config["data"] != "e30=" {
		t.Errorf("config %v, want the empty descriptor", m.Config)
	}
	if len(m.Layers) != 1 || m.Layers[0]["mediaType"] != "application/spdx+json" || m.Layers[0]["digest"] != "sha256:"+hex.EncodeToString(sum[:]) ||
		m.Layers[0]["size"] != float64(len(doc)) || m.Layers[0]["annotations"].(map[string]any)["org.opencontainers.image.title"] != a.Title {
		t.Errorf("layers %v", m.Layers)
	}
	if len(m.Subject) != 3 || m.Subject["mediaType"] != string(subject.MediaType) || m.Subject["digest"] != subject.Digest.String() || m.Subject["size"] != float64(subject.Size) {
		t.Errorf("subject %v, want %v without its platform", m.Subject, subject)
	}
	if m.Annotations["org.opencontainers.image.created"] != "2026-01-02T03:04:05Z" {
		t.Errorf("annotations %v", m.Annotations)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	if desc.ArtifactType != "application/spdx+json" || desc.MediaType != types.OCIManifestSchema1 {
		t.Errorf("descriptor %+v", desc)
	}
	// its blobs are what the manifest says
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v %v", layers, err)
	}
	rc, _ := layers[0].Compressed()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, doc) {
		t.Errorf("layer %q", got)
	}
	if cfg, _ := img.RawConfigFile(); string(cfg) != "{}" {
		t.Errorf("config %q", cfg)
	}
	// deterministic
	again, _ := a.Image()
	if d1, d2 := digest(t, img), digest(t, again); d1 != d2 {
		t.Errorf("two artifacts of one input: %s, %s", d1, d2)
	}
}

func TestSBOMArtifactRefuses(t *testing.T) {
	idx, images := testImages(t)
	good := Artifact{ArtifactType: SBOMMediaType, Subject: subjectOf(t, idx, images["amd64"]), Title: "x.spdx.json", Content: []byte("{}"), Created: testMeta().Created}
	for name, edit := range map[string]func(*Artifact){
		"docker subject": func(a *Artifact) { a.Subject.MediaType = types.DockerManifestSchema2 },
		"no subject":     func(a *Artifact) { a.Subject = v1.Descriptor{} },
		"no content":     func(a *Artifact) { a.Content = nil },
		"no time":        func(a *Artifact) { a.Created = time.Time{} },
	} {
		a := good
		edit(&a)
		if _, err := a.Image(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestWriteAttachesSBOMs: the layout's index.json lists the image index (tagged)
// and, untagged, one SBOM artifact per platform whose subject is that
// platform's manifest; the SBOM files lie next to the archives; the index digest
// is the one without SBOMs (a release pins it).
func TestWriteAttachesSBOMs(t *testing.T) {
	idx, images := testImages(t)
	sboms := map[string][]byte{"amd64": []byte("{\"a\":1}\n"), "arm64": []byte("{\"b\":2}\n")}
	dir := t.TempDir()
	w, err := Write(dir, testMeta(), idx, images, sboms, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	lp, err := layout.FromPath(filepath.Join(dir, w.Layout))
	if err != nil {
		t.Fatal(err)
	}
	top, _ := lp.ImageIndex()
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 3 || im.Manifests[0].MediaType != types.OCIImageIndex || im.Manifests[0].Digest.String() != w.Digest ||
		im.Manifests[0].Annotations[AnnotationRefName] != "v1.2.3" {
		t.Fatalf("index.json %+v", im.Manifests)
	}
	if d, _ := idx.Digest(); d.String() != w.Digest {
		t.Errorf("index digest %s, want %s", w.Digest, d)
	}
	for i, arch := range []string{"amd64", "arm64"} {
		desc := im.Manifests[1+i]
		if desc.ArtifactType != SBOMMediaType || desc.Digest.String() != w.SBOMArtifacts[arch] || desc.Annotations[AnnotationRefName] != "" {
			t.Errorf("index.json entry %d: %+v", 1+i, desc)
		}
		art, err := lp.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := art.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject == nil || m.Subject.Digest.String() != w.Manifests[arch] || m.Layers[0].Annotations[AnnotationTitle] != "flagpole-v1.2.3-linux-"+arch+".spdx.json" {
			t.Errorf("%s artifact %+v", arch, m)
		}
		file, err := os.ReadFile(filepath.Join(dir, w.SBOMs[arch]))
		if err != nil || !bytes.Equal(file, sboms[arch]) || w.SBOMs[arch] != "flagpole-v1.2.3-linux-"+arch+".spdx.json" {
			t.Errorf("%s SBOM file %q: %q %v", arch, w.SBOMs[arch], file, err)
		}
	}
	delete(sboms, "arm64")
	if _, err := Write(t.TempDir(), testMeta(), idx, images, sboms, "amd64"); err == nil || !strings.Contains(err.Error(), "no SBOM for the arm64 image") {
		t.Errorf("without an SBOM: %v", err)
	}
}

// TestORASFindsTheSBOM reads the layout with ORAS's Go library as `oras discover
// --oci-layout --platform linux/<arch> <layout>:<version>` does (resolve the tag
// to the platform's manifest, then list its referrers): each platform manifest's
// referrer is its SBOM artifact, and its layer is the document.
func TestORASFindsTheSBOM(t *testing.T) {
	idx, images := testImages(t)
	sboms := map[string][]byte{"amd64": []byte("{\"a\":1}\n"), "arm64": []byte("{\"b\":2}\n")}
	dir := t.TempDir()
	w, err := Write(dir, testMeta(), idx, images, sboms, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := orasoci.NewWithContext(ctx, filepath.Join(dir, w.Layout))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Platforms {
		arch, doc := p.Arch, sboms[p.Arch]
		// `oras discover --oci-layout --platform linux/<arch> <layout>:v1.2.3`
		subject, err := oras.Resolve(ctx, store, "v1.2.3", oras.ResolveOptions{TargetPlatform: &ocispec.Platform{OS: "linux", Architecture: arch, Variant: p.Variant}})
		if err != nil {
			t.Fatal(err)
		}
		if subject.Digest.String() != w.Manifests[arch] {
			t.Fatalf("%s resolves to %s, want %s", arch, subject.Digest, w.Manifests[arch])
		}
		refs, err := registry.Referrers(ctx, store, subject, SBOMMediaType)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != 1 || refs[0].Digest.String() != w.SBOMArtifacts[arch] || refs[0].ArtifactType != SBOMMediaType {
			t.Fatalf("%s: referrers %+v, want the artifact %s", arch, refs, w.SBOMArtifacts[arch])
		}
		raw, err := content.FetchAll(ctx, store, refs[0])
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		got, err := content.FetchAll(ctx, store, m.Layers[0])
		if err != nil || !bytes.Equal(got, doc) {
			t.Errorf("%s: layer %q %v", arch, got, err)
		}
	}
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
