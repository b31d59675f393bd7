package webhook

// Validating webhooks for the four core.openfeature.dev/v1beta1 kinds. Each kind has
// an AdmitFunc that decodes the object strictly (wrong JSON types are problems with
// their exact paths, unknown fields warnings), runs the kind's checks and answers with
// every problem, one per line ("spec.sources[1].source: ..."), or admits the object
// with warnings for what is valid but risky. The CRD schemas already enforce enums,
// ranges and CEL rules; these checks add what a schema cannot express (flag documents
// compiled by flagd's strict parser, sources rendered into the sidecar's --sources and
// checked by the sync package, command-line representability), give better messages
// where the schema's would be obscure, and hold for objects that never went through
// the schema (`flagpole debug validate`, an older or OFO CRD, a hand-written review).

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// ValidationOptions are the operator settings the validating webhooks depend on.
type ValidationOptions struct {
	// CrossNamespace is the operator's --cross-namespace policy; "" means deny.
	CrossNamespace sidecar.CrossNamespace
	// DefaultSyncProvider is the operator's provider for sources that name none in a
	// FeatureFlagSource without defaultSyncProvider (OFO's SIDECAR_SYNC_PROVIDER).
	// Empty, such sources are denied: nothing says how to read them.
	DefaultSyncProvider string
}

// ValidatingWebhook is one validating admission webhook: the kind it validates, its
// resource, the HTTP path it is served on (OFO's path naming) and its AdmitFunc.
type ValidatingWebhook struct {
	Kind, Resource, Path string
	Admit                AdmitFunc
}

// ValidatingWebhooks returns the validating webhooks of the four kinds, in the order
// FeatureFlag, FeatureFlagSource, Flagd, InProcessConfiguration. The FeatureFlag path
// is OFO's (/validate-core-openfeature-dev-v1beta1-featureflag); the others follow
// its pattern.
func ValidatingWebhooks(opts ValidationOptions) []ValidatingWebhook {
	hooks := []ValidatingWebhook{
		{Kind: KindFeatureFlag, Resource: "featureflags", Admit: ValidateFeatureFlag()},
		{Kind: KindFeatureFlagSource, Resource: "featureflagsources", Admit: ValidateFeatureFlagSource(opts)},
		{Kind: KindFlagd, Resource: "flagds", Admit: ValidateFlagd()},
		{Kind: KindInProcessConfiguration, Resource: "inprocessconfigurations", Admit: ValidateInProcessConfiguration()},
	}
	for i := range hooks {
		hooks[i].Path = "/validate-core-openfeature-dev-v1beta1-" + strings.ToLower(hooks[i].Kind)
	}
	return hooks
}

// The kinds the validating webhooks handle.
const (
	KindFeatureFlag            = "FeatureFlag"
	KindFeatureFlagSource      = "FeatureFlagSource"
	KindFlagd                  = "Flagd"
	KindInProcessConfiguration = "InProcessConfiguration"
)

// Bounds on what one answer lists; the rest is counted ("... and 12 more").
// Kubernetes shows warnings one per line and truncates long lists.
const (
	maxProblems = 100
	maxWarnings = 30
)

// report collects the problems (denials) and warnings of one object.
type report struct {
	problems, warnings eval.Problems
}

// problemf records a reason to deny the object at path.
func (r *report) problemf(path, format string, args ...any) {
	r.problems = append(r.problems, eval.Problem{Path: path, Message: oneLine(fmt.Sprintf(format, args...))})
}

// warnf records something valid but risky at path.
func (r *report) warnf(path, format string, args ...any) {
	r.warnings = append(r.warnings, eval.Problem{Path: path, Message: oneLine(fmt.Sprintf(format, args...))})
}

// oneLine keeps a message on one line: answers list one problem per line.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// lines renders problems one per line, at most limit of them.
func lines(ps eval.Problems, limit int, noun string) []string {
	out := make([]string, 0, min(len(ps), limit)+1)
	for i, p := range ps {
		if i == limit {
			out = append(out, fmt.Sprintf("... and %d more %s", len(ps)-limit, noun))
			break
		}
		out = append(out, oneLine(p.String()))
	}
	return out
}

