package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate from files and reloads it when either file
// changes (checked at most once a second, on a handshake), so rotated certificates
// (cert-manager, mounted Secrets) are picked up without a restart. A reload that
// fails keeps the previous certificate.
type CertReloader struct {
	certFile, keyFile string

	mu        sync.Mutex
	cert      *tls.Certificate
	certMod   time.Time
	keyMod    time.Time
	lastCheck time.Time
	now       func() time.Time
}

// NewCertReloader loads the key pair once and returns the reloader; the error names
// the file that failed.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, now: time.Now}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) reload() error {
	ci, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	ki, err := os.Stat(r.keyFile)
	if err != nil {
		return fmt.Errorf("server key: %w", err)
	}
	if r.cert != nil && ci.ModTime().Equal(r.certMod) && ki.ModTime().Equal(r.keyMod) {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("server certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certMod, r.keyMod = &cert, ci.ModTime(), ki.ModTime()
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= time.Second {
		r.lastCheck = now
		_ = r.reload() // on failure keep serving the previous certificate
	}
	return r.cert, nil
}

// TLSConfig returns a server TLS configuration (TLS 1.2+) using the reloader.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
