package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/webhook"
)

// Webhook is a `flagpole webhook` subprocess: the HTTPS admission server and its
// management listener on loopback ports it picked itself, with a serving
// certificate of its own whose CA is CABundle.
type Webhook struct {
	Proc *Process
	// Address and Management are the bound host:port of the admission server and of
	// the management listener.
	Address, Management string
	CABundle            []byte
}

// StartWebhook runs `flagpole webhook` (see StartWebhookProcess) and stops it when
// the test ends; the test is skipped on an existing cluster.
func (s *Suite) StartWebhook(t testing.TB, c *Cluster, dir string, args ...string) *Webhook {
	t.Helper()
	if c.ControlPlane == nil {
		t.Skip("the API server calls the webhook on 127.0.0.1: needs the local control plane")
	}
	w, err := s.StartWebhookProcess(t.Context(), c, dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("flagpole webhook log (last lines):\n%s", w.Proc.Tail(60))
		}
	})
	return w
}

// StartWebhookProcess writes a serving certificate for 127.0.0.1 into dir/certs,
// runs `flagpole webhook` with the admin kubeconfig of c's local control plane, that
// certificate (--cert-dir), 127.0.0.1 and free ports, and the extra args, and waits
// until its /readyz is 200 (caches synced).
func (s *Suite) StartWebhookProcess(ctx context.Context, c *Cluster, dir string, args ...string) (*Webhook, error) {
	certDir := filepath.Join(dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	ca, err := ServingCert(certDir)
	if err != nil {
		return nil, err
	}
	w, err := s.startWebhook(ctx, c, dir, append([]string{"--cert-dir", certDir}, args...))
	if err != nil {
		return nil, err
	}
	w.CABundle = ca
	return w, nil
}

// StartSelfManagedWebhook runs `flagpole webhook` with its self-managed certificate
// (for 127.0.0.1 too) in the Secret tlsSecret of namespace, keeping the caBundle of
// the named configurations current, and stops it when the test ends.
func (s *Suite) StartSelfManagedWebhook(t testing.TB, c *Cluster, dir, namespace, tlsSecret, mutating, validating string, args ...string) *Webhook {
	t.Helper()
	if c.ControlPlane == nil {
		t.Skip("the API server calls the webhook on 127.0.0.1: needs the local control plane")
	}
	w, err := s.startWebhook(t.Context(), c, dir, append([]string{"--namespace", namespace, "--tls-secret", tlsSecret,
		"--cert-extra-hosts", "127.0.0.1", "--mutating-webhook-configuration", mutating, "--validating-webhook-configuration", validating}, args...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("flagpole webhook log (last lines):\n%s", w.Proc.Tail(60))
		}
	})
	return w
}

// startWebhook runs `flagpole webhook` on 127.0.0.1 and free ports with c's admin
// kubeconfig and args, and waits for /readyz.
func (s *Suite) startWebhook(ctx context.Context, c *Cluster, dir string, args []string) (*Webhook, error) {
	if c.ControlPlane == nil {
		return nil, fmt.Errorf("the webhook needs the local control plane (the API server calls it on 127.0.0.1)")
	}
	all := append([]string{"webhook", "--kubeconfig", s.kubeconfigFor(c),
		"--webhook-bind-address", "127.0.0.1", "--webhook-port", "0", "--health-probe-bind-address", "127.0.0.1:0"}, args...)
	p, addrs, err := StartFlagpole(ctx, s.Janitor, s.Flagpole, dir, nil, []string{"webhook", "management"}, all...)
	if err != nil {
		return nil, err
	}
	w := &Webhook{Proc: p, Address: addrs["webhook"], Management: addrs["management"]}
	if err := w.waitReady(ctx, 60*time.Second); err != nil {
		p.Kill()
		return nil, err
	}
	return w, nil
}

// Stop stops the webhook (SIGTERM) and reports whether it shut down cleanly.
func (w *Webhook) Stop() error {
	if err := w.Proc.Stop(stopGrace); err != nil {
		return err
	}
	if err := w.Proc.Err(); err != nil {
		return fmt.Errorf("flagpole webhook exited with %w after SIGTERM (want a clean shutdown)", err)
	}
	return nil
}

// Register creates a MutatingWebhookConfiguration named name that sends the pods of
// namespace (only) to this webhook by URL, with its CA; it returns a function that
// deletes it.
func (w *Webhook) Register(ctx context.Context, c *Cluster, name, namespace string) (func(), error) {
	mutating, _ := webhook.Registration{MutatingName: name, ValidatingName: name, URL: "https://" + w.Address}.Configurations()
	for i := range mutating.Webhooks {
		mutating.Webhooks[i].ClientConfig.CABundle = w.CABundle
		mutating.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}
	}
	if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() {
		_ = c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	}, nil
}

// waitReady polls /readyz until it answers 200.
func (w *Webhook) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.Management+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flagpole webhook not ready within %s; log:\n%s", timeout, w.Proc.Tail(30))
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
}

// Logs parses the webhook's log written so far.
func (w *Webhook) Logs() []LogEntry { return ReadLogs(w.Proc.LogPath) }

// Operator is a `flagpole operator` or `flagpole controller` subprocess.
type Operator struct {
	Proc *Process
	// Management is the bound host:port of its management listener; Webhook, of its
	// admission server ("" for `flagpole controller`); Metrics, of its
	// --metrics-bind-address listener ("" unless given).
	Management, Webhook, Metrics string
}

// StartOperator runs `flagpole <command>` (operator or controller) with c's admin
// kubeconfig, 127.0.0.1 and free ports, and the extra args, and stops it when the
// test ends. For `operator` the webhook uses a serving certificate of dir/certs.
func (s *Suite) StartOperator(t testing.TB, c *Cluster, dir, command string, args ...string) *Operator {
	t.Helper()
	if c.ControlPlane == nil {
		t.Skip("needs the local control plane")
	}
	all := []string{command, "--kubeconfig", s.kubeconfigFor(c), "--health-probe-bind-address", "127.0.0.1:0"}
	listeners := []string{"management"}
	if command == "operator" {
		certDir := filepath.Join(dir, "certs")
		if err := os.MkdirAll(certDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := ServingCert(certDir); err != nil {
			t.Fatal(err)
		}
		all = append(all, "--cert-dir", certDir, "--webhook-bind-address", "127.0.0.1", "--webhook-port", "0")
		listeners = append(listeners, "webhook")
	}
	if slices.Contains(args, "--metrics-bind-address") {
		listeners = append(listeners, "metrics")
	}
	p, addrs, err := StartFlagpole(t.Context(), s.Janitor, s.Flagpole, dir, nil, listeners, append(all, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	o := &Operator{Proc: p, Management: addrs["management"], Webhook: addrs["webhook"], Metrics: addrs["metrics"]}
	t.Cleanup(func() {
		if p.Running() {
			if err := p.Stop(stopGrace); err != nil {
				t.Error(err)
			} else if err := p.Err(); err != nil {
				t.Errorf("flagpole %s exited with %v after SIGTERM (want a clean shutdown)", command, err)
			}
		}
		if t.Failed() {
			t.Logf("flagpole %s log (last lines):\n%s", command, p.Tail(80))
		}
	})
	return o
}

// Logs parses the operator's log written so far.
func (o *Operator) Logs() []LogEntry { return ReadLogs(o.Proc.LogPath) }
