package crd_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/webhook"
)

// validatingWebhooks are the webhooks by kind, with OFO's default sync provider.
func validatingWebhooks() map[string]webhook.AdmitFunc {
	hooks := map[string]webhook.AdmitFunc{}
	for _, h := range webhook.ValidatingWebhooks(webhook.ValidationOptions{DefaultSyncProvider: v1beta1.SyncProviderKubernetes}) {
		hooks[h.Kind] = h.Admit
	}
	return hooks
}

// admitThroughWebhook sends obj to kind's validating webhook as a CREATE in
// namespace default.
func admitThroughWebhook(t *testing.T, hooks map[string]webhook.AdmitFunc, kind string, obj map[string]any) webhook.Decision {
	t.Helper()
	admit, ok := hooks[kind]
	if !ok {
		t.Fatalf("no validating webhook for kind %q", kind)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return admit(context.Background(), &admissionv1.AdmissionRequest{
		Kind:      metav1.GroupVersionKind{Group: v1beta1.GroupName, Version: v1beta1.Version, Kind: kind},
		Namespace: metav1.NamespaceDefault, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	})
}

// TestValidSamplesPassTheWebhooks: every valid sample (deploy/examples/crds and
// testdata/ofo), as the API server stores it (pruned, defaulted), is admitted by its
// kind's validating webhook; warnings are allowed and logged.
func TestValidSamplesPassTheWebhooks(t *testing.T) {
	validators, hooks := loadValidators(t), validatingWebhooks()
	for _, s := range append(readSamples(t, examplesGlob), readSamples(t, ofoGlob)...) {
		t.Run(s.name, func(t *testing.T) {
			stored := validators[s.kind()].admit(s.obj)
			if msgs := stored.messages(); len(msgs) > 0 {
				t.Fatalf("the API server refuses it:\n%s", strings.Join(msgs, "\n"))
			}
			d := admitThroughWebhook(t, hooks, s.kind(), stored.obj)
			if !d.Allowed {
				t.Fatalf("denied (%d):\n%s", d.Code, d.Message)
			}
			for _, w := range d.Warnings {
				t.Logf("warning: %s", w)
			}
		})
	}
}

// schemaOnly lists the invalid samples the webhooks admit when they bypass the
// schema, and why.
var schemaOnly = map[string]string{
	"ff-misspelled-field.yaml": "an unknown field is a warning: the API server prunes it, so the webhook never sees one",
}

// TestInvalidSamplesThroughTheWebhooks: a "# want-flagd:" sample passes the schema
// and its stored form is denied by the FeatureFlag webhook with exactly those
// problems. Every "# want:" sample, sent as written (no schema, no defaults), is
// denied too, except those in schemaOnly.
func TestInvalidSamplesThroughTheWebhooks(t *testing.T) {
	validators, hooks := loadValidators(t), validatingWebhooks()
	for _, s := range readSamples(t, invalidGlob) {
		name := filepath.Base(strings.Split(s.name, "#")[0])
		t.Run(name, func(t *testing.T) {
			if wantFlagd := s.comments["want-flagd"]; len(wantFlagd) > 0 {
				stored := validators[s.kind()].admit(s.obj)
				if msgs := stored.messages(); len(msgs) > 0 {
					t.Fatalf("the API server refuses it:\n%s", strings.Join(msgs, "\n"))
				}
				d := admitThroughWebhook(t, hooks, s.kind(), stored.obj)
				if diff := cmp.Diff(wantFlagd, strings.Split(d.Message, "\n")); d.Allowed || diff != "" {
					t.Errorf("allowed %v; problems (-want +got):\n%s", d.Allowed, diff)
				}
				return
			}
			d := admitThroughWebhook(t, hooks, s.kind(), s.obj)
			if why, ok := schemaOnly[name]; ok {
				if !d.Allowed {
					t.Errorf("listed as schema-only (%s) but denied: %s", why, d.Message)
				}
				return
			}
			if d.Allowed {
				t.Errorf("admitted when the schema is bypassed; warnings %q", d.Warnings)
			}
			t.Logf("denied: %s", d.Message)
		})
	}
}
