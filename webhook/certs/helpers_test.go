package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
)

const (
	testNamespace = "flagpole-system"
	testService   = "flagpole-webhook"
	testSecret    = "flagpole-webhook-tls"
	testMutating  = "flagpole-mutating"
	testValidate  = "flagpole-validating"
)

// testServerNames are the names a client may dial the webhook by.
var testServerNames = []string{"flagpole-webhook.flagpole-system.svc", "flagpole-webhook.flagpole-system.svc.cluster.local", "webhook.example.test", "127.0.0.1"}

// env is a fake API server and a fake clock shared by the managers of one test.
type env struct {
	t   *testing.T
	api *fakeAPI
	c   clients
	clk *testingclock.FakeClock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	api := newFakeAPI()
	return &env{t: t, api: api, c: api.clients(testNamespace), clk: testingclock.NewFakeClock(time.Now().Truncate(time.Second))}
}

func (e *env) secrets() *fakeObjects[*corev1.Secret] {
	return e.c.secrets.(*fakeObjects[*corev1.Secret])
}
func (e *env) mutating() *fakeObjects[*admissionregistrationv1.MutatingWebhookConfiguration] {
	return e.c.mutating.(*fakeObjects[*admissionregistrationv1.MutatingWebhookConfiguration])
}
func (e *env) validating() *fakeObjects[*admissionregistrationv1.ValidatingWebhookConfiguration] {
	return e.c.validating.(*fakeObjects[*admissionregistrationv1.ValidatingWebhookConfiguration])
}

// options are the self-managed options of the tests.
func options(t *testing.T) Options {
	t.Helper()
	return Options{
		Namespace: testNamespace, ServiceName: testService, Hosts: []string{"webhook.example.test", "127.0.0.1"},
		MutatingWebhookConfigurations: []string{testMutating}, ValidatingWebhookConfigurations: []string{testValidate},
		Log: testLogger(t),
	}
}

// testLogger writes to the test's log.
func testLogger(t *testing.T) zerolog.Logger {
	t.Helper()
	return zerolog.New(zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))).Level(zerolog.DebugLevel)
}

// webhookConfigs creates the two webhook configurations, each with two webhooks
// and no caBundle.
func (e *env) webhookConfigs() {
	clientConfig := func(path string) admissionregistrationv1.WebhookClientConfig {
		url := "https://127.0.0.1:9443/" + path
		return admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	e.mutating().set(&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testMutating},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "a.flagpole.dev", ClientConfig: clientConfig("a")}, {Name: "b.flagpole.dev", ClientConfig: clientConfig("b")}}})
	e.validating().set(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testValidate},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "c.flagpole.dev", ClientConfig: clientConfig("c")}, {Name: "d.flagpole.dev", ClientConfig: clientConfig("d")}}})
}

// bundles returns every caBundle of both configurations, mutating first.
func (e *env) bundles() []string {
	var out []string
	if c, ok := e.mutating().get(testMutating); ok {
		for _, w := range c.Webhooks {
			out = append(out, string(w.ClientConfig.CABundle))
		}
	}
	if c, ok := e.validating().get(testValidate); ok {
		for _, w := range c.Webhooks {
			out = append(out, string(w.ClientConfig.CABundle))
		}
	}
	return out
}

// secret returns the Secret's data (nil if missing).
func (e *env) secret() map[string][]byte {
	s, ok := e.secrets().get(testSecret)
	if !ok {
		return nil
	}
	return s.Data
}

// running is a Source whose Run runs until the test ends.
type running struct {
	src *Source
	m   *manager

	mu   sync.Mutex
	last time.Time // the clock's time at the start of the last finished reconcile
}

// start runs a self-managed Source on the env.
func (e *env) start(o Options) *running {
	e.t.Helper()
	src, err := newSource(o, e.clk, &e.c)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &running{src: src, m: src.b.(*manager)}
	r.m.reconciled = func(at time.Time) {
		r.mu.Lock()
		r.last = at
		r.mu.Unlock()
	}
	runSource(e.t, src)
	return r
}

// runSource runs src.Run until the test ends, and checks that it returns nil.
func runSource(t *testing.T, src *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of its context ending")
		}
	})
}

// advance sets the clock to at and waits until each manager has reconciled at
// that time or later.
func (e *env) advance(at time.Time, rs ...*running) {
	e.t.Helper()
	e.clk.SetTime(at)
	for _, r := range rs {
		r.m.kick()
		eventually(e.t, fmt.Sprintf("a reconcile at %s", at), func() bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return !r.last.Before(at)
		})
	}
}

// eventually polls cond until it holds, failing the test after 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 10 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// handshake runs a TLS handshake against src with a client trusting only roots
// (PEM) at the given time, and returns the certificate presented.
func handshake(src *Source, roots []byte, serverName string, now time.Time) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if len(roots) > 0 && !pool.AppendCertsFromPEM(roots) {
		return nil, fmt.Errorf("no certificate in the roots")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	deadline := time.Now().Add(10 * time.Second)
	go func() {
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		defer sc.Close()
		_ = sc.SetDeadline(deadline)
		_ = tls.Server(sc, src.TLSConfig()).Handshake()
	}()
	cc, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	_ = cc.SetDeadline(deadline)
	c := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: serverName, Time: func() time.Time { return now }, MinVersion: tls.VersionTLS12})
	if err := c.Handshake(); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

// mustHandshake handshakes with every test server name and returns the serial
// presented.
func mustHandshake(t *testing.T, src *Source, roots []byte, now time.Time) string {
	t.Helper()
	serial := ""
	for _, name := range testServerNames {
		c, err := handshake(src, roots, name, now)
		if err != nil {
			t.Fatalf("handshake as %s: %v", name, err)
		}
		serial = c.SerialNumber.Text(16)
	}
	return serial
}

// parsed returns the certificates of PEM data (failing the test on an error).
func parsed(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := parseCertificates(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// fingerprints of the certificates in PEM data.
func fingerprints(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	for _, c := range parsed(t, data) {
		out = append(out, fingerprint(c))
	}
	return out
}

// issuerOf returns the fingerprint of the CA of bundle that signed cert ("" if none).
func issuerOf(cert *x509.Certificate, bundle []*x509.Certificate) string {
	for _, ca := range bundle {
		if cert.CheckSignatureFrom(ca) == nil {
			return fingerprint(ca)
		}
	}
	return ""
}

// contains reports whether s contains every part.
func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// prometheusRegistry registers src's metrics with a new registry.
func prometheusRegistry(t *testing.T, src *Source) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := src.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}
