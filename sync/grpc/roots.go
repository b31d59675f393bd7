package grpcsource

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"
)

// maxCertFile bounds what is read from certPath: a bundle of a few CAs is a few
// kilobytes.
const maxCertFile = 1 << 20

// reloadingTLS is TLS transport credentials that trust certPath's current content
// (plus the system roots): the file is read again for every handshake, so a CA
// bundle mounted from a ConfigMap (the flagd-proxy's, which the operator rotates)
// is trusted as it changes, on the next connection. A file that cannot be read or
// holds no certificate keeps the last good roots, with a warning.
type reloadingTLS struct {
	*rootFile
	serverName string // "": the dialed authority
}

// rootFile is certPath and what was read from it last; clones share it.
type rootFile struct {
	path string
	log  zerolog.Logger

	mu   sync.Mutex
	last []byte // content of the last good read
	pool *x509.CertPool
}

// newReloadingTLS reads certPath once: a file that is missing or holds no
// certificate at start is an error naming certPath.
func newReloadingTLS(path string, log zerolog.Logger) (*reloadingTLS, error) {
	c := &reloadingTLS{rootFile: &rootFile{path: path, log: log}}
	if _, err := c.roots(); err != nil {
		return nil, err
	}
	return c, nil
}

// roots returns the pool for certPath's current content.
func (c *rootFile) roots() (*x509.CertPool, error) {
	data, err := readBounded(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil && c.pool != nil && bytes.Equal(data, c.last) {
		return c.pool, nil
	}
	var pool *x509.CertPool
	if err == nil {
		if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
			pool, err = x509.NewCertPool(), nil
		}
		if !pool.AppendCertsFromPEM(data) {
			err = fmt.Errorf("certPath: %s holds no PEM certificate", c.path)
		}
	}
	if err != nil {
		if c.pool == nil {
			return nil, err
		}
		c.log.Warn().Err(err).Msg("certPath unusable; the CAs read last are trusted")
		return c.pool, nil
	}
	if c.pool != nil {
		c.log.Info().Str("certPath", c.path).Msg("certPath changed; new connections trust its CAs")
	}
	c.last, c.pool = data, pool
	return pool, nil
}

// readBounded reads path, refusing more than maxCertFile bytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // G304: certPath is the operator's configuration
	if err != nil {
		return nil, fmt.Errorf("certPath: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, fmt.Errorf("certPath: reading %s: %w", path, err)
	}
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("certPath: %s is larger than %d bytes", path, maxCertFile)
	}
	return data, nil
}

// tls returns grpc-go's TLS credentials over the current roots.
func (c *reloadingTLS) tls(roots *x509.CertPool) credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: c.serverName})
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *reloadingTLS) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	roots, err := c.roots()
	if err != nil {
		return nil, nil, err
	}
	return c.tls(roots).ClientHandshake(ctx, authority, conn)
}

// ServerHandshake implements credentials.TransportCredentials; a source never
// accepts connections.
func (c *reloadingTLS) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("grpc source %s: client credentials cannot accept connections", c.path)
}

// Info implements credentials.TransportCredentials.
func (c *reloadingTLS) Info() credentials.ProtocolInfo { return c.tls(nil).Info() }

// Clone implements credentials.TransportCredentials; the clone shares the cache.
func (c *reloadingTLS) Clone() credentials.TransportCredentials {
	out := *c
	return &out
}

// OverrideServerName implements credentials.TransportCredentials.
func (c *reloadingTLS) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}
