// Package manifests embeds the CustomResourceDefinitions of the core.openfeature.dev
// API, generated from crd/apis by controller-gen (hack/update-codegen.sh), so that
// the binary can print and install them.
package manifests

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed *.yaml
var files embed.FS

// CRD is one CustomResourceDefinition manifest.
type CRD struct {
	// Name is the CRD's name, <plural>.<group>.
	Name string
	// Kind, Plural, Singular and ShortNames are the resource's names.
	Kind, Plural, Singular string
	ShortNames             []string
	// YAML is the manifest, one YAML document starting with "---".
	YAML []byte
}

// Matches reports whether name (case-insensitive) is the CRD's name, kind, plural,
// singular or one of its short names, as kubectl resolves resource names.
func (c CRD) Matches(name string) bool {
	name = strings.ToLower(name)
	if name == c.Name || name == strings.ToLower(c.Kind) || name == c.Plural || name == c.Singular {
		return true
	}
	return slices.Contains(c.ShortNames, name)
}

// header is the part of a CRD manifest CRDs reads.
type header struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular"`
			ShortNames []string `json:"shortNames"`
		} `json:"names"`
	} `json:"spec"`
}

// CRDs returns every CRD, sorted by name. The error can only come from a broken
// build (the manifests are embedded at compile time and tested).
func CRDs() ([]CRD, error) {
	names, err := fs.Glob(files, "*.yaml")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	crds := make([]CRD, 0, len(names))
	for _, n := range names {
		data, err := files.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var h header
		if err := yaml.Unmarshal(data, &h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if !bytes.HasPrefix(data, []byte("---\n")) {
			data = append([]byte("---\n"), data...)
		}
		crds = append(crds, CRD{
			Name:       h.Metadata.Name,
			Kind:       h.Spec.Names.Kind,
			Plural:     h.Spec.Names.Plural,
			Singular:   h.Spec.Names.Singular,
			ShortNames: h.Spec.Names.ShortNames,
			YAML:       data,
		})
	}
	sort.Slice(crds, func(i, j int) bool { return crds[i].Name < crds[j].Name })
	return crds, nil
}

// Get returns the CRD that name matches (see CRD.Matches).
func Get(name string) (CRD, error) {
	crds, err := CRDs()
	if err != nil {
		return CRD{}, err
	}
	known := make([]string, 0, len(crds))
	for _, c := range crds {
		if c.Matches(name) {
			return c, nil
		}
		known = append(known, c.Kind)
	}
	return CRD{}, fmt.Errorf("no CRD named %q; known kinds: %s", name, strings.Join(known, ", "))
}

// All returns every CRD as one multi-document YAML stream, sorted by name, ready for
// kubectl apply -f -.
func All() ([]byte, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, c := range crds {
		b.Write(c.YAML)
	}
	return b.Bytes(), nil
}
