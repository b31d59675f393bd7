package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/webhook"
)

// testCA is a CA that signs certificates on demand.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attack-test-ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serving issues a serving certificate valid from notBefore to notAfter for ips
// and dnsNames.
func (ca *testCA) serving(t *testing.T, notBefore, notAfter time.Time, ips []net.IP, dnsNames []string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "rogue-webhook"}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: ips, DNSNames: dnsNames}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAttackWebhookImpersonation: someone who takes over the webhook's address
// (a pod on the Service's IP, a hijacked DNS name) answers admissions with a patch
// of their own (a container added to every pod). The API server verifies the
// webhook's certificate against the caBundle, so a server presenting a certificate
// of another CA, an expired certificate of the right CA, or one of the right CA
// for another name is never sent a request; with failurePolicy Fail the pod is
// refused (fail closed) with an error naming the certificate problem. (Rotation
// and a Secret tampered with: TestWebhookCertsRotation, TestWebhookCertsSelfManaged,
// certs.TestReplacesUnusableSecret.)
func TestAttackWebhookImpersonation(t *testing.T) {
	c := suite.Cluster
	if c.ControlPlane == nil {
		t.Skip("the API server calls the webhook on 127.0.0.1: needs the local control plane")
	}
	ctx := t.Context()
	trusted := newTestCA(t)
	now := time.Now()
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	for name, cert := range map[string]tls.Certificate{
		"another CA":                     newTestCA(t).serving(t, now.Add(-time.Hour), now.Add(time.Hour), loopback, nil),
		"expired":                        trusted.serving(t, now.Add(-2*time.Hour), now.Add(-time.Hour), loopback, nil),
		"not yet valid":                  trusted.serving(t, now.Add(time.Hour), now.Add(2*time.Hour), loopback, nil),
		"another name":                   trusted.serving(t, now.Add(-time.Hour), now.Add(time.Hour), nil, []string{"flagpole-webhook.evil.example"}),
		"control: the right certificate": trusted.serving(t, now.Add(-time.Hour), now.Add(time.Hour), loopback, nil),
	} {
		t.Run(name, func(t *testing.T) {
			var called atomic.Int32
			rogue := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				called.Add(1)
				var review admissionv1.AdmissionReview
				_ = json.NewDecoder(r.Body).Decode(&review)
				patch := `[{"op":"add","path":"/spec/containers/-","value":{"name":"miner","image":"evil.example/miner"}}]`
				pt := admissionv1.PatchTypeJSONPatch
				review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true, Patch: []byte(patch), PatchType: &pt}
				review.Request = nil
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(&review)
			}))
			rogue.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			rogue.StartTLS()
			defer rogue.Close()

			ns := harness.Namespace(t, c, "impersonate")
			mutating, _ := webhook.Registration{MutatingName: "flagpole-e2e-" + ns, ValidatingName: "flagpole-e2e-" + ns, URL: rogue.URL}.Configurations()
			for i := range mutating.Webhooks {
				mutating.Webhooks[i].ClientConfig.CABundle = trusted.pem
				mutating.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
			}
			if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			defer func() {
				_ = c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, mutating.Name, metav1.DeleteOptions{})
			}()
			e := &webhookEnv{c: c, ns: ns}
			// The API server picks a new configuration up within a moment: dry runs
			// until the webhook is called or refused.
			var err error
			var containers int
			waitFor(t, "the configuration in effect", func() (bool, error) {
				pod, cerr := c.Kube.CoreV1().Pods(ns).Create(ctx, e.pod("app", rpc("flags")), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				err = cerr
				if cerr == nil {
					containers = len(pod.Spec.Containers)
				}
				return cerr != nil || containers == 2, cerr
			})
			if name == "control: the right certificate" { // the control: the same setup with a good certificate reaches the server
				if err != nil || called.Load() == 0 || containers != 2 {
					t.Fatalf("control case: %v, %d calls, %d containers", err, called.Load(), containers)
				}
				return
			}
			if err == nil {
				t.Fatalf("pod admitted through the rogue webhook (containers %d)", containers)
			}
			if n := called.Load(); n != 0 {
				t.Errorf("the API server sent %d requests to the rogue server", n)
			}
			if msg := err.Error(); !strings.Contains(msg, "failed calling webhook") || !strings.Contains(msg, "x509") && !strings.Contains(msg, "certificate") {
				t.Errorf("error %q, want the API server's certificate failure", msg)
			}
		})
	}
}
