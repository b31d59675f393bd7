package oci

import (
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func testMeta() Meta {
	return Meta{Repository: "ghcr.io/flagpole-dev/flagpole", Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567",
		Source: "https://github.com/flagpole-dev/flagpole", Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func index(t *testing.T, meta Meta, bin string) v1.Hash {
	t.Helper()
	images := map[string]v1.Image{}
	for _, p := range Platforms {
		img, err := Image(meta, p, []byte(bin+p.Arch))
		if err != nil {
			t.Fatal(err)
		}
		images[p.Arch] = img
	}
	idx, err := Index(meta, images)
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestSameInputsSameDigest(t *testing.T) {
	a, b := index(t, testMeta(), "bin"), index(t, testMeta(), "bin")
	if a != b {
		t.Fatalf("two builds: %s and %s", a, b)
	}
	later := testMeta()
	later.Created = later.Created.Add(time.Second)
	if index(t, later, "bin") == a {
		t.Error("the commit time does not reach the digest")
	}
	if index(t, testMeta(), "other") == a {
		t.Error("the binary does not reach the digest")
	}
}

func TestImageConfig(t *testing.T) {
	img, err := Image(testMeta(), Platforms[1], []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != "arm64" || cf.Variant != "v8" || cf.OS != "linux" || cf.Config.User != "65532:65532" ||
		len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/flagpole" || cf.Config.Labels[LabelVersion] != "v1.2.3" ||
		!cf.Created.Equal(testMeta().Created) {
		t.Errorf("config %+v", cf)
	}
	if len(cf.RootFS.DiffIDs) != 1 || len(cf.History) != 1 {
		t.Errorf("rootfs %+v history %+v", cf.RootFS, cf.History)
	}
}

func TestMetaValidate(t *testing.T) {
	m := testMeta()
	m.Version = "bad tag!"
	if err := m.Validate(); err == nil {
		t.Error("an invalid tag passed")
	}
	if err := (Meta{}).Validate(); err == nil {
		t.Error("empty metadata passed")
	}
}
