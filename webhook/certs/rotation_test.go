package certs

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestCARotationKeepsOldCA runs a manager for 100 days, a day at a time, with a
// 90-day CA and 30-day serving certificates. Every day a client trusting only the
// caBundle of the webhook configurations completes a handshake. The CA is renewed
// at 2/3 of its lifetime; the old CA stays in the bundle, still signing the
// certificate served, until it expires; the new CA signs serving certificates only
// once it is in every caBundle; the expired CA is then dropped.
func TestCARotationKeepsOldCA(t *testing.T) {
	e := newEnv(t)
	e.webhookConfigs()
	o := options(t)
	o.CALifetime, o.ServingLifetime = 90*24*time.Hour, 30*24*time.Hour
	start := e.clk.Now()
	r := e.start(o)
	eventually(t, "a ready source", r.src.Ready)

	type day struct {
		bundle []string // CA fingerprints in the caBundle
		issuer string   // fingerprint of the CA that signed the certificate served
		serial string
	}
	var days []day
	for d := range 101 {
		if d > 0 {
			e.advance(start.Add(time.Duration(d)*24*time.Hour), r)
		}
		bundles := e.bundles()
		if !slices.Equal(bundles, []string{bundles[0], bundles[0], bundles[0], bundles[0]}) {
			t.Fatalf("day %d: the webhooks' caBundles differ", d)
		}
		if got := string(e.secret()[keyCACert]); got != bundles[0] {
			t.Fatalf("day %d: the caBundle is not the Secret's ca.crt", d)
		}
		leaf, err := handshake(r.src, []byte(bundles[0]), testServerNames[0], e.clk.Now())
		if err != nil {
			t.Fatalf("day %d: a client trusting the caBundle fails the handshake: %v", d, err)
		}
		cas := parsed(t, []byte(bundles[0]))
		days = append(days, day{bundle: fingerprints(t, []byte(bundles[0])), issuer: issuerOf(leaf, cas), serial: leaf.SerialNumber.Text(16)})
	}

	// The timeline, summarised: the days on which the bundle or the issuer changed.
	first, second := days[0].bundle[0], ""
	var got []string
	for d, s := range days {
		if d > 0 && slices.Equal(s.bundle, days[d-1].bundle) && s.issuer == days[d-1].issuer {
			continue
		}
		if second == "" && s.bundle[0] != first {
			second = s.bundle[0]
		}
		name := func(fp string) string {
			switch fp {
			case first:
				return "old"
			case second:
				return "new"
			}
			return "other " + fp
		}
		var b []string
		for _, fp := range s.bundle {
			b = append(b, name(fp))
		}
		got = append(got, fmt.Sprintf("day %d: bundle %v, served by %s", d, b, name(s.issuer)))
	}
	want := []string{
		"day 0: bundle [old], served by old",
		"day 60: bundle [new old], served by old", // renewed at 2/3; the old CA still signs what is served
		"day 61: bundle [new old], served by new", // serving renewal, by the new CA, now in every caBundle
		"day 90: bundle [new], served by new",     // the old CA expired and is dropped
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CA rotation (-want +got):\n%s", d)
	}
	renewals := 0
	for d := 1; d < len(days); d++ {
		if days[d].serial != days[d-1].serial {
			renewals++
		}
	}
	if renewals != 4 { // days 20, 40, 61 (due on day 60, when the new CA had just been published: it signs at the next step) and 81
		t.Errorf("%d serving renewals in 100 days, want 4", renewals)
	}
}

