package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"
)

// TestOptions checks defaults, the hosts of the serving certificate, and that
// every wrong option is named.
func TestOptions(t *testing.T) {
	base := func() Options {
		return Options{Config: &rest.Config{Host: "https://127.0.0.1:6443"}, Namespace: "ofo", ServiceName: "webhook"}
	}
	t.Run("defaults", func(t *testing.T) {
		o := base()
		o.Hosts = []string{"webhook.example.com.", "127.0.0.1", "::1", "127.0.0.1", "ofo-webhook.example.com"}
		o.ValidatingWebhookConfigurations = []string{"v", "v"}
		got, h, err := o.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		type view struct {
			SecretName, ClusterDomain string
			CA, Serving, Recheck      time.Duration
			DNS                       []string
			IPs                       []string
			Validating                []string
		}
		var ips []string
		for _, ip := range h.ips {
			ips = append(ips, ip.String())
		}
		want := view{"flagpole-webhook-tls", "cluster.local", 365 * 24 * time.Hour, 30 * 24 * time.Hour, time.Minute,
			[]string{"webhook.ofo.svc", "webhook.ofo.svc.cluster.local", "webhook.example.com", "ofo-webhook.example.com"},
			[]string{"127.0.0.1", "::1"}, []string{"v"}}
		if d := cmp.Diff(want, view{got.SecretName, got.ClusterDomain, got.CALifetime, got.ServingLifetime, got.Recheck, h.dns, ips, got.ValidatingWebhookConfigurations}); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if _, err := New(o); err != nil {
			t.Errorf("New: %v", err)
		}
	})
	tests := []struct {
		name   string
		change func(*Options)
		want   []string
	}{
		{"no namespace", func(o *Options) { o.Namespace = "" }, []string{"no namespace: set POD_NAMESPACE"}},
		{"bad namespace", func(o *Options) { o.Namespace = "Ofo" }, []string{`namespace "Ofo"`}},
		{"no service", func(o *Options) { o.ServiceName = "" }, []string{"no service name"}},
		{"bad secret name", func(o *Options) { o.SecretName = "a_b" }, []string{`secret name "a_b"`}},
		{"bad host", func(o *Options) { o.Hosts = []string{"https://x"} }, []string{`host "https://x" is neither an IP address nor a DNS name`}},
		{"bad webhook configuration", func(o *Options) { o.MutatingWebhookConfigurations = []string{"A B"} }, []string{`webhook configuration name "A B"`}},
		{"serving outlives a third of the CA", func(o *Options) { o.CALifetime, o.ServingLifetime = 90*24*time.Hour, 31*24*time.Hour },
			[]string{"serving certificate lifetime 744h0m0s is more than a third of the CA lifetime 2160h0m0s"}},
		{"negative lifetime", func(o *Options) { o.ServingLifetime = -time.Hour }, []string{"must be positive"}},
		{"several at once", func(o *Options) { o.Namespace, o.ServiceName = "", "" }, []string{"no namespace", "no service name"}},
		{"no client configuration", func(o *Options) { o.Config = nil }, []string{"no Kubernetes client configuration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.change(&o)
			_, err := New(o)
			if err == nil || !containsAll(err.Error(), tt.want...) {
				t.Errorf("New() error = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// TestServingDue is the serving-renewal rule: by the same CA at 2/3 of the
// lifetime; by a new CA only once it has been in every caBundle for the
// propagation delay, or at 5/6 of the lifetime whatever the caBundles say.
func TestServingDue(t *testing.T) {
	now := time.Now()
	old, err := newCA(now.Add(-200*24*time.Hour), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := newCA(now, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServing(now, 30*24*time.Hour, old.cert, old.key, testHosts())
	if err != nil {
		t.Fatal(err)
	}
	data := map[string][]byte{keyCACert: encodeBundle([]*x509.Certificate{newer.cert, old.cert}), keyCAKey: newer.keyPEM, keyCert: s.certPEM, keyKey: s.keyPEM}
	p := policy{caLifetime: 365 * 24 * time.Hour, servingLifetime: 30 * 24 * time.Hour, hosts: testHosts(), propagation: 30 * time.Second}
	due, last := renewAt(s.cert), lastCall(s.cert)
	never := func(*x509.Certificate) (time.Time, bool) { return time.Time{}, false }
	since := func(at time.Time) published {
		return func(*x509.Certificate) (time.Time, bool) { return at, true }
	}
	tests := []struct {
		name string
		at   time.Time
		pub  published
		want string
	}{
		{"before 2/3", due.Add(-time.Second), since(now), ""},
		{"2/3, new CA not published", due, never, ""},
		{"2/3, new CA published just now", due, since(due), ""},
		{"2/3, new CA published for the propagation delay", due.Add(30 * time.Second), since(due), "the new CA is in every caBundle"},
		{"5/6, new CA never published", last, never, "5/6 of its lifetime; the new CA is not confirmed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := check(data, tt.at, testHosts())
			if m.caErr != nil || m.servingErr != nil {
				t.Fatalf("material: %v, %v", m.caErr, m.servingErr)
			}
			got := p.servingDue(m, m.cas[0], tt.at, tt.pub)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("servingDue = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestNoHeavyImports: the package stays within the lean binary's rules
// (docs/architecture.md, "One lean binary"), so wiring it into the binary cannot
// break TestLeanBinary.
func TestNoHeavyImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, heavy := range []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/applyconfigurations/",
			"k8s.io/client-go/tools/leaderelection", "sigs.k8s.io/controller-runtime"} {
			if dep == heavy || strings.HasPrefix(dep, strings.TrimSuffix(heavy, "/")+"/") {
				t.Errorf("webhook/certs links %s", dep)
			}
		}
	}
}

// TestDelay is the wait between reconciles: errors back off from a second up to
// the recheck interval, but a timed renewal is never postponed by a backoff (found
// by the e2e rotation test: failing caBundle updates had let certificates expire).
func TestDelay(t *testing.T) {
	start := time.Now()
	failed := errors.New("forbidden")
	tests := []struct {
		name        string
		err         error
		next        time.Time
		backoff     time.Duration
		wait, after time.Duration
	}{
		{"nothing timed", nil, time.Time{}, 0, time.Minute, 0},
		{"renewal in 10 s", nil, start.Add(10 * time.Second), 0, 10 * time.Second, 0},
		{"renewal in 2 h", nil, start.Add(2 * time.Hour), 0, time.Minute, 0},
		{"renewal overdue", nil, start.Add(-time.Second), 0, 0, 0},
		{"first error", failed, time.Time{}, 0, time.Second, time.Second},
		{"errors double", failed, time.Time{}, 8 * time.Second, 16 * time.Second, 16 * time.Second},
		{"errors capped at the recheck", failed, time.Time{}, 45 * time.Second, time.Minute, time.Minute},
		{"error, renewal due before the backoff ends", failed, start.Add(3 * time.Second), 8 * time.Second, 3 * time.Second, 16 * time.Second},
		{"error, renewal overdue", failed, start.Add(-time.Second), 0, time.Second, time.Second},
		{"lost race", fmt.Errorf("x: %w", errRetry), time.Time{}, 8 * time.Second, time.Second, 8 * time.Second},
		{"success resets the backoff", nil, time.Time{}, 32 * time.Second, time.Minute, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait, after := delay(tt.err, tt.next, start, tt.backoff, time.Minute)
			if wait != tt.wait || after != tt.after {
				t.Errorf("delay = %s, backoff %s; want %s, %s", wait, after, tt.wait, tt.after)
			}
		})
	}
}
