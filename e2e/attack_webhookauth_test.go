package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/webhook"
)

// TestAttackWebhookClientAuth closes the gap TestAttackForgedAdmissionReview
// leaves open: with --webhook-client-ca (the CA of the client certificate the API
// server presents, named in its AdmissionConfiguration's kubeConfigFile) and
// --webhook-client-names, the real API server's admissions are served (a pod is
// injected), while an attacker who reaches the webhook's port and posts an
// AdmissionReview of their own (a pod whose admission would create a grant, a
// file-source ConfigMap and an http-token Secret) is refused at the TLS handshake
// without a certificate, with a certificate of another CA carrying the API
// server's name, and with the cluster's own administrator certificate: nothing is
// written. The same review presented with the API server's certificate writes all
// three, so the review the attacker sends is one that would have had effects.
func TestAttackWebhookClientAuth(t *testing.T) {
	cp := suite.Cluster.ControlPlane
	if cp == nil {
		t.Skip("needs the local control plane (its API server presents the webhook client certificate)")
	}
	e := startWebhookWith(t, "--webhook-client-ca", cp.WebhookClientCA, "--webhook-client-names", harness.WebhookClientName)
	ctx := t.Context()

	// The API server's admission goes through: the pod is injected.
	e.source(t, "flags", v1beta1.Source{Source: "checkout", Provider: "kubernetes"})
	pod, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-a", rpc("flags")), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server's admission with client authentication on: %v", err)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "flagd" || pod.Annotations[webhook.AnnotationInjected] != "true" {
		t.Fatalf("not injected through the authenticated webhook: %v", pod.Spec.InitContainers)
	}

	// The attacker's review: a pod of ServiceAccount "intruder" naming a source
	// whose admission writes a grant (kubernetes), a ConfigMap (file) and a Secret
	// (http with a bearer token).
	if _, err := e.c.Kube.CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.source(t, "loot",
		v1beta1.Source{Source: "search", Provider: "kubernetes"},
		v1beta1.Source{Source: "checkout", Provider: "file"},
		v1beta1.Source{Source: "https://flags.example.com/f.json", Provider: "http", HTTPSyncBearerToken: "loot-token-7c1e"})
	forged := e.pod("forged", rpc("loot"))
	forged.Spec.ServiceAccountName = "intruder"
	forged.Namespace = e.ns
	body := admissionReview(t, forged, "forged-auth-1")
	before := e.managedObjects(t)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.hook.CABundle)
	url := "https://" + e.hook.Address + webhook.PathMutatePod
	otherCA := newTestCA(t)
	admin, err := tls.LoadX509KeyPair(cp.Config.CertFile, cp.Config.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, reason string
		certs        []tls.Certificate
	}{
		{"no client certificate", "missing", nil},
		{"a certificate of another CA with the API server's name", "untrusted", []tls.Certificate{otherCA.client(t, harness.WebhookClientName)}},
		{"the cluster administrator's certificate (system:masters, the cluster's client CA)", "untrusted", []tls.Certificate{admin}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer, err := postReview(t, url, pool, body, tc.certs...)
			if err == nil {
				t.Fatalf("the webhook answered the attacker: %s", answer)
			}
			if alert := tlsAlert(e.hook.Address, pool, tc.certs...); alert == nil || !strings.Contains(alert.Error(), "remote error: tls: ") {
				t.Errorf("a raw TLS client got %v, want the webhook's TLS alert", alert)
			}
			t.Logf("refused: %v", err)
		})
	}
	if after := e.managedObjects(t); !slices.Equal(before, after) {
		t.Errorf("the refused reviews wrote objects: before %v, after %v", before, after)
	}
	metrics := scrape(t, "http://"+e.hook.Management+"/metrics")
	for _, want := range []string{`flagpole_client_certificate_refusals_total{listener="webhook",reason="missing"} 2`,
		`flagpole_client_certificate_refusals_total{listener="webhook",reason="untrusted"} 4`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !slices.ContainsFunc(e.hook.Logs(), func(l harness.LogEntry) bool {
		return l.Level() == "warn" && strings.Contains(l.Message(), "refused a TLS client")
	}) {
		t.Error("no warning logged for the refused callers")
	}

	// Control: the same review with the API server's certificate is answered and
	// writes the grant, the ConfigMap and the Secret.
	apiserver, err := tls.LoadX509KeyPair(cp.WebhookClientCert, cp.WebhookClientKey)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := postReview(t, url, pool, body, apiserver)
	if err != nil || !strings.Contains(answer, `"allowed":true`) {
		t.Fatalf("the review with the API server's certificate: %s %v", answer, err)
	}
	after := e.managedObjects(t)
	for _, want := range []string{"Role " + "flagpole-featureflags-" + e.ns + ".intruder", "ConfigMap checkout", "Secret flagpole-http-auth-"} {
		if !slices.ContainsFunc(after, func(o string) bool { return strings.HasPrefix(o, want) && !slices.Contains(before, o) }) {
			t.Errorf("the authenticated review did not write %s (objects %v): the refused review would have had no effect to prevent", want, after)
		}
	}
}

// client issues a client certificate for cn.
func (ca *testCA) client(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// admissionReview is the JSON of a CREATE review of pod.
func admissionReview(t *testing.T, pod *corev1.Pod, uid string) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	dryRun := false
	body, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: pod.Namespace, Name: pod.Name,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}, DryRun: &dryRun}})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// postReview posts body to url over a new connection presenting certs; it returns
// the answer, or the error of the request.
func postReview(t *testing.T, url string, roots *x509.CertPool, body []byte, certs ...tls.Certificate) (string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return string(data), err
}

// tlsAlert dials addr presenting certs, sends a request and reads: it returns the
// error of the handshake or of the first read (in TLS 1.3 the server's alert
// arrives after the client's handshake has ended).
func tlsAlert(addr string, roots *x509.CertPool, certs ...tls.Certificate) error {
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "POST "+webhook.PathMutatePod+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// managedObjects lists the flagpole-labelled Roles, RoleBindings, ConfigMaps and
// Secrets of the namespace, as sorted "Kind name".
func (e *webhookEnv) managedObjects(t *testing.T) []string {
	t.Helper()
	ctx := t.Context()
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=flagpole"}
	var out []string
	roles, err := e.c.Kube.RbacV1().Roles(e.ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range roles.Items {
		out = append(out, "Role "+o.Name)
	}
	bindings, err := e.c.Kube.RbacV1().RoleBindings(e.ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range bindings.Items {
		out = append(out, "RoleBinding "+o.Name)
	}
	cms, err := e.c.Kube.CoreV1().ConfigMaps(e.ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		out = append(out, "ConfigMap "+o.Name)
	}
	secrets, err := e.c.Kube.CoreV1().Secrets(e.ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secrets.Items {
		out = append(out, "Secret "+o.Name)
	}
	slices.Sort(out)
	return out
}