// TestCABundleDriftRepaired changes the webhook configurations as kubectl apply or
// a GitOps tool would (caBundle emptied or replaced, webhooks added, the whole
// configuration deleted and re-created); the watch sees it and every caBundle is
// set back. A configuration missing at start is not an error and is patched when
// it appears.
func TestCABundleDriftRepaired(t *testing.T) {
	e := newEnv(t)
	e.webhookConfigs()
	e.mutating().delete(testMutating) // appears later
	r := e.start(options(t))
	eventually(t, "a ready source", r.src.Ready)
	bundle := string(e.secret()[keyCACert])
	repaired := func() bool {
		b := e.bundles()
		return len(b) > 0 && slices.Equal(b, slices.Repeat([]string{bundle}, len(b)))
	}
	eventually(t, "the validating configuration patched", repaired)
	if err := r.m.lastError(); err != nil {
		t.Errorf("a missing webhook configuration is reported as an error: %v", err)
	}
	other := string(testSecretData(t, e.clk.Now())[keyCACert])
	url := "https://127.0.0.1:9443/e"
	tests := []struct {
		name  string
		drift func()
	}{
		{"mutating configuration created", func() {
			e.mutating().set(&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testMutating},
				Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "a.flagpole.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}}}})
		}},
		{"caBundle emptied", func() {
			c, _ := e.validating().get(testValidate)
			for i := range c.Webhooks {
				c.Webhooks[i].ClientConfig.CABundle = nil
			}
			e.validating().set(c)
		}},
		{"one caBundle replaced by another CA", func() {
			c, _ := e.validating().get(testValidate)
			c.Webhooks[1].ClientConfig.CABundle = []byte(other)
			e.validating().set(c)
		}},
		{"webhook added without caBundle", func() {
			c, _ := e.mutating().get(testMutating)
			c.Webhooks = append(c.Webhooks, admissionregistrationv1.MutatingWebhook{Name: "z.flagpole.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}})
			e.mutating().set(c)
		}},
		{"configuration deleted and re-created", func() {
			e.validating().delete(testValidate)
			e.validating().set(&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: testValidate},
				Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "c.flagpole.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url}}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.drift()
			eventually(t, "every caBundle repaired", repaired)
		})
	}
	if got := string(e.secret()[keyCACert]); got != bundle {
		t.Error("the CA changed")
	}
}

// TestNotReadyWithoutCertificate denies the manager parts of the API: without a
// certificate it is not ready, handshakes fail, the metric is 0, and the reason
// names the verbs and resource the service account needs. Once allowed, it
// recovers without a restart. A forbidden caBundle update is reported the same
// way but does not make a replica with a certificate unready.
func TestNotReadyWithoutCertificate(t *testing.T) {
	forbid := func(verbs ...string) func(verb, resource, name string) error {
		return func(verb, resource, name string) error {
			if slices.Contains(verbs, verb+" "+resource) {
				return apierrors.NewForbidden(schema.GroupResource{Resource: resource}, name, fmt.Errorf("RBAC: not allowed"))
			}
			return nil
		}
	}
	tests := []struct {
		name     string
		existing map[string][]byte // the Secret's data at start (nil: no Secret)
		react    func(verb, resource, name string) error
		ready    bool
		reason   []string
	}{
		{"Secret not readable", nil, forbid("list secrets", "watch secrets"), false, []string{
			"no serving certificate yet", "permission denied to read Secret flagpole-system/flagpole-webhook-tls",
			"needs list and watch on secrets in namespace flagpole-system (resourceNames may restrict them to [flagpole-webhook-tls])"}},
		{"Secret cannot be created", nil, forbid("create secrets"), false, []string{
			"no serving certificate yet", "needs create on secrets in namespace flagpole-system (create cannot be restricted by resourceNames)"}},
		{"Secret cannot be updated", map[string][]byte{keyCACert: []byte("corrupt")}, forbid("update secrets"), false, []string{
			"no serving certificate yet", "needs update on secrets in namespace flagpole-system (resourceNames may restrict it to [flagpole-webhook-tls])"}},
		{"caBundle cannot be updated", nil, forbid("update validatingwebhookconfigurations"), true, []string{
			"permission denied to update ValidatingWebhookConfiguration flagpole-validating",
			"needs list, watch and update on validatingwebhookconfigurations.admissionregistration.k8s.io (resourceNames may restrict them to [flagpole-validating])"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.webhookConfigs()
			if tt.existing != nil {
				e.secrets().set(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: testSecret}, Data: tt.existing})
			}
			e.api.react = tt.react
			r := e.start(options(t))
			var reason string
			eventually(t, "an error reported", func() bool {
				err := r.m.lastError()
				if h := r.src.Healthy(); h != nil {
					err = h
				}
				if err != nil {
					reason = err.Error()
				}
				return containsAll(reason, tt.reason...)
			})
			if got := r.src.Ready(); got != tt.ready {
				t.Errorf("Ready() = %v, want %v (%s)", got, tt.ready, reason)
			}
			if !tt.ready {
				if _, err := r.src.GetCertificate(nil); err == nil {
					t.Error("GetCertificate returned a certificate")
				}
				reg := prometheusRegistry(t, r.src)
				if got := expiryMetric(t, reg); got != 0 {
					t.Errorf("expiry metric %v without a certificate, want 0", got)
				}
			}
			// Allowed again: the next retry (at most a recheck interval away) succeeds.
			e.api.mu.Lock()
			e.api.react = nil
			e.api.mu.Unlock()
			e.advance(e.clk.Now().Add(DefaultRecheck), r)
			eventually(t, "ready and no error", func() bool { return r.src.Ready() && r.m.lastError() == nil })
			mustHandshake(t, r.src, e.secret()[keyCACert], e.clk.Now())
		})
	}
}

