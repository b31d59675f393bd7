package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertReloader serves a certificate from files and reloads it when either file
// changes (checked at most once a second, on a handshake, or at once through
// Reload), so rotated certificates (cert-manager, mounted Secrets) are picked up
// without a restart. A change is detected by the files' contents, not their
// modification times: a Kubernetes Secret volume swaps a `..data` symlink to a new
// directory, and a copy that keeps the old times is a change too. A reload that
// fails (a half-written pair, a key that does not match) keeps the previous
// certificate and is retried at the next check.
type CertReloader struct {
	certFile, keyFile string

	mu        sync.Mutex
	cert      *tls.Certificate
	certPEM   []byte // the contents cert was loaded from
	keyPEM    []byte
	lastCheck time.Time
	now       func() time.Time
}

// NewCertReloader loads the key pair once and returns the reloader; the error names
// the file that failed.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, now: time.Now}
	if _, err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// reload reads both files and loads them if their contents changed. Called with
// r.mu held.
func (r *CertReloader) reload() (bool, error) {
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return false, fmt.Errorf("server certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return false, fmt.Errorf("server key: %w", err)
	}
	if r.cert != nil && bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil && cert.Leaf == nil { // GODEBUG=x509keypairleaf=0
		cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
	}
	if err != nil {
		return false, fmt.Errorf("server certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certPEM, r.keyPEM = &cert, certPEM, keyPEM
	return true, nil
}

// Reload checks the files now (not rate-limited) and loads them if they changed.
// It reports whether the certificate changed; on error the previous certificate
// stays in use.
func (r *CertReloader) Reload() (changed bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastCheck = r.now()
	return r.reload()
}

// Certificate returns the certificate in use (its Leaf is set), after checking the
// files if the last check is more than a second old.
func (r *CertReloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.lastCheck) >= time.Second {
		r.lastCheck = now
		_, _ = r.reload() // on failure keep serving the previous certificate
	}
	return r.cert
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.Certificate(), nil
}

// TLSConfig returns a server TLS configuration (TLS 1.2+) using the reloader.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
