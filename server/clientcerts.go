package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// ClientCerts authenticates the callers of a TLS listener by their client
// certificate: a handshake succeeds only when the client presents a certificate
// for client authentication that chains to one of the CAs of a PEM file (and, if
// names are given, that names one of them), so a caller without one never reaches
// the HTTP handler. The CA file is re-read when its contents change (checked at
// most once a second, on a handshake, or at once through Reload), so a rotated
// ConfigMap or Secret volume takes effect without a restart; a file that no longer
// parses keeps the previous CAs and is logged. Refusals are counted (CountFailures)
// and logged at most every 10 s, never with more of the certificate than its
// subject. Create it with NewClientCerts.
type ClientCerts struct {
	path     string
	names    []string
	listener string
	log      zerolog.Logger
	warn     LogThrottle

	pool      atomic.Pointer[x509.CertPool]
	mu        sync.Mutex
	content   []byte // the contents pool was loaded from
	bad       []byte // the last contents that failed to load (logged once)
	lastCheck time.Time
	now       func() time.Time
	failures  *prometheus.CounterVec
}

// ClientCertOptions configure NewClientCerts.
type ClientCertOptions struct {
	// CAFile is a PEM file of the CA certificates that sign the accepted client
	// certificates. Flag is its flag's name, for errors ("--webhook-client-ca").
	CAFile, Flag string
	// Names, if not empty, are the identities accepted: a client certificate must
	// carry one of them as its subject's common name, a DNS name or a URI of its
	// subject alternative names. Empty: any certificate the CAs signed.
	Names []string
	// Listener names the listener in logs and metrics.
	Listener string
	Log      zerolog.Logger
}

// maxCAFile bounds the CA file: certificates, not a document.
const maxCAFile = 1 << 20

// NewClientCerts loads the CA file once; the error names the flag and the file.
func NewClientCerts(o ClientCertOptions) (*ClientCerts, error) {
	if o.Flag == "" {
		o.Flag = "client CA file"
	}
	var names []string
	for _, n := range o.Names {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	c := &ClientCerts{path: o.CAFile, names: names, listener: o.Listener, log: o.Log, now: time.Now}
	data, err := c.read()
	if err == nil {
		err = c.load(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Flag, err)
	}
	return c, nil
}

// CountFailures registers flagpole_client_certificate_refusals_total{listener,reason}
// with reg: handshakes refused for a missing certificate ("missing"), one the CAs
// did not sign or that is expired or not for client authentication ("untrusted"),
// or one that names none of the accepted identities ("name").
func (c *ClientCerts) CountFailures(reg prometheus.Registerer) error {
	c.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flagpole_client_certificate_refusals_total",
		Help: "TLS handshakes refused because the client certificate was missing, untrusted or for another identity, by listener and reason."},
		[]string{"listener", "reason"})
	return reg.Register(c.failures)
}

// Apply makes cfg ask every client for a certificate and refuse the handshake
// unless it verifies (Verify). cfg keeps its server certificate and ALPN settings.
// The CAs are not advertised in the handshake (they may change while cfg is in
// use), so a client offered several certificates picks by its own configuration.
func (c *ClientCerts) Apply(cfg *tls.Config) {
	cfg.ClientAuth = tls.RequestClientCert
	cfg.ClientCAs = nil
	cfg.VerifyConnection = c.Verify
}

// refusal is why a client certificate was refused: a metric label and a message
// that says nothing about the accepted CAs or names.
type refusal struct{ reason, msg string }

func (r *refusal) Error() string { return r.msg }

