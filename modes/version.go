package modes

import (
	"fmt"
	"strings"
)

// VersionCmd prints the build information, and the image the process runs from
// when the install says so (FLAGPOLE_IMAGE: deploy/ sets it to the operator
// container's own image reference, digest-pinned in release manifests).
type VersionCmd struct {
	Image string `name:"image" hidden:"" env:"FLAGPOLE_IMAGE" help:"The image reference this binary runs from (set by the install)."`
}

// Run prints "flagpole <version> (commit <commit>, built <date>)", then, when the
// image is known, "image <reference>" and, if the reference is pinned,
// "image digest <algorithm:hex>".
func (c VersionCmd) Run(build BuildInfo, io Stdio) error {
	if _, err := fmt.Fprintf(io.Out, "flagpole %s (commit %s, built %s)\n", build.Version, build.Commit, build.Date); err != nil {
		return err
	}
	ref := strings.TrimSpace(c.Image)
	if ref == "" {
		return nil
	}
	if _, err := fmt.Fprintf(io.Out, "image %s\n", ref); err != nil {
		return err
	}
	if digest := ImageDigest(ref); digest != "" {
		_, err := fmt.Fprintf(io.Out, "image digest %s\n", digest)
		return err
	}
	return nil
}

// ImageDigest returns the digest of an image reference pinned with
// "@<algorithm>:<hex>" (e.g. ghcr.io/flagpole-dev/flagpole:v1.0.0@sha256:...), or
// "" when the reference names only a tag or the digest is malformed.
func ImageDigest(ref string) string {
	_, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return ""
	}
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || alg == "" || len(hex) < 32 || strings.Trim(hex, "0123456789abcdef") != "" {
		return ""
	}
	return digest
}
