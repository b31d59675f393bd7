package proxy

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SelectorPrefix starts every selector the proxy serves.
const SelectorPrefix = "core.openfeature.dev/"

// Ref names a FeatureFlag.
type Ref struct {
	Namespace, Name string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Selector is the selector that names r.
func (r Ref) Selector() string { return SelectorPrefix + r.String() }

// maxQuoted bounds how much of a client's selector an error message repeats.
const maxQuoted = 256

// ParseSelector reads "core.openfeature.dev/<namespace>/<name>". Errors start with
// flagd-proxy's own messages ("unrecognized URI: ...", "unable to parse uri ...:
// invalid resource uri format, ...") and say what flagpole expects; unlike
// flagd-proxy, a file: selector is refused too (flagd-proxy serves files of its own
// file system to whoever names them).
func ParseSelector(selector string) (Ref, error) {
	rest, ok := strings.CutPrefix(selector, SelectorPrefix)
	if !ok {
		return Ref{}, fmt.Errorf("unrecognized URI: %s (flagd-proxy serves FeatureFlags: the selector is core.openfeature.dev/<namespace>/<name>)", quote(selector))
	}
	ns, name, ok := strings.Cut(rest, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return Ref{}, fmt.Errorf("unable to parse uri %[1]s: invalid resource uri format, expected <namespace>/<crdName> but got: %[1]s", quote(rest))
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return Ref{}, fmt.Errorf("unable to parse uri %s: namespace %s: %s", quote(rest), quote(ns), strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return Ref{}, fmt.Errorf("unable to parse uri %s: FeatureFlag name %s: %s", quote(rest), quote(name), strings.Join(errs, "; "))
	}
	return Ref{Namespace: ns, Name: name}, nil
}

// quote returns s for an error message: cut to maxQuoted bytes, valid UTF-8, with
// control characters escaped.
func quote(s string) string {
	if len(s) > maxQuoted {
		s = s[:maxQuoted] + "..."
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	q := fmt.Sprintf("%q", s)
	if q[1:len(q)-1] == s && utf8.ValidString(s) {
		return s // nothing needed escaping: keep flagd-proxy's unquoted form
	}
	return q
}
