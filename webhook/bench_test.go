package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/rs/zerolog"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// BenchmarkAdmitPod is one pod admission in steady state (the grant exists: no side
// effect), through the HTTP handler: decode the AdmissionReview, decide, patch,
// encode the answer.
func BenchmarkAdmitPod(b *testing.B) {
	objs := baseObjects()
	in := newInjector(objs)
	d := in.Admit(context.Background(), request(b, rpcPod("flags")))
	for _, e := range d.Effects {
		g := e.(sidecar.GrantFlags)
		objs.Roles = append(objs.Roles, sidecar.GrantRole(g))
		objs.RoleBindings = append(objs.RoleBindings, sidecar.GrantBinding(g))
	}
	h := &Handler{Name: "mutate-pods", Admit: in.Admit, Log: zerolog.Nop()}
	review, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: request(b, rpcPod("flags"))})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, PathMutatePod, strings.NewReader(string(review)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"patch"`) {
			b.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
	}
}

func request(tb testing.TB, pod any) *admissionv1.AdmissionRequest {
	tb.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		tb.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{UID: "u", Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}}
}
