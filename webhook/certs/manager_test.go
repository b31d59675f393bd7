package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFirstStartCreatesTheSecret starts a manager in an empty namespace: it creates
// the Secret (one create, no update) with an ECDSA P-256 CA and serving certificate
// for the Service's names and the extra hosts, sets every caBundle, serves the
// certificate and becomes ready.
func TestFirstStartCreatesTheSecret(t *testing.T) {
	e := newEnv(t)
	e.webhookConfigs()
	start := e.clk.Now()
	r := e.start(options(t))
	eventually(t, "a ready source", r.src.Ready)
	data := e.secret()
	eventually(t, "caBundles set", func() bool {
		return cmp.Equal(e.bundles(), []string{string(data[keyCACert]), string(data[keyCACert]), string(data[keyCACert]), string(data[keyCACert])})
	})

	sec, _ := e.secrets().get(testSecret)
	type facts struct {
		Type                  corev1.SecretType
		Keys                  []string
		CAs                   int
		CAIsCA                bool
		CACurve, ServingCurve string
		CALifetime            time.Duration
		ServingLifetime       time.Duration
		DNSNames              []string
		IPs                   []string
		Creates, Updates      int
	}
	ca := parsed(t, data[keyCACert])
	leaf := parsed(t, data[keyCert])[0]
	curve := func(c *x509.Certificate) string {
		if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return "P-256"
		}
		return "other"
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	var keys []string
	for k := range sec.Data {
		keys = append(keys, k)
	}
	got := facts{
		Type: sec.Type, Keys: keys, CAs: len(ca), CAIsCA: ca[0].IsCA, CACurve: curve(ca[0]), ServingCurve: curve(leaf),
		CALifetime: ca[0].NotAfter.Sub(start), ServingLifetime: leaf.NotAfter.Sub(start),
		DNSNames: leaf.DNSNames, IPs: ips,
		Creates: e.api.count("create", "secrets"), Updates: e.api.count("update", "secrets"),
	}
	want := facts{
		Type: corev1.SecretTypeTLS, Keys: []string{keyCACert, keyCAKey, keyCert, keyKey}, CAs: 1, CAIsCA: true, CACurve: "P-256", ServingCurve: "P-256",
		CALifetime: DefaultCALifetime, ServingLifetime: DefaultServingLifetime,
		DNSNames: []string{"flagpole-webhook.flagpole-system.svc", "flagpole-webhook.flagpole-system.svc.cluster.local", "webhook.example.test"},
		IPs:      []string{"127.0.0.1"},
		Creates:  1, Updates: 0,
	}
	if d := cmp.Diff(want, got, cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		sortStrings(out)
		return out
	})); d != "" {
		t.Errorf("the new Secret (-want +got):\n%s", d)
	}
	if got := mustHandshake(t, r.src, data[keyCACert], e.clk.Now()); got != leaf.SerialNumber.Text(16) {
		t.Errorf("served serial %s, the Secret holds %s", got, leaf.SerialNumber.Text(16))
	}
}

// TestRacingManagersShareOneSecret starts two managers at once on an empty
// namespace, their creates held until both are on their way: one creates the
// Secret, the other gets AlreadyExists, reads it and adopts it as is. Both serve
// the same certificate and nothing is updated.
func TestRacingManagersShareOneSecret(t *testing.T) {
	e := newEnv(t)
	e.webhookConfigs()
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	e.api.react = func(verb, resource, _ string) error {
		if verb == "create" && resource == "secrets" {
			mu.Lock()
			arrived++
			if arrived == 2 {
				close(both)
			}
			mu.Unlock()
			select {
			case <-both:
			case <-time.After(10 * time.Second):
				return errors.New("the other manager never tried to create the Secret")
			}
		}
		return nil
	}
	a, b := e.start(options(t)), e.start(options(t))
	eventually(t, "both ready", func() bool { return a.src.Ready() && b.src.Ready() })
	ca := e.secret()[keyCACert]
	sa := mustHandshake(t, a.src, ca, e.clk.Now())
	sb := mustHandshake(t, b.src, ca, e.clk.Now())
	if sa != sb {
		t.Errorf("the managers serve different certificates: %s and %s", sa, sb)
	}
	if got := []int{e.api.count("create", "secrets"), e.api.count("update", "secrets")}; !cmp.Equal(got, []int{2, 0}) {
		t.Errorf("creates, updates of the Secret = %v, want [2 0] (one create loses, nothing is rewritten)", got)
	}
	eventually(t, "caBundles set", func() bool { return e.bundles()[0] == string(ca) && e.bundles()[3] == string(ca) })
}

