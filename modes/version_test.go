package modes

import (
	"bytes"
	"testing"
)

func TestVersionPrintsImageDigest(t *testing.T) {
	const digest = "sha256:076f794d1548c476d84dbf4d4e4c8a23294716eab6c0b9f2c2678b49e5deb71d"
	build := BuildInfo{Version: "v1.2.3", Commit: "abc1234", Date: "2026-01-02T03:04:05Z"}
	for _, c := range []struct{ image, want string }{
		{"", "flagpole v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z)\n"},
		{"ghcr.io/flagpole-dev/flagpole:v1.2.3", "flagpole v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z)\nimage ghcr.io/flagpole-dev/flagpole:v1.2.3\n"},
		{"ghcr.io/flagpole-dev/flagpole:v1.2.3@" + digest, "flagpole v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z)\nimage ghcr.io/flagpole-dev/flagpole:v1.2.3@" + digest + "\nimage digest " + digest + "\n"},
		{"flagpole@sha256:nothex", "flagpole v1.2.3 (commit abc1234, built 2026-01-02T03:04:05Z)\nimage flagpole@sha256:nothex\n"},
	} {
		var out bytes.Buffer
		if err := (VersionCmd{Image: c.image}).Run(build, Stdio{Out: &out}); err != nil {
			t.Fatal(err)
		}
		if out.String() != c.want {
			t.Errorf("image %q:\n got %q\nwant %q", c.image, out.String(), c.want)
		}
	}
}
