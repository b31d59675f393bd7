package certs

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestRESTRequests checks what the REST clients send: paths of namespaced and
// cluster-scoped resources (client-go refuses an empty namespace with a name), the
// field selector of lists, and bodies typed with apiVersion and kind.
func TestRESTRequests(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var typed metav1.TypeMeta
		_ = json.Unmarshal(body, &typed)
		line := r.Method + " " + r.URL.Path
		if q := r.URL.RawQuery; q != "" {
			line += "?" + q
		}
		if typed.Kind != "" {
			line += " " + typed.APIVersion + " " + typed.Kind
		}
		mu.Lock()
		got = append(got, line)
		mu.Unlock()
		kind, apiVersion := "Secret", "v1"
		switch {
		case strings.Contains(r.URL.Path, "mutatingwebhookconfigurations"):
			kind, apiVersion = "MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1"
		case strings.Contains(r.URL.Path, "validatingwebhookconfigurations"):
			kind, apiVersion = "ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1"
		}
		if r.URL.Query().Has("fieldSelector") {
			kind += "List"
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"apiVersion":"`+apiVersion+`","kind":"`+kind+`","metadata":{"name":"x","resourceVersion":"7"}}`)
	}))
	defer srv.Close()
	c, err := restClients(&rest.Config{Host: srv.URL}, "ofo")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "tls", Namespace: "ofo", ResourceVersion: "6"}}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "m"}}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "v"}}
	sel := metav1.ListOptions{FieldSelector: "metadata.name=tls"}
	calls := []func() error{
		func() error { _, err := c.secrets.Get(ctx, "tls"); return err },
		func() error { _, err := c.secrets.Create(ctx, sec); return err },
		func() error { _, err := c.secrets.Update(ctx, sec); return err },
		func() error { _, err := c.secrets.List(ctx, sel); return err },
		func() error { _, err := c.mutating.Get(ctx, "m"); return err },
		func() error { _, err := c.mutating.Update(ctx, mwc); return err },
		func() error { _, err := c.validating.Update(ctx, vwc); return err },
		func() error {
			_, err := c.validating.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=v"})
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	want := []string{
		"GET /api/v1/namespaces/ofo/secrets/tls",
		"POST /api/v1/namespaces/ofo/secrets v1 Secret",
		"PUT /api/v1/namespaces/ofo/secrets/tls v1 Secret",
		"GET /api/v1/namespaces/ofo/secrets?fieldSelector=metadata.name%3Dtls",
		"GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m",
		"PUT /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m admissionregistration.k8s.io/v1 MutatingWebhookConfiguration",
		"PUT /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration",
		"GET /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations?fieldSelector=metadata.name%3Dv",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}
