package kube

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func writeKubeconfig(t *testing.T, server, context string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config")
	doc := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: ` + server + `}
users:
- name: u
  user: {token: secret-token}
contexts:
- name: ` + context + `
  context: {cluster: c, user: u}
- name: other
  context: {cluster: c, user: u, namespace: other}
current-context: ` + context + `
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigSources(t *testing.T) {
	explicit := writeKubeconfig(t, "https://explicit.example:6443", "main")
	fromEnv := writeKubeconfig(t, "https://env.example:6443", "main")
	t.Setenv("KUBECONFIG", fromEnv)
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a cluster

	cfg, err := Config(Options{Kubeconfig: explicit, QPS: 50, Burst: 100, UserAgent: "flagpole-test"})
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Host, UserAgent string
		QPS             float32
		Burst           int
	}
	if diff := cmp.Diff(summary{"https://explicit.example:6443", "flagpole-test", 50, 100},
		summary{cfg.Host, cfg.UserAgent, cfg.QPS, cfg.Burst}); diff != "" {
		t.Errorf("explicit kubeconfig wins over KUBECONFIG (-want +got):\n%s", diff)
	}
	cfg, err = Config(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://env.example:6443" {
		t.Errorf("KUBECONFIG: host %q", cfg.Host)
	}
	if _, err := Config(Options{Kubeconfig: explicit, Context: "missing"}); err == nil || !strings.Contains(err.Error(), explicit) {
		t.Errorf("unknown context: %v, want an error naming the kubeconfig", err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
	if _, err := Config(Options{}); err == nil || !strings.Contains(err.Error(), "KUBECONFIG") {
		t.Errorf("absent KUBECONFIG file: %v, want an error naming KUBECONFIG", err)
	}
}

// TestRESTClientCoreGroup reads a built-in type with a scheme holding only it: the
// core group is served under /api.
func TestRESTClientCoreGroup(t *testing.T) {
	var gotPath, gotAgent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAgent = r.URL.Path, r.UserAgent()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}})
	}))
	defer srv.Close()
	cfg, err := Config(Options{Kubeconfig: writeKubeconfig(t, srv.URL, "main"), UserAgent: "flagpole-test"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := RESTClient(cfg, corev1.SchemeGroupVersion, corev1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{}
	if err := rc.Get().Namespace("ns").Resource("serviceaccounts").Name("app").Do(context.Background()).Into(sa); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/api/v1/namespaces/ns/serviceaccounts/app" || gotAgent != "flagpole-test" || sa.Name != "app" {
		t.Errorf("path %q, user agent %q, object %q", gotPath, gotAgent, sa.Name)
	}
}

func TestResourceOf(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/namespaces/ns/pods":                                       "pods",
		"/api/v1/namespaces/ns/pods/p/status":                              "pods/status",
		"/apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/f/status": "flagds/status",
		"/apis/coordination.k8s.io/v1/namespaces/ops/leases/flagpole":      "leases",
		"/api/v1/namespaces/ns":                                            "namespaces",
		"/apis/gateway.networking.k8s.io/v1":                               "discovery",
		"/apis/rbac.authorization.k8s.io/v1/clusterroles":                  "clusterroles",
		"/healthz": "other",
	} {
		if got := resourceOf(path); got != want {
			t.Errorf("resourceOf(%q) = %q, want %q", path, got, want)
		}
	}
}
