package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
)

// Source is the admission server's certificate: it serves the current serving
// certificate through GetCertificate, reports through Healthy whether that
// certificate is usable, and keeps it current while Run runs. Call Run once; the
// other methods are safe for concurrent use at any time.
type Source struct {
	clk clock.Clock
	b   backend
}

// backend is one of the two modes.
type backend interface {
	// run keeps the certificate current until ctx ends.
	run(ctx context.Context) error
	// certificate is the certificate to serve (Leaf set), or nil.
	certificate() *tls.Certificate
	// lastError is the last problem keeping the certificate current, or nil.
	lastError() error
	// caBundle is the PEM bundle of the CAs clients must trust, or nil.
	caBundle() []byte
}

// New returns a Source in mounted mode when o.CertDir is set (the directory must
// hold a valid tls.crt and tls.key now), and in self-managed mode otherwise. The
// error lists every option that is wrong.
func New(o Options) (*Source, error) {
	return newSource(o, clock.RealClock{}, nil)
}

// newSource is New with a clock and, for the self-managed mode, the API clients
// (nil: REST clients from o.Config).
func newSource(o Options, clk clock.Clock, api *clients) (*Source, error) {
	if o.CertDir != "" {
		m, err := newMounted(o, clk)
		if err != nil {
			return nil, err
		}
		return &Source{clk: clk, b: m}, nil
	}
	o, h, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if api == nil {
		if o.Config == nil {
			return nil, fmt.Errorf("%s certificates: no Kubernetes client configuration", o.Purpose)
		}
		c, err := restClients(o.Config, o.Namespace)
		if err != nil {
			return nil, fmt.Errorf("%s certificates: %w", o.Purpose, err)
		}
		api = &c
	}
	return &Source{clk: clk, b: newManager(o, h, *api, clk)}, nil
}

// Run keeps the certificate current until ctx ends: in self-managed mode it
// creates, adopts, renews and repairs the Secret and the caBundles; in mounted
// mode it re-reads the files. Problems are logged and retried, never returned;
// Run returns nil when ctx ends, or an error if it cannot start at all.
func (s *Source) Run(ctx context.Context) error { return s.b.run(ctx) }

// GetCertificate implements tls.Config.GetCertificate: the current serving
// certificate, or an error (the handshake fails) before there is one.
func (s *Source) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.b.certificate(); c != nil {
		return c, nil
	}
	return nil, errNoCertificate
}

// CABundle returns the PEM certificates of the CAs a client of the serving
// certificate must trust (the newest CA first, older ones until they expire), as
// the Secret holds them after the last reconcile; nil before the first one and in
// mounted mode (the issuer distributes its CA there).
func (s *Source) CABundle() []byte { return s.b.caBundle() }

// TLSConfig returns a server TLS configuration (TLS 1.2+) serving the Source's
// certificate.
func (s *Source) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate}
}

// Healthy returns nil when a serving certificate is loaded and valid now, and
// otherwise why not (with the last error keeping it current, which names what to
// fix). Wire it into /readyz: a replica without a usable certificate must not
// receive admissions.
func (s *Source) Healthy() error {
	c := s.b.certificate()
	var problem string
	now := s.clk.Now()
	switch {
	case c == nil:
		problem = errNoCertificate.Error()
	case !now.Before(c.Leaf.NotAfter):
		problem = "the serving certificate expired at " + c.Leaf.NotAfter.UTC().Format(time.RFC3339)
	case now.Before(c.Leaf.NotBefore):
		problem = "the serving certificate is not valid before " + c.Leaf.NotBefore.UTC().Format(time.RFC3339)
	default:
		return nil
	}
	if err := s.b.lastError(); err != nil {
		return fmt.Errorf("%s: %w", problem, err)
	}
	return fmt.Errorf("%s", problem)
}

// Ready reports whether Healthy returns nil.
func (s *Source) Ready() bool { return s.Healthy() == nil }

// RegisterMetrics registers flagpole_webhook_certificate_expiry_timestamp_seconds
// with reg: the serving certificate's notAfter as a Unix time, 0 while there is
// none (so that an alert on "expires within N days" fires for a missing
// certificate too).
func (s *Source) RegisterMetrics(reg prometheus.Registerer) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "flagpole_webhook_certificate_expiry_timestamp_seconds",
		Help: "When the webhook's serving certificate expires (notAfter, Unix time); 0 while there is none.",
	}, func() float64 {
		if c := s.b.certificate(); c != nil {
			return float64(c.Leaf.NotAfter.Unix())
		}
		return 0
	})
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("webhook certificate metrics: %w", err)
	}
	return nil
}
