package grpcsource

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

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
	data, pool, err := flagsync.ReadCertPath(c.path)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.pool == nil {
			return nil, err
		}
		c.log.Warn().Err(err).Msg("certPath unusable; the CAs read last are trusted")
		return c.pool, nil
	}
	if c.pool != nil && !bytes.Equal(data, c.last) {
		c.log.Info().Str("certPath", c.path).Msg("certPath changed; new connections trust its CAs")
	}
	c.last, c.pool = data, pool
	return pool, nil
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
