package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"
)

// tlsFiles are the collector TLS files: roots (--otel-ca-path; empty: the system
// roots) and a client certificate and key (--otel-cert-path, --otel-key-path;
// empty: no client certificate).
type tlsFiles struct {
	ca, cert, key string
}

// material is one reading of the TLS files: their bytes (to notice a change) and
// the client credentials built from them.
type material struct {
	ca, cert, key []byte
	creds         credentials.TransportCredentials
}

func (m *material) same(o *material) bool {
	return bytes.Equal(m.ca, o.ca) && bytes.Equal(m.cert, o.cert) && bytes.Equal(m.key, o.key)
}

// read reads the files and builds client TLS credentials from them. Errors name
// the flag of the file at fault.
func (f tlsFiles) read() (*material, error) {
	m := &material{}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		b, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("--otel-ca-path: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--otel-ca-path %s: no PEM certificate found", f.ca)
		}
		m.ca, cfg.RootCAs = b, pool
	}
	if f.cert != "" || f.key != "" {
		cert, err := os.ReadFile(f.cert)
		if err != nil {
			return nil, fmt.Errorf("--otel-cert-path: %w", err)
		}
		key, err := os.ReadFile(f.key)
		if err != nil {
			return nil, fmt.Errorf("--otel-key-path: %w", err)
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--otel-cert-path %s and --otel-key-path %s: %w", f.cert, f.key, err)
		}
		m.cert, m.key, cfg.Certificates = cert, key, []tls.Certificate{pair}
	}
	m.creds = credentials.NewTLS(cfg)
	return m, nil
}

// reloadingCreds are gRPC client credentials over the current reading of the TLS
// files. Every handshake uses the latest reading; when a reading changes, the
// connections made with the previous one are closed, so the next export
// handshakes again with the new files (a rotated client certificate is presented
// at once, not at the next reconnection, which may be days away).
type reloadingCreds struct {
	files tlsFiles
	cur   atomic.Pointer[material]
	conns connSet
	log   zerolog.Logger
}

func newReloadingCreds(files tlsFiles, log zerolog.Logger) (*reloadingCreds, error) {
	m, err := files.read()
	if err != nil {
		return nil, err
	}
	c := &reloadingCreds{files: files, log: log}
	c.cur.Store(m)
	return c, nil
}

// reload re-reads the files. It reports whether they changed and were taken; a
// reading that fails (a file half-written during a rotation, a key that does not
// match its certificate) is logged and the previous one kept.
func (c *reloadingCreds) reload() bool {
	m, err := c.files.read()
	if err != nil {
		c.log.Warn().Err(err).Msg("otel: cannot reload the collector TLS files; keeping the previous ones")
		return false
	}
	if m.same(c.cur.Load()) {
		return false
	}
	c.cur.Store(m)
	n := c.conns.closeAll()
	c.log.Info().Int("connections_closed", n).Msg("otel: collector TLS files reloaded")
	return true
}

// run reloads every interval until ctx ends. An interval of 0 never reloads.
func (c *reloadingCreds) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.reload()
		}
	}
}

var errServerSide = errors.New("otel: collector credentials are client-side only")

// ClientHandshake implements credentials.TransportCredentials with the latest reading.
func (c *reloadingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.cur.Load().creds.ClientHandshake(ctx, authority, conn)
}

// ServerHandshake implements credentials.TransportCredentials; it always fails.
func (c *reloadingCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errServerSide
}

// Info implements credentials.TransportCredentials.
func (c *reloadingCreds) Info() credentials.ProtocolInfo { return c.cur.Load().creds.Info() }

// Clone implements credentials.TransportCredentials: clones share the files and
// their reloading.
func (c *reloadingCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName implements the deprecated credentials.TransportCredentials
// method; the server name is the authority of the target.
func (c *reloadingCreds) OverrideServerName(string) error { return nil }

// dial opens a TCP connection to the collector and remembers it, so a reload can close it.
func (c *reloadingCreds) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.conns.add(conn), nil
}

// connSet tracks open connections.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (t *trackedConn) Close() error {
	t.once.Do(func() {
		t.set.mu.Lock()
		delete(t.set.conns, t)
		t.set.mu.Unlock()
	})
	return t.Conn.Close()
}

func (s *connSet) add(c net.Conn) net.Conn {
	t := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[t] = struct{}{}
	s.mu.Unlock()
	return t
}

// closeAll closes every tracked connection and returns how many there were.
func (s *connSet) closeAll() int {
	s.mu.Lock()
	all := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
	return len(all)
}