// Verify checks the client certificate of a handshake (tls.Config.VerifyConnection,
// called for resumed sessions too): it must be presented, chain to the CAs as they
// are now, be valid now and usable for client authentication, and name one of the
// accepted identities if any are set.
func (c *ClientCerts) Verify(cs tls.ConnectionState) error {
	c.refresh()
	err := c.verify(cs)
	if err == nil {
		return nil
	}
	var r *refusal
	if !errors.As(err, &r) {
		r = &refusal{reason: "untrusted", msg: err.Error()}
	}
	if c.failures != nil {
		c.failures.WithLabelValues(c.listener, r.reason).Inc()
	}
	if log, held := c.warn.Allow(); log {
		ev := c.log.Warn().Str("listener", c.listener).Str("reason", r.reason).Int64("refused_since_last_warning", held)
		if len(cs.PeerCertificates) > 0 {
			ev = ev.Str("subject", truncate(cs.PeerCertificates[0].Subject.String(), 200))
		}
		ev.Msg("refused a TLS client: " + r.msg + " (logged at most every 10 s)")
	}
	return r
}

func (c *ClientCerts) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return &refusal{"missing", "a client certificate is required"}
	}
	leaf := cs.PeerCertificates[0]
	intermediates := x509.NewCertPool()
	for _, cert := range cs.PeerCertificates[1:] {
		intermediates.AddCert(cert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool.Load(), Intermediates: intermediates,
		CurrentTime: c.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return &refusal{"untrusted", "client certificate not accepted: " + err.Error()}
	}
	if len(c.names) > 0 && !slices.ContainsFunc(identities(leaf), func(id string) bool { return slices.Contains(c.names, id) }) {
		return &refusal{"name", "client certificate not accepted: it names none of the accepted identities"}
	}
	return nil
}

// identities are what Names is matched against: the subject's common name, the
// DNS names and the URIs of a certificate.
func identities(cert *x509.Certificate) []string {
	ids := append([]string{cert.Subject.CommonName}, cert.DNSNames...)
	for _, u := range cert.URIs {
		ids = append(ids, u.String())
	}
	return ids
}

// Reload reads the CA file now (not rate-limited) and loads it if it changed. It
// reports whether the CAs changed; on error the previous CAs stay in use.
func (c *ClientCerts) Reload() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastCheck = c.now()
	return c.reload()
}

// refresh re-reads the file at most once a second; a failure keeps the CAs and is
// logged once per content.
func (c *ClientCerts) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.lastCheck) >= time.Second {
		c.lastCheck = now
		if changed, err := c.reload(); err != nil {
			c.log.Warn().Str("listener", c.listener).Err(err).Msg("client CA file not reloaded; the previous CAs stay in use")
		} else if changed {
			c.log.Info().Str("listener", c.listener).Str("file", c.path).Msg("client CAs reloaded")
		}
	}
}

// reload loads the file if its contents changed; called with c.mu held. A content
// that failed before is not reported again.
func (c *ClientCerts) reload() (bool, error) {
	data, err := c.read()
	if err != nil {
		return false, err
	}
	if bytes.Equal(data, c.content) || (c.bad != nil && bytes.Equal(data, c.bad)) {
		return false, nil
	}
	if err := c.load(data); err != nil {
		c.bad = data
		return false, err
	}
	c.bad = nil
	return true, nil
}

func (c *ClientCerts) read() ([]byte, error) {
	f, err := os.Open(c.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.path, err)
	}
	if len(data) > maxCAFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", c.path, maxCAFile)
	}
	return data, nil
}

// load parses data as PEM CA certificates and swaps them in.
func (c *ClientCerts) load(data []byte) error {
	pool, err := parseCAs(data)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	c.pool.Store(pool)
	c.content = bytes.Clone(data)
	return nil
}

// parseCAs reads every PEM block of data: certificates go into the pool; a
// private key, another kind of block or no certificate at all is an error.
func parseCAs(data []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		switch {
		case block.Type == "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
			pool.AddCert(cert)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			return nil, fmt.Errorf("PEM block %d is a private key: the file needs only the CA certificates (keep the CA key out of the cluster)", n)
		default:
			return nil, fmt.Errorf("PEM block %d is a %q, want CERTIFICATE", n, block.Type)
		}
	}
	if n == 0 {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// truncate cuts s to at most n bytes and valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
