// Package rootfs is the file tree of flagpole's image: the static binary, the CA
// certificates of Mozilla's NSS trust store (pinned through
// golang.org/x/crypto/x509roots/fallback in this module's go.mod, so two builds of
// one commit hold the same bytes) and a minimal /etc/passwd and /etc/group naming
// the non-root user 65532. No shell, no package manager, nothing else.
//
// The tree is written either as one deterministic tar layer (Tar: sorted entries,
// one fixed modification time, owner root, no user or group names) or as a
// directory (WriteDir), the build context of the Dockerfile.
package rootfs

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Paths and identity inside the image.
const (
	// Binary is the path of the flagpole binary, the image's entrypoint.
	Binary = "/flagpole"
	// CACertificates is where Go's crypto/x509 looks first on Linux.
	CACertificates = "/etc/ssl/certs/ca-certificates.crt"
	// UID and GID of the user the image runs as ("nonroot", as distroless names it).
	UID, GID = 65532, 65532
	// User is the image config's User: numeric, so that runAsNonRoot can check it.
	User = "65532:65532"
)

// File is one entry of the tree. Every entry is owned by root; the process runs as
// UID and can write nothing of it.
type File struct {
	// Path is absolute, without a trailing slash.
	Path string
	// Mode holds the permission bits, and fs.ModeDir for a directory.
	Mode fs.FileMode
	// Data is the content of a regular file.
	Data []byte
}

// passwd and group name root and the non-root user; the login shell does not
// exist (there is no shell in the image) and neither does the home directory.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// Files returns the tree for a binary, sorted by path, directories before their
// contents.
func Files(binary, caCertificates []byte) []File {
	files := []File{
		{Path: "/etc", Mode: fs.ModeDir | 0o755},
		{Path: "/etc/group", Mode: 0o644, Data: []byte(group)},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte(passwd)},
		{Path: "/etc/ssl", Mode: fs.ModeDir | 0o755},
		{Path: "/etc/ssl/certs", Mode: fs.ModeDir | 0o755},
		{Path: CACertificates, Mode: 0o644, Data: caCertificates},
		{Path: Binary, Mode: 0o755, Data: binary},
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// CABundle returns the PEM bundle of the NSS roots trusted for server
// authentication without further constraints, and how many it holds. Roots NSS
// distrusts for certificates issued after a date cannot be expressed in a PEM file
// and are left out (a client honouring the file alone would trust them forever).
func CABundle() ([]byte, int) {
	var buf bytes.Buffer
	n := 0
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate})
		n++
	}
	return buf.Bytes(), n
}

// CABundleSource is the module CABundle's certificates come from, as this
// program's build information names it (version and go.sum hash), or nil when
// the program has no build information.
func CABundleSource() *debug.Module {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	for _, d := range info.Deps {
		if d.Path == CABundleModule {
			return d
		}
	}
	return nil
}

// CABundleModule is the Go module whose bundle package holds the CA roots.
const CABundleModule = "golang.org/x/crypto/x509roots/fallback"

// Tar writes files as an uncompressed tar stream, as a layer holds it: names
// relative to the root ("etc/passwd", "etc/ssl/"), PAX-free USTAR headers, owner
// 0:0, every time mtime. The same files and mtime give the same bytes.
func Tar(files []File, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)
	for _, f := range files {
		if err := checkPath(f.Path); err != nil {
			return nil, err
		}
		h := &tar.Header{Name: strings.TrimPrefix(f.Path, "/"), Mode: int64(f.Mode.Perm()), ModTime: mtime, Format: tar.FormatUSTAR}
		if f.Mode.IsDir() {
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteDir writes files under dir (which must not exist yet, so nothing stale is
// left in a build context) with their modes; ownership is the caller's (the
// Dockerfile's COPY makes everything root's, as in Tar).
func WriteDir(dir string, files []File) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("%s exists: remove it first", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := checkPath(f.Path); err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if f.Mode.IsDir() {
			if err := os.Mkdir(p, f.Mode.Perm()); err != nil {
				return err
			}
		} else if err := os.WriteFile(p, f.Data, f.Mode.Perm()); err != nil {
			return err
		}
		// the umask may have narrowed the mode
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}

// checkPath refuses paths that are not absolute and clean.
func checkPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
		return fmt.Errorf("rootfs path %q: want an absolute, clean path below /", p)
	}
	return nil
}
