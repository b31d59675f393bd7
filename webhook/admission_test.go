package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// recordingApplier records the effects it applies, or fails with err.
type recordingApplier struct {
	applied []string
	err     error
}

func (a *recordingApplier) Apply(_ context.Context, e Effect) error {
	if a.err != nil {
		return a.err
	}
	a.applied = append(a.applied, e.Describe())
	return nil
}

type testEffect string

func (e testEffect) Describe() string { return string(e) }

func review(t testing.TB, uid string, dryRun bool) string {
	t.Helper()
	r := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &admissionv1.AdmissionRequest{UID: types.UID("u-" + uid), Operation: admissionv1.Create, DryRun: &dryRun},
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// result is what the test compares: the HTTP status and the decoded response.
type result struct {
	Status   int
	UID      string
	Allowed  bool
	Code     int32
	Reason   string
	Message  string
	Patch    string
	Warnings []string
}

func call(t *testing.T, h http.Handler, method, contentType, body string) result {
	t.Helper()
	req := httptest.NewRequest(method, "/mutate-v1-pod", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := result{Status: rec.Code}
	if rec.Header().Get("Content-Type") != "application/json" {
		res.Message = strings.TrimSpace(rec.Body.String())
		return res
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v\n%s", err, rec.Body.String())
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("response envelope: %s", rec.Body.String())
	}
	r := out.Response
	res.UID, res.Allowed, res.Patch, res.Warnings = string(r.UID), r.Allowed, string(r.Patch), r.Warnings
	if r.Result != nil {
		res.Code, res.Reason, res.Message = r.Result.Code, string(r.Result.Reason), r.Result.Message
	}
	if len(r.Patch) > 0 && (r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch) {
		t.Errorf("patch without patchType JSONPatch")
	}
	return res
}

func TestHandler(t *testing.T) {
	patch := `[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]`
	admit := func(_ context.Context, req *admissionv1.AdmissionRequest) Decision {
		switch {
		case strings.HasSuffix(string(req.UID), "deny"):
			return Deny(0, "no %s", "way")
		case strings.HasSuffix(string(req.UID), "panic"):
			var m map[string]int
			m["boom"]++ //nolint:staticcheck // SA5000: a nil-map write on purpose: the handler must not crash
		case strings.HasSuffix(string(req.UID), "effects"):
			return Decision{Allowed: true, Patch: []byte(patch), Effects: []Effect{testEffect("grant a"), testEffect("grant b")}, Warnings: []string{"careful"}}
		case strings.HasSuffix(string(req.UID), "refuse"):
			return Decision{Code: 403, Message: "no", Effects: []Effect{testEffect("never")}}
		}
		return Allow("OpenFeature is disabled")
	}
	cases := []struct {
		name        string
		method, ct  string
		body        string
		failApply   bool
		want        result
		wantApplied []string
	}{
		{name: "allowed with a message", method: "POST", ct: "application/json", body: review(t, "ok", false),
			want: result{Status: 200, UID: "u-ok", Allowed: true, Code: 200, Message: "OpenFeature is disabled"}},
		{name: "denied", method: "POST", ct: "application/json; charset=utf-8", body: review(t, "deny", false),
			want: result{Status: 200, UID: "u-deny", Code: 403, Reason: "Forbidden", Message: "no way"}},
		{name: "patch, warnings and effects applied in order", method: "POST", ct: "application/json", body: review(t, "effects", false),
			want:        result{Status: 200, UID: "u-effects", Allowed: true, Patch: patch, Warnings: []string{"careful"}},
			wantApplied: []string{"grant a", "grant b"}},
		{name: "dry-run: effects skipped", method: "POST", ct: "application/json", body: review(t, "effects", true),
			want: result{Status: 200, UID: "u-effects", Allowed: true, Patch: patch, Warnings: []string{"careful"}}},
		{name: "a failing effect denies", method: "POST", ct: "application/json", body: review(t, "effects", false), failApply: true,
			want: result{Status: 200, UID: "u-effects", Code: 500, Reason: "InternalError", Message: "grant a: etcd is down"}},
		{name: "a denial applies no effect", method: "POST", ct: "application/json", body: review(t, "refuse", false),
			want: result{Status: 200, UID: "u-refuse", Code: 403, Reason: "Forbidden", Message: "no"}},
		{name: "a panic denies", method: "POST", ct: "application/json", body: review(t, "panic", false),
			want: result{Status: 200, UID: "u-panic", Code: 500, Reason: "InternalError", Message: "internal error in webhook test; the request was not admitted"}},
		{name: "not JSON", method: "POST", ct: "application/json", body: "{", want: result{Status: 400, Code: 400, Reason: "BadRequest",
			Message: "the body is not an AdmissionReview: unexpected end of JSON input"}},
		{name: "no request", method: "POST", ct: "application/json", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
			want: result{Status: 400, Code: 400, Reason: "BadRequest", Message: "the AdmissionReview has no request"}},
		{name: "v1beta1", method: "POST", ct: "application/json", body: `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"old"}}`,
			want: result{Status: 200, UID: "old", Code: 400, Reason: "BadRequest",
				Message: `want an AdmissionReview of apiVersion admission.k8s.io/v1, got kind "AdmissionReview" of apiVersion "admission.k8s.io/v1beta1" (register the webhook with admissionReviewVersions: [v1])`}},
		{name: "wrong content type", method: "POST", ct: "application/yaml", body: review(t, "ok", false),
			want: result{Status: 415, Message: "Content-Type must be application/json (an AdmissionReview)"}},
		{name: "GET", method: "GET", want: result{Status: 405, Message: "admission webhooks answer POST only"}},
		{name: "too large", method: "POST", ct: "application/json", body: `{"x":"` + strings.Repeat("a", 2048) + `"}`,
			want: result{Status: 413, Code: 413, Reason: "RequestEntityTooLarge", Message: "AdmissionReview larger than 1024 bytes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			applier := &recordingApplier{}
			if tc.failApply {
				applier.err = errors.New("etcd is down")
			}
			h := &Handler{Name: "test", Admit: admit, Effects: applier, Log: zerolog.Nop(), MaxBody: 1024}
			if diff := cmp.Diff(tc.want, call(t, h, tc.method, tc.ct, tc.body)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantApplied, applier.applied); diff != "" {
				t.Errorf("effects applied (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzAdmissionReview: whatever the body, the handler answers (never panics, never
// 5xx) and echoes the request UID when there is a request to take it from.
func FuzzAdmissionReview(f *testing.F) {
	f.Add(review(f, "ok", false))
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"kind":"Pod"}}}`)
	f.Add(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`)
	f.Add(`[]`)
	h := &Handler{Name: "fuzz", Log: zerolog.Nop(), Admit: func(_ context.Context, req *admissionv1.AdmissionRequest) Decision {
		var obj map[string]any
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			return Deny(400, "object: %v", err)
		}
		return Allow("")
	}}
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/validate", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		var in admissionv1.AdmissionReview
		if json.Unmarshal([]byte(body), &in) != nil || in.Request == nil {
			return
		}
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.UID != in.Request.UID {
			t.Fatalf("request uid %q: response %s", in.Request.UID, rec.Body.String())
		}
	})
}
