package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/utils/clock"

	"github.com/flagpole-dev/flagpole/server"
)

// defaultMountedRecheck is how often mounted files are read besides handshakes (as
// cert-manager's file source). The kubelet refreshes a Secret volume within about
// a minute of the Secret's change.
const defaultMountedRecheck = 10 * time.Second

// mounted serves tls.crt and tls.key from a directory.
type mounted struct {
	dir      string
	reloader *server.CertReloader
	clk      clock.Clock
	recheck  time.Duration
	log      zerolog.Logger

	mu      sync.Mutex
	lastErr error
}

func newMounted(o Options, clk clock.Clock) (*mounted, error) {
	certFile, keyFile := filepath.Join(o.CertDir, keyCert), filepath.Join(o.CertDir, keyKey)
	r, err := server.NewCertReloader(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("webhook certificates from --cert-dir %s (a mounted kubernetes.io/tls Secret with %s and %s; leave it empty for self-managed certificates): %w",
			o.CertDir, keyCert, keyKey, err)
	}
	m := &mounted{dir: o.CertDir, reloader: r, clk: clk, recheck: o.Recheck, log: o.Log.With().Str("certDir", o.CertDir).Logger()}
	if m.recheck <= 0 {
		m.recheck = defaultMountedRecheck
	}
	if n := len(o.MutatingWebhookConfigurations) + len(o.ValidatingWebhookConfigurations); n > 0 {
		m.log.Info().Int("webhookConfigurations", n).Msg("mounted certificate: caBundles are left to the certificate's issuer (cert-manager's cainjector)")
	}
	m.logLoaded(r.Certificate())
	return m, nil
}

func (m *mounted) certificate() *tls.Certificate { return m.reloader.Certificate() }

// caBundle is nil: the issuer of mounted certificates distributes its CA.
func (m *mounted) caBundle() []byte { return nil }

func (m *mounted) lastError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

// run re-reads the files every recheck interval, so that a rotation is logged and
// reflected in Healthy and the metric even without handshakes.
func (m *mounted) run(ctx context.Context) error {
	for {
		t := m.clk.NewTimer(m.recheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
		changed, err := m.reloader.Reload()
		m.mu.Lock()
		repeated := err != nil && m.lastErr != nil && err.Error() == m.lastErr.Error()
		m.lastErr = err
		m.mu.Unlock()
		switch {
		case err != nil && !repeated:
			m.log.Warn().Err(err).Msg("cannot load the mounted certificate; serving the previous one")
		case changed:
			m.logLoaded(m.reloader.Certificate())
		}
	}
}

func (m *mounted) logLoaded(c *tls.Certificate) {
	m.log.Info().Str("serial", c.Leaf.SerialNumber.Text(16)).Time("notAfter", c.Leaf.NotAfter).
		Strs("dnsNames", c.Leaf.DNSNames).Msg("serving the mounted certificate")
}
