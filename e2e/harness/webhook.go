package harness

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Webhook is a `flagpole webhook` subprocess: the HTTPS admission server and its
// management listener on loopback ports it picked itself.
type Webhook struct {
	Proc *Process
	// Address and Management are the bound host:port of the admission server and of
	// the management listener.
	Address, Management string
}

// StartWebhook runs `flagpole webhook` with the admin kubeconfig of c, the serving
// certificate of certDir, 127.0.0.1 and free ports, and the extra args; it waits
// until /readyz is 200 (caches synced) and stops the process when the test ends.
func (s *Suite) StartWebhook(t testing.TB, c *Cluster, dir, certDir string, args ...string) *Webhook {
	t.Helper()
	if c.ControlPlane == nil {
		t.Skip("the API server calls the webhook on 127.0.0.1: needs the local control plane")
	}
	all := append([]string{"webhook", "--kubeconfig", c.ControlPlane.Kubeconfig, "--cert-dir", certDir,
		"--webhook-bind-address", "127.0.0.1", "--webhook-port", "0", "--health-probe-bind-address", "127.0.0.1:0"}, args...)
	p, addrs, err := StartFlagpole(t.Context(), s.Janitor, s.Flagpole, dir, nil, []string{"webhook", "management"}, all...)
	if err != nil {
		t.Fatal(err)
	}
	w := &Webhook{Proc: p, Address: addrs["webhook"], Management: addrs["management"]}
	t.Cleanup(func() {
		if err := p.Stop(stopGrace); err != nil {
			t.Error(err)
		} else if err := p.Err(); err != nil {
			t.Errorf("flagpole webhook exited with %v after SIGTERM (want a clean shutdown)", err)
		}
		if t.Failed() {
			t.Logf("flagpole webhook log (last lines):\n%s", p.Tail(60))
		}
	})
	if err := w.waitReady(t.Context(), 60*time.Second); err != nil {
		t.Fatal(err)
	}
	return w
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
