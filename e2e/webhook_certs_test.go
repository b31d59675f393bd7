package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/webhook"
	"github.com/flagpole-dev/flagpole/webhook/certs"
)

// certsTimeout bounds each wait of the webhook certificate scenarios (the events
// they wait for take milliseconds; rotations are timed by the lifetimes).
const certsTimeout = 60 * time.Second

// certsScenario is a self-managed certs.Source running as a least-privileged
// ServiceAccount against the API server, an HTTPS admission server using it, and a
// Mutating- and a ValidatingWebhookConfiguration registered by URL
// (https://127.0.0.1:<port>/...) for ConfigMaps created in the scenario's namespace.
type certsScenario struct {
	t          *testing.T
	c          *harness.Cluster
	ns         string
	secret     string
	mutating   string
	validating string
	src        *certs.Source
	addr       string
	admissions atomic.Int64 // admission requests answered
	logs       *syncBuffer
}

// startCerts sets the scenario up. The webhook configurations exist with an empty
// caBundle before the Source starts.
func startCerts(t *testing.T, caLifetime, servingLifetime time.Duration) *certsScenario {
	t.Helper()
	c := suite.Cluster
	ns := harness.Namespace(t, c, "certs")
	s := &certsScenario{t: t, c: c, ns: ns, secret: "flagpole-webhook-tls", mutating: ns + "-mutating", validating: ns + "-validating", logs: &syncBuffer{}}
	ctx := t.Context()
	cfg := s.serviceAccountConfig(ctx)

	ln, err := server.Listen(server.ListenConfig{Name: "webhook", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.createWebhookConfigurations(ctx)

	log := zerolog.New(s.logs).With().Timestamp().Logger()
	s.src, err = certs.New(certs.Options{
		Config: cfg, Namespace: ns, SecretName: s.secret, ServiceName: "flagpole-webhook", Hosts: []string{"127.0.0.1"},
		MutatingWebhookConfigurations: []string{s.mutating}, ValidatingWebhookConfigurations: []string{s.validating},
		CALifetime: caLifetime, ServingLifetime: servingLifetime, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	allow := func(context.Context, *admissionv1.AdmissionRequest) webhook.Decision {
		s.admissions.Add(1)
		return webhook.Allow("")
	}
	mux := http.NewServeMux()
	mux.Handle("/mutate", &webhook.Handler{Name: "mutate", Admit: allow, Log: log})
	mux.Handle("/validate", &webhook.Handler{Name: "validate", Admit: allow, Log: log})

	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.src.Run(runCtx); err != nil {
			t.Errorf("certs.Source.Run: %v", err)
		}
	})
	wg.Go(func() {
		if err := server.Serve(runCtx, ln, server.ListenConfig{Name: "webhook", TLS: s.src.TLSConfig(), ReadHeaderTimeout: 10 * time.Second}, mux, log, nil); err != nil {
			t.Errorf("admission server: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cleanup, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(cleanup, s.mutating, metav1.DeleteOptions{})
		_ = c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(cleanup, s.validating, metav1.DeleteOptions{})
		_ = c.Kube.RbacV1().ClusterRoleBindings().Delete(cleanup, ns+"-webhook-certs", metav1.DeleteOptions{})
		_ = c.Kube.RbacV1().ClusterRoles().Delete(cleanup, ns+"-webhook-certs", metav1.DeleteOptions{})
		if t.Failed() {
			t.Logf("certs and admission log:\n%s", s.logs.String())
		}
	})
	return s
}

// serviceAccountConfig creates the ServiceAccount with exactly the RBAC that
// docs/webhook.md documents, and returns a client configuration with its token.
func (s *certsScenario) serviceAccountConfig(ctx context.Context) *rest.Config {
	t, c, ns := s.t, s.c, s.ns
	const sa = "flagpole-webhook"
	if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "webhook-certs"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{s.secret}, Verbs: []string{"list", "watch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}}, // create cannot be limited by resourceNames
	}}
	clusterRole := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-webhook-certs"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, ResourceNames: []string{s.mutating}, Verbs: []string{"list", "watch", "update"}},
		{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"validatingwebhookconfigurations"}, ResourceNames: []string{s.validating}, Verbs: []string{"list", "watch", "update"}},
	}}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}
	if _, err := c.Kube.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "webhook-certs"}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.RbacV1().ClusterRoles().Create(ctx, clusterRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: clusterRole.Name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(suite.TempDir(t), "webhook.kubeconfig")
	if err := c.TokenKubeconfig(ctx, ns, sa, path); err != nil {
		t.Fatal(err)
	}
	cfg, err := kube.Config(kube.Options{Kubeconfig: path, UserAgent: "flagpole-webhook-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// createWebhookConfigurations registers the admission server for ConfigMaps created
// in the scenario's namespace, with failurePolicy Fail and no caBundle.
func (s *certsScenario) createWebhookConfigurations(ctx context.Context) {
	fail, none := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone
	timeout := int32(10)
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": s.ns}}
	url := func(path string) *string { u := "https://" + s.addr + path; return &u }
	_, err := s.c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: s.mutating},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "mutate.certs.flagpole.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url("/mutate")},
			Rules: rules, NamespaceSelector: selector, FailurePolicy: &fail, SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	_, err = s.c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: s.validating},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "validate.certs.flagpole.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url("/validate")},
			Rules: rules, NamespaceSelector: selector, FailurePolicy: &fail, SideEffects: &none,
			AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
}

// bundles returns the caBundle of the mutating and of the validating webhook.
func (s *certsScenario) bundles(ctx context.Context) (mutating, validating []byte, err error) {
	m, err := s.c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, s.mutating, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	v, err := s.c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, s.validating, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	return m.Webhooks[0].ClientConfig.CABundle, v.Webhooks[0].ClientConfig.CABundle, nil
}

// waitPatched waits until the Secret exists, both caBundles equal its ca.crt and
// the Source is ready, and returns the Secret's data.
func (s *certsScenario) waitPatched(ctx context.Context, what string, cond func(data map[string][]byte) bool) map[string][]byte {
	s.t.Helper()
	var data map[string][]byte
	var last string
	deadline := time.Now().Add(certsTimeout)
	for {
		sec, err := s.c.Kube.CoreV1().Secrets(s.ns).Get(ctx, s.secret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			last = "no Secret"
		case err != nil:
			last = err.Error()
		default:
			data = sec.Data
			m, v, err := s.bundles(ctx)
			switch {
			case err != nil:
				last = err.Error()
			case !bytes.Equal(m, data["ca.crt"]) || !bytes.Equal(v, data["ca.crt"]):
				last = "caBundles differ from ca.crt"
			case s.src.Healthy() != nil:
				last = s.src.Healthy().Error()
			case cond != nil && !cond(data):
				last = "the Secret is not yet " + what
			default:
				return data
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("waiting for %s: %s", what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handshake connects to the admission server as the API server would: trusting
// only bundle, for the IP address it is registered with.
func (s *certsScenario) handshake(bundle []byte) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, fmt.Errorf("no certificate in the caBundle")
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	conn, err := d.Dial("tcp", s.addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// admit creates a ConfigMap in the namespace, which both webhooks must admit.
func (s *certsScenario) admit(ctx context.Context, name string) error {
	before := s.admissions.Load()
	_, err := s.c.Kube.CoreV1().ConfigMaps(s.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	if got := s.admissions.Load() - before; got < 2 {
		return fmt.Errorf("ConfigMap %s admitted with %d webhook calls, want 2", name, got)
	}
	return nil
}

// TestWebhookCertsSelfManaged runs the self-managed certificates against the API
// server as a ServiceAccount with only the documented RBAC: the Secret is created
// and both caBundles patched; the API server admits through the webhooks and a
// client trusting only the caBundle completes a handshake; a caBundle reset (as by
// kubectl apply) is repaired; a deleted Secret is re-issued with a new CA and
// re-patched, and the running server serves the new certificate.
func TestWebhookCertsSelfManaged(t *testing.T) {
	t.Parallel()
	s := startCerts(t, 0, 0)
	ctx := t.Context()
	start := time.Now()
	data := s.waitPatched(ctx, "created", nil)
	t.Logf("Secret created, caBundles patched and ready in %s", time.Since(start).Round(time.Millisecond))
	sec, err := s.c.Kube.CoreV1().Secrets(s.ns).Get(ctx, s.secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range sec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got := fmt.Sprintf("%s %v", sec.Type, keys); got != "kubernetes.io/tls [ca.crt ca.key tls.crt tls.key]" {
		t.Errorf("Secret type and keys: %s", got)
	}
	first, err := s.handshake(data["ca.crt"])
	if err != nil {
		t.Fatalf("a client trusting the caBundle: %v", err)
	}
	if err := s.admit(ctx, "first"); err != nil {
		t.Fatalf("admission through the webhooks: %v", err)
	}

	// kubectl apply of the original manifest resets the caBundle.
	v, err := s.c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, s.validating, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v.Webhooks[0].ClientConfig.CABundle = nil
	if _, err := s.c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s.waitPatched(ctx, "repaired", nil)
	t.Logf("caBundle reset repaired in %s", time.Since(start).Round(time.Millisecond))

	// The Secret is deleted: a new CA, a new serving certificate, new caBundles.
	if err := s.c.Kube.CoreV1().Secrets(s.ns).Delete(ctx, s.secret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	renewed := s.waitPatched(ctx, "re-issued", func(d map[string][]byte) bool { return !bytes.Equal(d["ca.crt"], data["ca.crt"]) })
	t.Logf("deleted Secret re-issued and caBundles re-patched in %s", time.Since(start).Round(time.Millisecond))
	second, err := s.handshake(renewed["ca.crt"])
	if err != nil {
		t.Fatalf("a client trusting the new caBundle: %v", err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("the same serving certificate after the Secret was re-issued")
	}
	if _, err := s.handshake(data["ca.crt"]); err == nil {
		t.Error("a client trusting only the deleted CA still completes a handshake")
	}
	if err := eventuallyAdmit(ctx, s, "second"); err != nil {
		t.Fatalf("admission after the re-issue: %v", err)
	}
}

// eventuallyAdmit retries admit while the API server may still hold the previous
// caBundle (it reads webhook configurations from its own watch).
func eventuallyAdmit(ctx context.Context, s *certsScenario, name string) error {
	deadline := time.Now().Add(certsTimeout)
	for {
		err := s.admit(ctx, name)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWebhookCertsRotation runs with short lifetimes (CA 45 s, serving 15 s) until
// the CA has been renewed, the new CA signs what is served, and the old CA has
// expired and left the bundle. Throughout, a ConfigMap is created every 250 ms
// (both webhooks must admit it: the API server trusts what is served) and a
// client trusting only the current caBundle completes a handshake; the server
// is never restarted.
func TestWebhookCertsRotation(t *testing.T) {
	t.Parallel()
	s := startCerts(t, 45*time.Second, 15*time.Second)
	ctx := t.Context()
	s.waitPatched(ctx, "created", nil)
	var (
		admitted, handshakes int
		serials              = map[string]bool{}
		sawTwo, sawNewServed bool
		newCA                *x509.Certificate
	)
	start := time.Now()
	for i := 0; ; i++ {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("after 3 minutes: two CAs seen %v, served by the new CA %v, %d serving certificates", sawTwo, sawNewServed, len(serials))
		}
		if err := s.admit(ctx, fmt.Sprintf("cm-%d", i)); err != nil {
			t.Fatalf("admission %d at %s failed during rotation: %v", i, time.Since(start).Round(time.Millisecond), err)
		}
		admitted++
		_, v, err := s.bundles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := s.handshake(v)
		if err != nil {
			t.Fatalf("handshake %d at %s with the current caBundle: %v", i, time.Since(start).Round(time.Millisecond), err)
		}
		handshakes++
		serials[leaf.SerialNumber.String()] = true
		cas, err := parsePEM(v)
		if err != nil {
			t.Fatal(err)
		}
		if len(cas) == 2 && newCA == nil {
			newCA = cas[0]
			sawTwo = true
			t.Logf("CA renewed at %s; the bundle holds both CAs", time.Since(start).Round(time.Millisecond))
		}
		if newCA != nil && !sawNewServed && leaf.CheckSignatureFrom(newCA) == nil {
			sawNewServed = true
			t.Logf("the new CA signs the certificate served from %s", time.Since(start).Round(time.Millisecond))
		}
		if sawNewServed && len(cas) == 1 && cas[0].Equal(newCA) {
			t.Logf("the old CA expired and left the bundle at %s", time.Since(start).Round(time.Millisecond))
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("%d admissions and %d handshakes, all successful, over %d serving certificates in %s", admitted, handshakes, len(serials), time.Since(start).Round(time.Second))
	if len(serials) < 3 {
		t.Errorf("only %d serving certificates seen; want renewals", len(serials))
	}
}

// parsePEM parses the certificates of a PEM bundle.
func parsePEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// syncBuffer is a log sink shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
