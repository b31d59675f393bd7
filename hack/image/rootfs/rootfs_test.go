package rootfs

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTarIsDeterministicAndRootOwned(t *testing.T) {
	files := Files([]byte("binary"), []byte("certs"))
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a, err := Tar(files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Tar(Files([]byte("binary"), []byte("certs")), mtime.In(time.FixedZone("x", 3600)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two tars of the same files and time differ")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: owner %d:%d %q, time %s", h.Name, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
		if h.Name == "flagpole" && h.Mode != 0o755 {
			t.Errorf("binary mode %o", h.Mode)
		}
	}
	want := []string{"etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "flagpole"}
	if len(names) != len(want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("entries %q, want %q", names, want)
		}
	}
}

func TestTarRefusesBadPaths(t *testing.T) {
	for _, p := range []string{"etc/passwd", "/etc/../passwd", "/", "/etc/"} {
		if _, err := Tar([]File{{Path: p, Mode: 0o644}}, time.Unix(0, 0)); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

func TestCABundleParses(t *testing.T) {
	data, n := CABundle()
	if n < 100 {
		t.Fatalf("%d roots", n)
	}
	got := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Fatal(err)
		}
		got++
	}
	if got != n {
		t.Fatalf("%d certificates in the PEM, CABundle said %d", got, n)
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := WriteDir(dir, Files([]byte("bin"), []byte("ca"))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "flagpole"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("binary mode %s", fi.Mode())
	}
	if err := WriteDir(dir, nil); err == nil {
		t.Error("an existing directory was written into")
	}
}
