package webhook

import (
	"context"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// object converts a YAML (or JSON) manifest to the JSON an AdmissionRequest carries.
func object(t *testing.T, manifest string) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("test manifest: %v\n%s", err, manifest)
	}
	return js
}

// create is a CREATE request for a core.openfeature.dev/v1beta1 kind in namespace
// "team-a" with raw as the object.
func create(kind string, raw []byte) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Group: v1beta1.GroupName, Version: v1beta1.Version, Kind: kind},
		Namespace: "team-a",
		Name:      "test",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// update is an UPDATE request from old to raw.
func update(kind string, old, raw []byte) *admissionv1.AdmissionRequest {
	req := create(kind, raw)
	req.Operation = admissionv1.Update
	req.OldObject = runtime.RawExtension{Raw: old}
	return req
}

// run calls admit.
func run(admit AdmitFunc, req *admissionv1.AdmissionRequest) Decision {
	return admit(context.Background(), req)
}

// denied is the decision for problems (one per line) and warnings.
func denied(warnings []string, problems ...string) Decision {
	d := Decision{Code: 422, Warnings: warnings}
	for i, p := range problems {
		if i > 0 {
			d.Message += "\n"
		}
		d.Message += p
	}
	return d
}

// allowed is the decision admitting with warnings.
func allowed(warnings ...string) Decision {
	return Decision{Allowed: true, Warnings: warnings}
}
