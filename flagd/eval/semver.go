package eval

// A semantic version parser and comparison with the rules of golang.org/x/mod/semver
// (partial versions "1" and "1.2" allowed, build metadata ignored), but with the
// leading "v" optional, so that a context value is compared without building a new
// string. semver_test.go checks it against x/mod/semver.

// semVersion is a parsed version; fields are substrings of the input.
type semVersion struct {
	major, minor, patch string
	prerelease          string // with its leading '-', or ""
}

// parseSemver parses [vV]MAJOR[.MINOR[.PATCH[-PRERELEASE][+BUILD]]].
func parseSemver(s string) (v semVersion, ok bool) {
	if s != "" && (s[0] == 'v' || s[0] == 'V') {
		s = s[1:]
	}
	if v.major, s, ok = semverNumber(s); !ok {
		return v, false
	}
	if s == "" {
		v.minor, v.patch = "0", "0"
		return v, true
	}
	if s[0] != '.' {
		return v, false
	}
	if v.minor, s, ok = semverNumber(s[1:]); !ok {
		return v, false
	}
	if s == "" {
		v.patch = "0"
		return v, true
	}
	if s[0] != '.' {
		return v, false
	}
	if v.patch, s, ok = semverNumber(s[1:]); !ok {
		return v, false
	}
	if s != "" && s[0] == '-' {
		end := len(s)
		for i := 1; i < len(s); i++ {
			if s[i] == '+' {
				end = i
				break
			}
		}
		if !semverIdentifiers(s[1:end], true) {
			return v, false
		}
		v.prerelease, s = s[:end], s[end:]
	}
	if s != "" && s[0] == '+' {
		if !semverIdentifiers(s[1:], false) {
			return v, false
		}
		s = ""
	}
	return v, s == ""
}

// semverNumber reads a decimal number without leading zeros.
func semverNumber(s string) (num, rest string, ok bool) {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 || (s[0] == '0' && i != 1) {
		return "", s, false
	}
	return s[:i], s[i:], true
}

// semverIdentifiers checks dot-separated identifiers of [0-9A-Za-z-]; numeric
// prerelease identifiers may not have leading zeros.
func semverIdentifiers(s string, prerelease bool) bool {
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-') {
				return false
			}
			continue
		}
		id := s[start:i]
		if id == "" || (prerelease && isNumeric(id) && id[0] == '0' && len(id) > 1) {
			return false
		}
		start = i + 1
	}
	return true
}

func isNumeric(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// compareNumbers compares decimal strings without leading zeros.
func compareNumbers(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// compareSemver orders two versions by precedence (build metadata ignored).
func compareSemver(a, b semVersion) int {
	if c := compareNumbers(a.major, b.major); c != 0 {
		return c
	}
	if c := compareNumbers(a.minor, b.minor); c != 0 {
		return c
	}
	if c := compareNumbers(a.patch, b.patch); c != 0 {
		return c
	}
	return comparePrerelease(a.prerelease, b.prerelease)
}

// comparePrerelease follows semver.org §11: a release sorts after its prereleases;
// identifiers compare numerically when numeric, numeric before alphanumeric.
func comparePrerelease(x, y string) int {
	if x == y {
		return 0
	}
	if x == "" {
		return 1
	}
	if y == "" {
		return -1
	}
	x, y = x[1:], y[1:]
	for x != "" && y != "" {
		var dx, dy string
		dx, x = nextIdentifier(x)
		dy, y = nextIdentifier(y)
		if dx == dy {
			continue
		}
		nx, ny := isNumeric(dx), isNumeric(dy)
		switch {
		case nx && ny:
			return compareNumbers(dx, dy)
		case nx:
			return -1
		case ny:
			return 1
		case dx < dy:
			return -1
		default:
			return 1
		}
	}
	if x == "" && y == "" {
		return 0
	}
	if x == "" {
		return -1
	}
	return 1
}

func nextIdentifier(s string) (id, rest string) {
	for i := range len(s) {
		if s[i] == '.' {
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}
