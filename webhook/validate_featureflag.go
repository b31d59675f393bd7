package webhook

import (
	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
)

// ValidateFeatureFlag returns the AdmitFunc of FeatureFlags: spec.flagSpec is
// compiled by flagd's strict parser, the code the sidecars load it with
// (crd/flagdoc.Check), and every problem is a denial with its JSON path under
// spec.flagSpec: schema violations, targeting that would fail at evaluation (unknown
// operators, wrong arity, invalid fractional weights or bucket keys, non-string
// starts_with/ends_with arguments, ...), a defaultVariant that is not a variant,
// variants of mixed types, a $ref to a missing evaluator and $ref cycles. Unlike the
// OpenFeature Operator, which checks only flags against flagd's JSON schema, the
// flag-set metadata and $evaluators are checked too. What strict mode only warns
// about becomes a warning.
func ValidateFeatureFlag() AdmitFunc {
	return validator[v1beta1.FeatureFlag](KindFeatureFlag, true, checkFeatureFlag)
}

func checkFeatureFlag(r *report, ff *v1beta1.FeatureFlag, _ string, raw []byte) {
	if !present(raw, "spec", "flagSpec") {
		r.problemf("spec.flagSpec", "is required")
		return
	}
	if !present(raw, "spec", "flagSpec", "flags") {
		r.problemf("spec.flagSpec.flags", "is required (an empty object removes every flag)")
		return
	}
	problems, warnings, _ := flagdoc.Check(&ff.Spec.FlagSpec)
	for _, p := range problems {
		r.problemf(p.Path, "%s", p.Message)
	}
	for _, w := range warnings {
		r.warnf(w.Path, "%s", w.Message)
	}
}
