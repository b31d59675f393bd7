package eval

import (
	"math/rand/v2"
	"strings"
	"testing"

	"golang.org/x/mod/semver"
)

// TestSemverMatchesXMod compares parseSemver/compareSemver with golang.org/x/mod/semver
// (what flagd uses, after adding the "v") on hand-picked and generated versions.
func TestSemverMatchesXMod(t *testing.T) {
	versions := []string{"1", "1.2", "1.2.3", "01.2.3", "1.02.3", "1.2.03", "0.0.0", "1.2.3-alpha", "1.2.3-alpha.1",
		"1.2.3-alpha.beta", "1.2.3-0.3.7", "1.2.3-01", "1.2.3-x.7.z.92", "1.2.3+build", "1.2.3-rc.1+build.5",
		"1.2-pre", "1.2.3.4", "", "v", "1.", "1..2", "1.2.3-", "1.2.3+", "1.2.3-a..b", "1.2.3-a_b", "10.0.0", "9.0.0",
		"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"}
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"0", "1", "2", "10", "01", ".", "-", "+", "alpha", "beta", "rc", "x", "9", "-1"}
	for range 3000 {
		var b strings.Builder
		for n := rng.IntN(7); n >= 0; n-- {
			b.WriteString(parts[rng.IntN(len(parts))])
		}
		versions = append(versions, b.String())
	}
	for _, a := range versions {
		pa, okA := parseSemver(a)
		if okA != semver.IsValid("v"+a) {
			t.Fatalf("valid(%q) = %v, x/mod says %v", a, okA, !okA)
		}
		if !okA {
			continue
		}
		if got, want := pa.major == semver.Major("v" + a)[1:], true; got != want {
			t.Errorf("major of %q = %q, x/mod %q", a, pa.major, semver.Major("v"+a))
		}
		for _, b := range versions[:40] {
			pb, okB := parseSemver(b)
			if !okB {
				continue
			}
			if got, want := compareSemver(pa, pb), semver.Compare("v"+a, "v"+b); got != want {
				t.Errorf("compare(%q, %q) = %d, x/mod %d", a, b, got, want)
			}
			if got, want := pa.major == pb.major && pa.minor == pb.minor, semver.MajorMinor("v"+a) == semver.MajorMinor("v"+b); got != want {
				t.Errorf("same major.minor(%q, %q) = %v, x/mod %v", a, b, got, want)
			}
		}
	}
}