// testSecretData makes the data of a valid Secret at now: a CA and a serving
// certificate for the test hosts.
func testSecretData(t *testing.T, now time.Time) map[string][]byte {
	t.Helper()
	ca, err := newCA(now, DefaultCALifetime)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServing(now, DefaultServingLifetime, ca.cert, ca.key, testHosts())
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{keyCACert: ca.certPEM, keyCAKey: ca.keyPEM, keyCert: s.certPEM, keyKey: s.keyPEM}
}

// testHosts are the hosts options(t) asks for.
func testHosts() hosts {
	return hosts{dns: testServerNames[:3], ips: []net.IP{net.ParseIP("127.0.0.1")}}
}

// TestAdoptsValidSecret starts on an existing valid Secret (ours, and one made by
// someone else with an RSA CA and PKCS #1 keys): it is used as is, not written.
func TestAdoptsValidSecret(t *testing.T) {
	foreign := func(t *testing.T, now time.Time) map[string][]byte {
		t.Helper()
		ca, caPEM, caKeyPEM := rsaCA(t, now)
		s, err := newServing(now, 24*time.Hour, ca.cert, ca.key, testHosts())
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]byte{keyCACert: caPEM, keyCAKey: caKeyPEM, keyCert: s.certPEM, keyKey: s.keyPEM}
	}
	for name, data := range map[string]func(*testing.T, time.Time) map[string][]byte{"ours": testSecretData, "foreign RSA CA": foreign} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.webhookConfigs()
			d := data(t, e.clk.Now())
			d["unrelated"] = []byte("kept")
			e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret, Labels: map[string]string{"team": "platform"}}, Type: corev1.SecretTypeOpaque, Data: d})
			r := e.start(options(t))
			eventually(t, "a ready source", r.src.Ready)
			e.advance(e.clk.Now().Add(time.Minute), r)
			if d := cmp.Diff(d, e.secret()); d != "" {
				t.Errorf("the Secret changed (-before +after):\n%s", d)
			}
			if n := e.api.count("create", "secrets") + e.api.count("update", "secrets"); n != 0 {
				t.Errorf("%d writes of a valid Secret", n)
			}
			want := parsed(t, d[keyCert])[0].SerialNumber.Text(16)
			if got := mustHandshake(t, r.src, d[keyCACert], e.clk.Now()); got != want {
				t.Errorf("served serial %s, want the Secret's %s", got, want)
			}
			eventually(t, "caBundles set", func() bool { return e.bundles()[0] == string(d[keyCACert]) })
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestReplacesUnusableSecret starts on Secrets with unusable contents. An unusable
// CA replaces the whole Secret's certificates; an unusable serving certificate is
// re-issued by the Secret's CA. Other keys stay; the Secret is updated in place
// (with its resourceVersion), never deleted.
func TestReplacesUnusableSecret(t *testing.T) {
	other := testSecretData
	tests := []struct {
		name           string
		corrupt        func(t *testing.T, now time.Time, d map[string][]byte)
		newCA, newCert bool
		log            string // in the reason logged (as a warning unless the Secret was empty)
	}{
		{"empty placeholder", func(_ *testing.T, _ time.Time, d map[string][]byte) { clear(d) }, true, true, "the Secret was empty"},
		{"garbage ca.crt", func(_ *testing.T, _ time.Time, d map[string][]byte) { d[keyCACert] = []byte("not PEM") }, true, true, "ca.crt: no PEM certificate"},
		{"ca.key of another CA", func(t *testing.T, now time.Time, d map[string][]byte) { d[keyCAKey] = other(t, now)[keyCAKey] }, true, true, "ca.key does not match"}, //nolint:thelper // a step of this test case, not a helper: its failures point here
		{"ca.key missing", func(_ *testing.T, _ time.Time, d map[string][]byte) { delete(d, keyCAKey) }, true, true, "no ca.key"},
		{"expired CA", func(t *testing.T, now time.Time, d map[string][]byte) { //nolint:thelper // a step of this test case, not a helper: its failures point here
			maps := testSecretData(t, now.Add(-2*DefaultCALifetime))
			d[keyCACert], d[keyCAKey] = maps[keyCACert], maps[keyCAKey]
		}, true, true, "the CA expired"},
		{"ca.crt is not a CA", func(_ *testing.T, _ time.Time, d map[string][]byte) {
			d[keyCACert], d[keyCAKey] = d[keyCert], d[keyKey]
		}, true, true, "is not a CA"},
		{"a private key in ca.crt", func(_ *testing.T, _ time.Time, d map[string][]byte) {
			d[keyCACert] = append(d[keyCACert], d[keyCAKey]...)
		}, true, true, "PEM block 2 is a"},
		{"only a CA of one's own", func(_ *testing.T, _ time.Time, d map[string][]byte) { delete(d, keyCert); delete(d, keyKey) }, false, true, "new serving certificate (no tls.crt)"},
		{"garbage tls.crt", func(_ *testing.T, _ time.Time, d map[string][]byte) { d[keyCert] = []byte("garbage") }, false, true, "tls.crt / tls.key"},
		{"tls.key of another certificate", func(t *testing.T, now time.Time, d map[string][]byte) { d[keyKey] = other(t, now)[keyKey] }, false, true, "private key does not match public key"}, //nolint:thelper // a step of this test case, not a helper: its failures point here
		{"serving certificate of another CA", func(t *testing.T, now time.Time, d map[string][]byte) { //nolint:thelper // a step of this test case, not a helper: its failures point here
			o := other(t, now)
			d[keyCert], d[keyKey] = o[keyCert], o[keyKey]
		}, false, true, "certificate signed by unknown authority"},
		{"serving certificate lacks a host", func(t *testing.T, now time.Time, d map[string][]byte) { //nolint:thelper // a step of this test case, not a helper: its failures point here
			ca, err := newCA(now, DefaultCALifetime)
			if err != nil {
				t.Fatal(err)
			}
			s, err := newServing(now, DefaultServingLifetime, ca.cert, ca.key, hosts{dns: testServerNames[:2]})
			if err != nil {
				t.Fatal(err)
			}
			d[keyCACert], d[keyCAKey], d[keyCert], d[keyKey] = ca.certPEM, ca.keyPEM, s.certPEM, s.keyPEM
		}, false, true, "lacks the host(s) webhook.example.test, 127.0.0.1"},
		{"expired serving certificate", func(t *testing.T, now time.Time, d map[string][]byte) { //nolint:thelper // a step of this test case, not a helper: its failures point here
			ca, err := newCA(now.Add(-60*24*time.Hour), DefaultCALifetime)
			if err != nil {
				t.Fatal(err)
			}
			s, err := newServing(now.Add(-60*24*time.Hour), DefaultServingLifetime, ca.cert, ca.key, testHosts())
			if err != nil {
				t.Fatal(err)
			}
			d[keyCACert], d[keyCAKey], d[keyCert], d[keyKey] = ca.certPEM, ca.keyPEM, s.certPEM, s.keyPEM
		}, false, true, "certificate has expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.webhookConfigs()
			now := e.clk.Now()
			d := testSecretData(t, now)
			tt.corrupt(t, now, d)
			d["unrelated"] = []byte("kept")
			before := maps.Clone(d)
			e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret}, Type: corev1.SecretTypeOpaque, Data: d})
			logs := &logBuffer{}
			o := options(t)
			o.Log = zerolog.New(io.MultiWriter(logs, zerolog.NewConsoleWriter(zerolog.ConsoleTestWriter(t))))
			r := e.start(o)
			eventually(t, "a ready source", r.src.Ready)
			after := e.secret()
			type outcome struct{ NewCA, NewCert bool }
			got := outcome{NewCA: string(after[keyCACert]) != string(before[keyCACert]), NewCert: string(after[keyCert]) != string(before[keyCert])}
			if d := cmp.Diff(outcome{tt.newCA, tt.newCert}, got); d != "" {
				t.Errorf("replaced (-want +got):\n%s", d)
			}
			if !tt.newCA && string(after[keyCAKey]) != string(before[keyCAKey]) {
				t.Error("ca.key changed although the CA was kept")
			}
			if string(after["unrelated"]) != "kept" {
				t.Errorf("another key of the Secret was changed: %q", after["unrelated"])
			}
			if got := []int{e.api.count("create", "secrets"), e.api.count("update", "secrets")}; !cmp.Equal(got, []int{0, 1}) {
				t.Errorf("creates, updates = %v, want [0 1]", got)
			}
			level := `"level":"warn"`
			if tt.name == "empty placeholder" || tt.name == "only a CA of one's own" { // nothing was broken
				level = `"level":"info"`
			}
			if !containsAll(logs.String(), tt.log, level+`,"secret":"flagpole-system/flagpole-webhook-tls","changes"`) {
				t.Errorf("the log does not say %q:\n%s", tt.log, logs.String())
			}
			mustHandshake(t, r.src, after[keyCACert], e.clk.Now())
			eventually(t, "caBundles set", func() bool { return e.bundles()[0] == string(after[keyCACert]) })
		})
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLostUpdateIsRetried: while a manager replaces a corrupt Secret, another
// writer (a replica) replaces it first. The manager's update, carrying the
// resourceVersion it read, conflicts; it reads the Secret again and adopts the
// other writer's valid contents instead of overwriting them.
func TestLostUpdateIsRetried(t *testing.T) {
	e := newEnv(t)
	e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret}, Data: map[string][]byte{keyCACert: []byte("corrupt")}})
	theirs := testSecretData(t, e.clk.Now())
	var once sync.Once
	e.api.react = func(verb, resource, _ string) error {
		if verb == "update" && resource == "secrets" {
			once.Do(func() {
				e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret}, Data: theirs})
			})
		}
		return nil
	}
	r := e.start(options(t))
	eventually(t, "a ready source", r.src.Ready)
	if d := cmp.Diff(theirs, e.secret()); d != "" {
		t.Errorf("the other writer's Secret was overwritten (-theirs +now):\n%s", d)
	}
	want := parsed(t, theirs[keyCert])[0].SerialNumber.Text(16)
	if got := mustHandshake(t, r.src, theirs[keyCACert], e.clk.Now()); got != want {
		t.Errorf("serving %s, want the other writer's %s", got, want)
	}
	if n := e.api.count("update", "secrets"); n != 1 {
		t.Errorf("%d updates, want 1 (the one that conflicted)", n)
	}
}

