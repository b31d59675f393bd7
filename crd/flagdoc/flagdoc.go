// Package flagdoc turns a FeatureFlag into the flagd flag document every consumer
// serves or checks: the kubernetes source sends it to the store, the file provider's
// ConfigMaps hold it, the validating webhook and the FeatureFlag status compile it,
// and `flagpole debug` reads it from manifests. One encoding and one validation, so
// that what is admitted is what the sidecars load.
package flagdoc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// SpecPath is where the document sits in a FeatureFlag: problems are reported under it.
const SpecPath = "spec.flagSpec"

// Encode returns the flagd document of spec.flagSpec: {"flags":{...}} with
// "$evaluators" and "metadata" when set (and "$schema" when written), as flagd and
// the OpenFeature Operator serialize it.
func Encode(spec *v1beta1.FlagSpec) ([]byte, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", SpecPath, err)
	}
	return data, nil
}

// Validate compiles the document with flagd's strict rules (what `flagpole debug
// validate` checks: schema, targeting that would fail at evaluation, defaultVariant
// not among variants, $ref cycles) and returns the problems with their JSON paths
// under spec.flagSpec, or nil when the flags would load cleanly.
func Validate(spec *v1beta1.FlagSpec) eval.Problems {
	problems, _, _ := Check(spec)
	return problems
}

// Check is Validate that also returns what strict mode only warns about (an unknown
// top-level member, "targeting": null), with paths under spec.flagSpec, and, when
// the document is valid, the parsed flag set.
func Check(spec *v1beta1.FlagSpec) (problems, warnings eval.Problems, set *flags.Set) {
	data, err := Encode(spec)
	if err != nil {
		return eval.Problems{{Path: SpecPath, Message: err.Error()}}, nil, nil
	}
	set, err = flags.Parse(data, flags.Strict)
	if err == nil {
		return nil, underSpecAll(set.Warnings), set
	}
	found, ok := errors.AsType[eval.Problems](err)
	if !ok {
		return eval.Problems{{Path: SpecPath, Message: err.Error()}}, nil, nil
	}
	return underSpecAll(found), nil, nil
}

// underSpecAll moves problems of the document under spec.flagSpec.
func underSpecAll(problems eval.Problems) eval.Problems {
	if len(problems) == 0 {
		return nil
	}
	out := make(eval.Problems, len(problems))
	for i, p := range problems {
		out[i] = eval.Problem{Path: underSpec(p.Path), Message: p.Message}
	}
	return out
}

// underSpec prefixes a document path with spec.flagSpec.
func underSpec(path string) string {
	switch {
	case path == "":
		return SpecPath
	case strings.HasPrefix(path, "["):
		return SpecPath + path
	}
	return SpecPath + "." + path
}
