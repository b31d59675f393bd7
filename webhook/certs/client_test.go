package certs

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	calls := []func() error{
		func() error { _, _, err := read(ctx, c.secrets, "tls"); return err },
		func() error { _, err := c.secrets.Create(ctx, sec); return err },
		func() error { _, err := c.secrets.Update(ctx, sec); return err },
		func() error { _, _, err := read(ctx, c.mutating, "m"); return err },
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
		"GET /api/v1/namespaces/ofo/secrets?fieldSelector=metadata.name%3Dtls",
		"POST /api/v1/namespaces/ofo/secrets v1 Secret",
		"PUT /api/v1/namespaces/ofo/secrets/tls v1 Secret",
		"GET /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations?fieldSelector=metadata.name%3Dm",
		"PUT /apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/m admissionregistration.k8s.io/v1 MutatingWebhookConfiguration",
		"PUT /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/v admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration",
		"GET /apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations?fieldSelector=metadata.name%3Dv",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
}

// withManagedFields adds n field managers' bookkeeping to an object, as the API
// server returns it after several server-side applies.
func withManagedFields(m metav1.Object, n int) {
	var entries []metav1.ManagedFieldsEntry
	for i := range n {
		entries = append(entries, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("manager-%d", i), Operation: metav1.ManagedFieldsOperationApply,
			APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fmt.Appendf(nil, `{"f:metadata":{"f:labels":{"f:team-%d":{}}}}`, i)}})
	}
	m.SetManagedFields(entries)
}

// TestInformerDropsManagedFields: the informers on the webhook's Secret and its
// webhook configurations (newInformer) cache them without managedFields, from the
// list and from the watch.
func TestInformerDropsManagedFields(t *testing.T) {
	api := newFakeAPI()
	c := api.clients("ops")
	secrets, ok := c.secrets.(*fakeObjects[*corev1.Secret])
	if !ok {
		t.Fatalf("secrets are a %T", c.secrets)
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "webhook-tls"}, Data: map[string][]byte{"ca.crt": []byte("x")}}
	withManagedFields(s, 3)
	secrets.set(s)
	changes, errs := make(chan struct{}, 16), make(chan error, 16)
	inf, err := newInformer(c.secrets, "webhook-tls", &corev1.Secret{}, func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}, func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	go inf.RunWithContext(t.Context())
	cachedSecret := func(want string) *corev1.Secret {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			obj, exists, err := inf.GetStore().GetByKey("ops/webhook-tls")
			if cached, ok := obj.(*corev1.Secret); err == nil && exists && ok && string(cached.Data["ca.crt"]) == want {
				return cached
			}
			select {
			case <-changes:
			case <-deadline:
				t.Fatalf("the Secret with ca.crt %q never reached the cache", want)
			}
		}
	}
	if got := cachedSecret("x"); len(got.ManagedFields) != 0 {
		t.Errorf("listed: the cached Secret keeps %d managedFields entries", len(got.ManagedFields))
	}
	s.Data["ca.crt"] = []byte("y")
	withManagedFields(s, 5)
	secrets.set(s)
	if got := cachedSecret("y"); len(got.ManagedFields) != 0 {
		t.Errorf("watched: the cached Secret keeps %d managedFields entries", len(got.ManagedFields))
	}
	if stored, exists, err := read(t.Context(), c.secrets, "webhook-tls"); err != nil || !exists || len(stored.ManagedFields) != 5 {
		t.Fatalf("the fake API's Secret: exists %v, %d managedFields entries, %v", exists, len(stored.ManagedFields), err)
	}
	select {
	case err := <-errs:
		t.Errorf("list or watch: %v", err)
	default:
	}
}

// TestReadListsByName: a live read is a list selected by name (the verb a rule
// restricted by resourceNames grants; there is no get), and tells a missing object
// from a refused read.
func TestReadListsByName(t *testing.T) {
	e := newEnv(t)
	api, c := e.api, e.c
	e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "webhook-tls"}, Data: map[string][]byte{"ca.crt": []byte("x")}})
	e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"}})

	got, exists, err := read(t.Context(), c.secrets, "webhook-tls")
	if err != nil || !exists || got.Name != "webhook-tls" || string(got.Data["ca.crt"]) != "x" {
		t.Errorf("present: %v, exists %v, %v", got, exists, err)
	}
	if got, exists, err := read(t.Context(), c.secrets, "missing"); err != nil || exists || got != nil {
		t.Errorf("missing: %v, exists %v, %v", got, exists, err)
	}
	want := []string{"list secrets metadata.name=webhook-tls", "list secrets metadata.name=missing"}
	if d := cmp.Diff(want, api.calls); d != "" {
		t.Errorf("requests (-want +got):\n%s", d)
	}
	api.react = func(verb, resource, _ string) error {
		return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "webhook-tls", fmt.Errorf("no %s", verb))
	}
	if _, exists, err := read(t.Context(), c.secrets, "webhook-tls"); !apierrors.IsForbidden(err) || exists {
		t.Errorf("refused: exists %v, %v (want the API server's Forbidden)", exists, err)
	}
}
