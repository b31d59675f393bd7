package sidecar

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Ref names a namespaced object, as OFO's annotations and sources write it:
// "name" (in a default namespace) or "namespace/name".
type Ref struct {
	Namespace, Name string
}

// String is "namespace/name".
func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ParseRef reads "name" or "namespace/name"; a bare name is in defaultNamespace.
// Unlike OFO, which takes a string with more than one "/" as a name, anything but
// a valid namespace (DNS label) and a valid object name (DNS subdomain) is an error
// naming what is wrong.
func ParseRef(s, defaultNamespace string) (Ref, error) {
	s = strings.TrimSpace(s)
	ns, name, qualified := strings.Cut(s, "/")
	if !qualified {
		ns, name = defaultNamespace, s
	}
	if strings.Contains(name, "/") {
		return Ref{}, fmt.Errorf("%q: want name or namespace/name", s)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return Ref{}, fmt.Errorf("%q: namespace %q: %s", s, ns, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return Ref{}, fmt.Errorf("%q: name %q: %s", s, name, strings.Join(errs, "; "))
	}
	return Ref{Namespace: ns, Name: name}, nil
}

// ParseRefList reads an annotation's comma-separated list of references (OFO's
// parseList: items trimmed, empty items dropped); the first bad item is an error.
func ParseRefList(list, defaultNamespace string) ([]Ref, error) {
	var refs []Ref
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		r, err := ParseRef(item, defaultNamespace)
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
	}
	return refs, nil
}