// decision denies with every problem (422, one per line) or admits with the warnings.
func (r *report) decision(code int32) Decision {
	d := Decision{Allowed: len(r.problems) == 0}
	if w := lines(r.warnings, maxWarnings, "warnings"); len(w) > 0 {
		d.Warnings = w
	}
	if !d.Allowed {
		if code == 0 {
			code = http.StatusUnprocessableEntity
		}
		d.Code, d.Message = code, strings.Join(lines(r.problems, maxProblems, "problems"), "\n")
	}
	return d
}

// checkFunc runs the checks of one kind on a decoded object. namespace is the
// object's namespace; raw is the object as sent (to tell absent members from zero
// values).
type checkFunc[T any] func(r *report, obj *T, namespace string, raw []byte)

// validator builds the AdmitFunc of one kind: operations other than CREATE and UPDATE
// are allowed; the request must be for core.openfeature.dev/v1beta1 kind; the object
// is decoded strictly (wrong types are problems, unknown fields warnings); spec is
// required when specRequired; then check runs. An UPDATE that does not change spec,
// or of an object being deleted, is admitted with its problems as warnings, so that
// an object stored before the webhook (or before a stricter release) can still get
// labels and lose finalizers.
func validator[T any, PT interface {
	*T
	metav1.Object
}](kind string, specRequired bool, check checkFunc[T]) AdmitFunc {
	return func(_ context.Context, req *admissionv1.AdmissionRequest) Decision {
		if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
			return Allow("")
		}
		if k := req.Kind; k.Kind != "" && (k.Kind != kind || k.Group != v1beta1.GroupName || k.Version != v1beta1.Version) {
			return Deny(http.StatusBadRequest, "this webhook validates %s/%s %s, not %s",
				v1beta1.GroupName, v1beta1.Version, kind, strings.TrimPrefix(k.Group+"/"+k.Version+" "+k.Kind, "/"))
		}
		raw := req.Object.Raw
		if len(raw) == 0 {
			return Deny(http.StatusBadRequest, "the %s request carries no object", req.Operation)
		}
		r := &report{}
		obj := PT(new(T))
		switch decodeObject(raw, obj, r) {
		case notJSON:
			return r.decision(http.StatusBadRequest)
		case decoded:
			namespace := req.Namespace
			if namespace == "" {
				namespace = obj.GetNamespace()
			}
			if namespace == "" {
				namespace = metav1.NamespaceDefault
			}
			if specRequired && !present(raw, "spec") {
				r.problemf("spec", "is required")
			} else {
				check(r, (*T)(obj), namespace, raw)
			}
		}
		if req.Operation == admissionv1.Update && len(r.problems) > 0 {
			why := ""
			switch {
			case present(raw, "metadata", "deletionTimestamp"):
				why = "the object is being deleted"
			case sameMember(req.OldObject.Raw, raw, "spec"):
				why = "this update does not change spec"
			}
			if why != "" {
				return admittedDespite(r, why)
			}
		}
		return r.decision(0)
	}
}

// admittedDespite admits an UPDATE whose problems were already stored, listing them
// as warnings after one that says why.
func admittedDespite(r *report, why string) Decision {
	head := eval.Problem{Message: fmt.Sprintf("admitted although spec has %d problem(s), because %s; fix them with the next change of spec:", len(r.problems), why)}
	w := &report{warnings: append(append(eval.Problems{head}, r.problems...), r.warnings...)}
	return w.decision(0)
}

// present reports whether the object member at path exists and is not null.
func present(raw []byte, path ...string) bool {
	v, ok := member(raw, path...)
	return ok && jsonKind(v) != "null"
}

// sameMember reports whether two JSON objects have the same value (by meaning, not
// by bytes) at key; both absent counts as the same.
func sameMember(a, b []byte, key string) bool {
	if jsonKind(a) != "object" || jsonKind(b) != "object" || !json.Valid(a) || !json.Valid(b) {
		return false
	}
	av, aok := member(a, key)
	bv, bok := member(b, key)
	if !aok || !bok {
		return aok == bok
	}
	var ax, bx any
	if utiljson.Unmarshal(av, &ax) != nil || utiljson.Unmarshal(bv, &bx) != nil {
		return false
	}
	return reflect.DeepEqual(ax, bx)
}
