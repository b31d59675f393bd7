package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// goodFF and badFF are a FeatureFlag that is admitted and one that is not.
const (
	goodFF = `{"apiVersion":"core.openfeature.dev/v1beta1","kind":"FeatureFlag","metadata":{"name":"f","namespace":"team-a","labels":{"a":"1"}},
		"spec":{"flagSpec":{"flags":{"on":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}}}`
	badFF = `{"apiVersion":"core.openfeature.dev/v1beta1","kind":"FeatureFlag","metadata":{"name":"f","namespace":"team-a"},
		"spec":{"flagSpec":{"flags":{"on":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"off"}}}}}`
	badFFProblem = `spec.flagSpec.flags.on.defaultVariant: "off" is not one of the variants ("on")`
)

// TestValidationRequests covers what every kind's webhook does with the request
// itself: operations, kinds, missing or malformed objects, UPDATE and dry-run.
func TestValidationRequests(t *testing.T) {
	admit := ValidateFeatureFlag()
	relabeled := strings.Replace(badFF, `"namespace":"team-a"`, `"namespace":"team-a","labels":{"new":"label"}`, 1)
	deleting := strings.Replace(badFF, `"namespace":"team-a"`, `"namespace":"team-a","deletionTimestamp":"2026-01-01T00:00:00Z","finalizers":[]`, 1)
	admittedBad := allowed(
		"admitted although spec has 1 problem(s), because this update does not change spec; fix them with the next change of spec:",
		badFFProblem)
	tests := []struct {
		name string
		req  func() *admissionv1.AdmissionRequest
		want Decision
	}{
		{name: "CREATE of a valid object", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlag", []byte(goodFF)) },
			want: allowed()},
		{name: "CREATE of an invalid object", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlag", []byte(badFF)) },
			want: denied(nil, badFFProblem)},
		{name: "dry-run decides the same", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", []byte(badFF))
			dry := true
			req.DryRun = &dry
			return req
		}, want: denied(nil, badFFProblem)},
		{name: "UPDATE to an invalid spec", req: func() *admissionv1.AdmissionRequest { return update("FeatureFlag", []byte(goodFF), []byte(badFF)) },
			want: denied(nil, badFFProblem)},
		{name: "UPDATE to a valid spec", req: func() *admissionv1.AdmissionRequest { return update("FeatureFlag", []byte(badFF), []byte(goodFF)) },
			want: allowed()},
		{name: "UPDATE of metadata only, spec invalid already: admitted with the problems as warnings",
			req:  func() *admissionv1.AdmissionRequest { return update("FeatureFlag", []byte(badFF), []byte(relabeled)) },
			want: admittedBad},
		{name: "UPDATE of an object being deleted (finalizers removed)",
			req: func() *admissionv1.AdmissionRequest { return update("FeatureFlag", []byte(goodFF), []byte(deleting)) },
			want: allowed(
				"admitted although spec has 1 problem(s), because the object is being deleted; fix them with the next change of spec:",
				badFFProblem)},
		{name: "UPDATE without the old object is checked in full",
			req:  func() *admissionv1.AdmissionRequest { return update("FeatureFlag", nil, []byte(badFF)) },
			want: denied(nil, badFFProblem)},
		{name: "DELETE is allowed without looking", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", nil)
			req.Operation, req.OldObject.Raw = admissionv1.Delete, []byte(badFF)
			return req
		}, want: allowed()},
		{name: "CONNECT is allowed", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", []byte("junk"))
			req.Operation = admissionv1.Connect
			return req
		}, want: allowed()},
		{name: "another kind", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlagSource", []byte(goodFF)) },
			want: Decision{Code: 400, Message: "this webhook validates core.openfeature.dev/v1beta1 FeatureFlag, not core.openfeature.dev/v1beta1 FeatureFlagSource"}},
		{name: "another version", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", []byte(goodFF))
			req.Kind.Version = "v1alpha1"
			return req
		}, want: Decision{Code: 400, Message: "this webhook validates core.openfeature.dev/v1beta1 FeatureFlag, not core.openfeature.dev/v1alpha1 FeatureFlag"}},
		{name: "a core kind", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", []byte(goodFF))
			req.Kind = metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
			return req
		}, want: Decision{Code: 400, Message: "this webhook validates core.openfeature.dev/v1beta1 FeatureFlag, not v1 Pod"}},
		{name: "no kind in the request (debug validate fills it; the API server always does)", req: func() *admissionv1.AdmissionRequest {
			req := create("FeatureFlag", []byte(goodFF))
			req.Kind = metav1.GroupVersionKind{}
			return req
		}, want: allowed()},
		{name: "no object", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlag", nil) },
			want: Decision{Code: 400, Message: "the CREATE request carries no object"}},
		{name: "not JSON", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlag", []byte(`{"spec":`)) },
			want: Decision{Code: 400, Message: "the object is not valid JSON: unexpected end of JSON input"}},
		{name: "not an object", req: func() *admissionv1.AdmissionRequest { return create("FeatureFlag", []byte(`[1]`)) },
			want: Decision{Code: 400, Message: "the object must be a JSON object, got array"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, run(admit, tc.req())); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestObjectsThatBypassTheSchema: members of the wrong JSON type are problems with
// their exact paths (indices and map keys included), all of them; unknown and
// duplicate fields are warnings.
func TestObjectsThatBypassTheSchema(t *testing.T) {
	tests := []struct {
		name, kind, obj string
		want            Decision
	}{
		{name: "wrong types everywhere, every one reported", kind: "FeatureFlagSource", obj: `{"kind":"FeatureFlagSource","metadata":{"name":7,"creationTimestamp":"yesterday"},
			"spec":{"port":1.5,"managementPort":99999999999,"probesEnabled":"yes","sources":[{"source":"a"},{"source":"b","tls":"yes","interval":"5"}],
			"contextValues":{"region":1},"envVars":[{"name":"A","valueFrom":{"secretKeyRef":{"name":3,"key":"k"}}}],
			"resources":{"limits":{"cpu":"lots"}},"cors":"https://a.example"}}`,
			want: denied(nil,
				"metadata.name: must be a string, got number",
				`metadata.creationTimestamp: parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"`,
				"spec.port: must be an integer, got 1.5",
				"spec.managementPort: must be an integer from -2147483648 to 2147483647, got 99999999999",
				"spec.probesEnabled: must be a boolean, got string",
				"spec.sources[1].tls: must be a boolean, got string",
				"spec.sources[1].interval: must be an integer, got string",
				"spec.contextValues.region: must be a string, got number",
				"spec.envVars[0].valueFrom.secretKeyRef.name: must be a string, got number",
				"spec.resources.limits.cpu: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
				"spec.cors: must be an array, got string")},
		{name: "spec of the wrong type", kind: "Flagd", obj: `{"kind":"Flagd","spec":["featureFlagSource"]}`,
			want: denied(nil, "spec: must be an object, got array")},
		{name: "null members are absent", kind: "InProcessConfiguration", obj: `{"kind":"InProcessConfiguration","spec":{"port":null,"envVars":null,"host":null}}`,
			want: allowed()},
		{name: "unknown and duplicate fields, case-sensitively", kind: "InProcessConfiguration",
			obj: `{"kind":"InProcessConfiguration","spec":{"Port":80,"port":8015,"port":8016,"envVars":[{"name":"A","value":"1","valuefrom":{}}]},"extra":true}`,
			want: allowed(
				"spec.Port: unknown field: the API server drops it (kubectl apply refuses the manifest)",
				"spec.port: duplicate field: the last value is used (kubectl apply refuses the manifest)",
				"spec.envVars[0].valuefrom: unknown field: the API server drops it (kubectl apply refuses the manifest)",
				"extra: unknown field: the API server drops it (kubectl apply refuses the manifest)")},
		{name: "a member whose key needs brackets", kind: "FeatureFlagSource",
			obj:  `{"kind":"FeatureFlagSource","spec":{"sources":[{"source":"f"}],"defaultSyncProvider":"kubernetes","headerToContextMappings":{"X.Tenant Id":7}}}`,
			want: denied(nil, `spec.headerToContextMappings["X.Tenant Id"]: must be a string, got number`)},
	}
	hooks := map[string]AdmitFunc{}
	for _, h := range ValidatingWebhooks(ValidationOptions{}) {
		hooks[h.Kind] = h.Admit
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, run(hooks[tc.kind], create(tc.kind, []byte(tc.obj)))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestAnswersAreBounded: a document with thousands of problems gets the first 100
// and a count; warnings likewise stop at 30.
func TestAnswersAreBounded(t *testing.T) {
	var flags, envs []string
	for i := range 150 {
		flags = append(flags, fmt.Sprintf(`"f%03d":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"off"}`, i))
		envs = append(envs, fmt.Sprintf(`{"name":"API_TOKEN_%d","value":"x"}`, i))
	}
	d := run(ValidateFeatureFlag(), create("FeatureFlag", []byte(`{"spec":{"flagSpec":{"flags":{`+strings.Join(flags, ",")+`}}}}`)))
	lines := strings.Split(d.Message, "\n")
	if d.Allowed || len(lines) != 101 || lines[100] != "... and 50 more problems" || lines[0] != `spec.flagSpec.flags.f000.defaultVariant: "off" is not one of the variants ("on")` {
		t.Errorf("allowed %v, %d lines, first %q, last %q", d.Allowed, len(lines), lines[0], lines[len(lines)-1])
	}
	d = run(ValidateInProcessConfiguration(), create("InProcessConfiguration", []byte(`{"spec":{"envVars":[`+strings.Join(envs, ",")+`]}}`)))
	if !d.Allowed || len(d.Warnings) != 31 || d.Warnings[30] != "... and 120 more warnings" {
		t.Errorf("allowed %v, %d warnings, last %q", d.Allowed, len(d.Warnings), d.Warnings[len(d.Warnings)-1])
	}
}

func TestParseCrossNamespace(t *testing.T) {
	for in, want := range map[string]sidecar.CrossNamespace{"": sidecar.CrossNamespaceDeny, "deny": sidecar.CrossNamespaceDeny, "allow": sidecar.CrossNamespaceAllow} {
		if got, err := sidecar.ParseCrossNamespace(in); err != nil || got != want {
			t.Errorf("%q: %v, %v", in, got, err)
		}
	}
	if _, err := sidecar.ParseCrossNamespace("Allow"); err == nil || err.Error() != `--cross-namespace "Allow": want deny or allow` {
		t.Errorf("Allow: %v", err)
	}
}

func TestValidatingWebhooks(t *testing.T) {
	var got []string
	for _, h := range ValidatingWebhooks(ValidationOptions{}) {
		got = append(got, h.Kind+" "+h.Resource+" "+h.Path)
		if d := run(h.Admit, create(h.Kind, []byte(`{"spec":[]}`))); d.Allowed || d.Message != "spec: must be an object, got array" {
			t.Errorf("%s: the AdmitFunc is not this kind's: %+v", h.Kind, d)
		}
	}
	want := []string{
		"FeatureFlag featureflags /validate-core-openfeature-dev-v1beta1-featureflag",
		"FeatureFlagSource featureflagsources /validate-core-openfeature-dev-v1beta1-featureflagsource",
		"Flagd flagds /validate-core-openfeature-dev-v1beta1-flagd",
		"InProcessConfiguration inprocessconfigurations /validate-core-openfeature-dev-v1beta1-inprocessconfiguration",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestValidationThroughTheHandler: over HTTP, a denial is an AdmissionReview with
// code 422, reason Invalid and every problem in the message; warnings travel on both
// admissions and denials.
func TestValidationThroughTheHandler(t *testing.T) {
	h := &Handler{Name: "validate-featureflagsources", Admit: ValidateFeatureFlagSource(ValidationOptions{}), Log: zerolog.Nop()}
	body := func(spec string) string {
		b, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  create("FeatureFlagSource", object(t, ffs(spec))),
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	got := call(t, h, http.MethodPost, "application/json", body(`
  port: 8014
  sources: [{source: flags, provider: kubernetes}, {source: "https://h/f.json", provider: http, httpSyncBearerToken: t}]`))
	want := result{Status: 200, UID: "uid-1", Code: 422, Reason: "Invalid",
		Message:  "spec.managementPort: 8014 is also spec.port: each listener of the sidecar needs its own port",
		Warnings: []string{strings.Replace(warnBearer, "sources[0]", "sources[1]", 1)}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("denial (-want +got):\n%s", diff)
	}
	got = call(t, h, http.MethodPost, "application/json", body(`
  sources: [{source: flags, provider: kubernetes}]
  syncProviderArgs: [a=b]`))
	want = result{Status: 200, UID: "uid-1", Allowed: true, Warnings: []string{warnProxyArgs}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("admission (-want +got):\n%s", diff)
	}
}
