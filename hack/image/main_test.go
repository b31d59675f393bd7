package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/flagpole-dev/flagpole/hack/image/oci"
)

// buildImage runs `image build` on testdata/fakeflagpole for every platform.
func buildImage(t *testing.T) (string, oci.Written) {
	t.Helper()
	bins := t.TempDir()
	args := []string{"build", "-out", filepath.Join(t.TempDir(), "image"), "-repository", "ghcr.io/flagpole-dev/flagpole", "-version", "v9.9.9-test",
		"-revision", "0123456789abcdef0123456789abcdef01234567", "-created", "1767323045"}
	for _, p := range oci.Platforms {
		out := filepath.Join(bins, p.Arch)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.9.9-test", "-o", out, "./testdata/fakeflagpole")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.Arch)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, b)
		}
		args = append(args, "-binary", p.Arch+"="+out)
	}
	var log bytes.Buffer
	if err := run(context.Background(), args, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	dir := args[2]
	w, err := readRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "SPDX 2.3; OCI artifact "+w.SBOMArtifacts["amd64"]) {
		t.Errorf("build printed:\n%s", log.String())
	}
	return dir, w
}

// TestPushAttachesTheSBOMs pushes to a registry (go-containerregistry's, in this
// process, on 127.0.0.1) with and without the referrers API: either way a
// client asking for the referrers of a platform manifest finds its SBOM
// artifact (without the API, through the sha256-<hex> tag of the referrers tag
// schema that the push maintains), and the artifact's layer is the SBOM file.
func TestPushAttachesTheSBOMs(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of the user's
	dir, w := buildImage(t)
	for mode, referrersAPI := range map[string]bool{"referrers API": true, "tag schema": false} {
		t.Run(mode, func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.WithReferrersSupport(referrersAPI), registry.Logger(discardLogger())))
			defer srv.Close()
			repo := strings.TrimPrefix(srv.URL, "http://") + "/team/flagpole"
			var out bytes.Buffer
			if err := run(context.Background(), []string{"push", "-dir", dir, "-repository", repo}, &out); err != nil {
				t.Fatalf("push: %v\n%s", err, out.String())
			}
			if !strings.Contains(out.String(), repo+":v9.9.9-test@"+w.Digest) {
				t.Errorf("push printed:\n%s", out.String())
			}
			for _, p := range oci.Platforms {
				subject, err := name.NewDigest(repo + "@" + w.Manifests[p.Arch])
				if err != nil {
					t.Fatal(err)
				}
				refs, err := remote.Referrers(subject)
				if err != nil {
					t.Fatal(err)
				}
				im, err := refs.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != w.SBOMArtifacts[p.Arch] {
					t.Fatalf("%s: referrers %+v, want %s", p, im.Manifests, w.SBOMArtifacts[p.Arch])
				}
				art, err := remote.Image(subject.Context().Digest(w.SBOMArtifacts[p.Arch]))
				if err != nil {
					t.Fatal(err)
				}
				m, err := art.Manifest()
				if err != nil {
					t.Fatal(err)
				}
				if m.ArtifactType != "application/spdx+json" || m.Subject == nil || m.Subject.Digest.String() != w.Manifests[p.Arch] {
					t.Errorf("%s: pushed artifact %+v", p, m)
				}
				layers, _ := art.Layers()
				rc, err := layers[0].Compressed()
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(rc)
				want, _ := os.ReadFile(filepath.Join(dir, w.SBOMs[p.Arch]))
				if len(want) == 0 || !bytes.Equal(got, want) {
					t.Errorf("%s: the pushed SBOM is not %s", p, w.SBOMs[p.Arch])
				}
				// without the API, the referrers index lives under the fallback tag
				h, _ := v1.NewHash(w.Manifests[p.Arch])
				_, err = remote.Head(subject.Context().Tag(h.Algorithm + "-" + h.Hex))
				if referrersAPI == (err == nil) {
					t.Errorf("%s: fallback tag with the referrers API %v: %v", p, referrersAPI, err)
				}
			}
		})
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
