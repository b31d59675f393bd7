package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// ListenConfig says where and how a listener serves.
type ListenConfig struct {
	Name       string // for logs: "evaluation", "ofrep", ...
	Address    string // host:port; ignored when SocketPath is set
	SocketPath string // unix socket path instead of TCP
	TLS        *tls.Config
	// HTTP/2 without TLS (h2c) is always enabled; with TLS, HTTP/2 is negotiated by ALPN.
	ReadHeaderTimeout time.Duration // request headers (HTTP/1.1) must arrive within this
	// ReadTimeout bounds reading a request, body included: per request on HTTP/1.1,
	// per stream on HTTP/2. It no longer applies once the body has been read (net/http
	// lifts it on HTTP/1.1, and it only guards the body on HTTP/2), so responses may
	// stream for as long as they like. 0: no bound.
	ReadTimeout time.Duration
	// IdleTimeout closes an HTTP/1.1 keep-alive connection waiting for its next
	// request, and an HTTP/2 connection without an open stream, after this long;
	// 0: never. Streams in progress keep their connection.
	IdleTimeout    time.Duration
	MaxHeaderBytes int
	// Conns, if set, caps the connections open at once on this listener and the
	// others sharing it (refusals: see ConnLimit).
	Conns         *ConnLimit
	ShutdownGrace time.Duration // default 5s
}

// maxStreamsPerConnection caps concurrent HTTP/2 streams on one connection.
const maxStreamsPerConnection = 250

// debugWriter adapts net/http's error log to zerolog at debug level.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Listen opens the listener (TCP or unix socket). A stale socket file is removed first.
func Listen(cfg ListenConfig) (net.Listener, error) {
	if cfg.SocketPath != "" {
		if err := os.Remove(cfg.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: removing stale socket %s: %w", cfg.Name, cfg.SocketPath, err)
		}
		ln, err := net.Listen("unix", cfg.SocketPath) //nolint:noctx // binding at start-up: there is nothing to cancel
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Name, err)
		}
		return ln, nil
	}
	ln, err := net.Listen("tcp", cfg.Address) //nolint:noctx // binding at start-up; a context would only bound resolving a host name
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Name, err)
	}
	return ln, nil
}

// Serve serves handler on ln until ctx ends, then shuts down gracefully: it stops
// accepting, calls beforeShutdown (e.g. to tell stream clients), and waits up to
// ShutdownGrace for requests in flight.
func Serve(ctx context.Context, ln net.Listener, cfg ListenConfig, handler http.Handler, log zerolog.Logger, beforeShutdown func()) error {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(cfg.TLS == nil)
	if cfg.Conns != nil {
		var refusal []byte
		if cfg.TLS == nil {
			refusal = HTTPRefusal
		}
		ln = cfg.Conns.Listener(ln, cfg.Name, refusal)
	}
	srv := &http.Server{
		Handler:           handler,
		Protocols:         protocols,
		TLSConfig:         cfg.TLS.Clone(), // each server configures ALPN on its own copy
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// TLS handshake failures and the like: debug noise, not stderr spam.
		ErrorLog: stdlog.New(debugWriter{log.With().Str("listener", cfg.Name).Logger()}, "", 0),
		// Bounded concurrent streams per HTTP/2 connection (EventStreams count).
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConnection},
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "") // certificates come from TLSConfig; ALPN offers h2
			return
		}
		errc <- srv.Serve(ln)
	}()
	log.Info().Str("listener", cfg.Name).Str("address", ln.Addr().String()).Bool("tls", cfg.TLS != nil).Msg("serving")
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", cfg.Name, err)
	case <-ctx.Done():
	}
	if beforeShutdown != nil {
		beforeShutdown()
	}
	grace := cfg.ShutdownGrace
	if grace == 0 {
		grace = 5 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if cfg.SocketPath != "" {
		_ = os.Remove(cfg.SocketPath)
	}
	log.Info().Str("listener", cfg.Name).Msg("stopped")
	return err
}