// TestServingRenewalAtTwoThirds: the serving certificate is renewed by the same CA
// at 2/3 of its lifetime and not before; the running Source serves the new one on
// the next handshake (a new serial), the caBundle stays, and the expiry metric
// follows.
func TestServingRenewalAtTwoThirds(t *testing.T) {
	e := newEnv(t)
	e.webhookConfigs()
	r := e.start(options(t))
	reg := prometheus.NewRegistry()
	if err := r.src.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a ready source", r.src.Ready)
	d0 := e.secret()
	first := parsed(t, d0[keyCert])[0]
	s0 := mustHandshake(t, r.src, d0[keyCACert], e.clk.Now())
	if got := expiryMetric(t, reg); got != float64(first.NotAfter.Unix()) {
		t.Errorf("expiry metric %v, want %v", got, first.NotAfter.Unix())
	}

	due := renewAt(first)
	e.advance(due.Add(-time.Second), r)
	if got := mustHandshake(t, r.src, d0[keyCACert], e.clk.Now()); got != s0 {
		t.Fatalf("renewed before 2/3 of the lifetime (serial %s, was %s)", got, s0)
	}
	if n := e.api.count("update", "secrets"); n != 0 {
		t.Fatalf("%d updates before renewal was due", n)
	}
	e.advance(due, r)
	eventually(t, "a new serving certificate", func() bool {
		c, err := handshake(r.src, d0[keyCACert], testServerNames[0], e.clk.Now())
		return err == nil && c.SerialNumber.Text(16) != s0
	})
	d1 := e.secret()
	second := parsed(t, d1[keyCert])[0]
	if got := mustHandshake(t, r.src, d1[keyCACert], e.clk.Now()); got != second.SerialNumber.Text(16) {
		t.Errorf("serving %s, the Secret holds %s", got, second.SerialNumber.Text(16))
	}
	if string(d1[keyCACert]) != string(d0[keyCACert]) || string(d1[keyCAKey]) != string(d0[keyCAKey]) {
		t.Error("the CA changed with the serving certificate")
	}
	if got, want := second.NotAfter, e.clk.Now().Add(DefaultServingLifetime); !got.Equal(want) {
		t.Errorf("new certificate valid until %s, want %s", got, want)
	}
	if got := expiryMetric(t, reg); got != float64(second.NotAfter.Unix()) {
		t.Errorf("expiry metric %v after renewal, want %v", got, second.NotAfter.Unix())
	}
	if d := cmp.Diff([]string{string(d0[keyCACert]), string(d0[keyCACert]), string(d0[keyCACert]), string(d0[keyCACert])}, e.bundles()); d != "" {
		t.Errorf("caBundles changed (-want +got):\n%s", d)
	}
}

// expiryMetric gathers flagpole_webhook_certificate_expiry_timestamp_seconds.
func expiryMetric(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "flagpole_webhook_certificate_expiry_timestamp_seconds" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no flagpole_webhook_certificate_expiry_timestamp_seconds")
	return 0
}