// TestCABundleWithoutWebhooks: a Source with no webhook configuration (the
// flagd-proxy's) publishes its CAs through CABundle and OnCABundle only. A new CA
// joins the bundle at once and signs serving certificates only after Propagation
// (the time its readers need to mount it), and CABundle always lets a client
// verify what is served.
func TestCABundleWithoutWebhooks(t *testing.T) {
	e := newEnv(t)
	o := options(t)
	o.MutatingWebhookConfigurations, o.ValidatingWebhookConfigurations = nil, nil
	o.CALifetime, o.ServingLifetime, o.Propagation = 90*24*time.Hour, 30*24*time.Hour, 10*time.Minute
	var calls atomic.Int32
	o.OnCABundle = func() { calls.Add(1) }
	start := e.clk.Now()
	r := e.start(o)
	eventually(t, "a ready source", r.src.Ready)
	eventually(t, "a CA bundle", func() bool { return len(r.src.CABundle()) > 0 })

	check := func(when string, wantCAs int32, wantIssuer string) {
		t.Helper()
		bundle := r.src.CABundle()
		if got := string(e.secret()[keyCACert]); got != string(bundle) {
			t.Fatalf("%s: CABundle is not the Secret's ca.crt", when)
		}
		cas := parsed(t, bundle)
		if int32(len(cas)) != wantCAs || calls.Load() != wantCAs {
			t.Fatalf("%s: %d CAs in the bundle, OnCABundle called %d times; want %d", when, len(cas), calls.Load(), wantCAs)
		}
		leaf, err := handshake(r.src, bundle, testServerNames[0], e.clk.Now())
		if err != nil {
			t.Fatalf("%s: a client trusting CABundle fails the handshake: %v", when, err)
		}
		issuer := "old"
		if len(cas) > 1 && issuerOf(leaf, cas) == fingerprint(cas[0]) {
			issuer = "new"
		}
		if issuer != wantIssuer {
			t.Errorf("%s: served by the %s CA, want the %s", when, issuer, wantIssuer)
		}
	}
	check("at start", 1, "old")
	for _, days := range []int{20, 40} { // serving renewals by the first CA
		e.advance(start.Add(time.Duration(days)*24*time.Hour), r)
	}
	check("on day 40", 1, "old")
	renewal := start.Add(60 * 24 * time.Hour) // the CA's 2/3, and a serving renewal due
	e.advance(renewal, r)
	check("at the CA's renewal", 2, "old")
	e.advance(renewal.Add(5*time.Minute), r)
	check("before the propagation time", 2, "old")
	e.advance(renewal.Add(11*time.Minute), r)
	check("after the propagation time", 2, "new")
}
