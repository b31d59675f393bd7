package modes

import (
	"bytes"
	"slices"

	"github.com/flagpole-dev/flagpole/crd/manifests"
)

// DebugCRDsCmd prints the CustomResourceDefinitions of the core.openfeature.dev API
// embedded in the binary, for kubectl apply -f - (or kubectl diff -f -).
type DebugCRDsCmd struct {
	Kinds []string `name:"kind" short:"k" placeholder:"KIND" help:"Print only this CRD: kind, plural, singular or short name (ff, ffs), case-insensitive. Repeatable; default all."`
}

// Run writes the selected CRDs to stdout as one multi-document YAML stream, in the
// order of the CRD names.
func (c *DebugCRDsCmd) Run(stdio Stdio) error {
	crds, err := manifests.CRDs()
	if err != nil {
		return err
	}
	if len(c.Kinds) > 0 {
		// Check every name first, so that a typo prints nothing rather than a part.
		for _, k := range c.Kinds {
			if _, err := manifests.Get(k); err != nil {
				return err
			}
		}
		selected := crds[:0:0]
		for _, crd := range crds {
			if slices.ContainsFunc(c.Kinds, crd.Matches) {
				selected = append(selected, crd)
			}
		}
		crds = selected
	}
	var out bytes.Buffer
	for _, crd := range crds {
		out.Write(crd.YAML)
	}
	_, err = stdio.Out.Write(out.Bytes())
	return err
}
