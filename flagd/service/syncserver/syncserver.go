// Package syncserver serves flagd's sync API, flagd.sync.v1.FlagSyncService, which
// OpenFeature flagd providers in in-process mode (and flagd instances using a gRPC
// source) connect to with grpc-go: SyncFlags streams the full flag configuration of
// the caller's selection, first when the store is ready and then after every change
// that touches the selection; FetchAllFlags answers the same JSON once; GetMetadata
// returns the static --context-value entries.
package syncserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

const (
	defaultKeepAliveMinTime = 30 * time.Second
	defaultMaxStreams       = 10000
	// defaultReadyWait bounds how long the first SyncFlags message (and FetchAllFlags)
	// waits for every source's first payload, as flagd's 5 s start-up wait.
	defaultReadyWait = 5 * time.Second
	// shutdownGrace bounds GracefulStop; after it the server stops hard (flagd's grace).
	shutdownGrace = 5 * time.Second
	// maxRecvMsgSize bounds a request message: requests carry a provider id and a
	// selector only.
	maxRecvMsgSize = 64 << 10
	// maxHeaderListSize bounds request metadata (flagd's --max-request-header default).
	maxHeaderListSize = 1_000_000
	// maxStreamsPerConn bounds concurrent RPCs on one HTTP/2 connection.
	maxStreamsPerConn = 1000
	// maxCachedPayloads bounds the payloads cached per snapshot (one per selector).
	maxCachedPayloads = 1024
	// defaultRequestTimeout bounds the wait for a request message (Options.RequestTimeout).
	defaultRequestTimeout = 5 * time.Second
	// handshakeTimeout bounds a new connection's TLS and HTTP/2 handshake.
	handshakeTimeout = 10 * time.Second
	// readBufferSize is each connection's read buffer (grpc-go's default: 32 KiB):
	// a provider sends a request of a provider id and a selector, then window
	// updates and pings of a few bytes, and a bigger frame is read past the
	// buffer. 1 KiB instead of 4 saved 3 MiB of 1,000 idle streams (sync-fanout).
	readBufferSize = 1 << 10
)

// Options configures the sync server.
type Options struct {
	// Store holds the flags being served. Required unless Service is set.
	Store *store.Store
	// Service, when set, answers the RPCs instead of the store-backed handler (the
	// flagd-proxy's FeatureFlag streams): the server keeps its listener hardening,
	// TLS, interceptors and graceful shutdown; Store, Enricher, Metrics,
	// DisableMetadata, StreamDeadline and MaxStreams are then the Service's business.
	// Its streams must end when the context given to Serve ends.
	Service syncv1grpc.FlagSyncServiceServer
	// Enricher supplies the static --context-value entries, sent as sync_context and
	// returned by GetMetadata. May be nil (no static values).
	Enricher *service.Enricher
	// Metrics records one sync stream per SyncFlags call. May be nil.
	Metrics *metrics.Metrics
	// Auth, when set, requires a bearer token on every RPC (--auth-token-file).
	Auth *server.Tokens
	// Tracing makes a server span of every RPC. May be nil (no spans).
	Tracing *tracing.Tracing
	// Log receives the server's logs; per-stream logs are at debug level.
	Log zerolog.Logger
	// DisableMetadata makes GetMetadata answer Unimplemented "metadata endpoint disabled"
	// (--disable-sync-metadata).
	DisableMetadata bool
	// StreamDeadline ends every SyncFlags stream after this long with DeadlineExceeded
	// (--stream-deadline); 0 means never.
	StreamDeadline time.Duration
	// KeepAliveMinTime is the shortest interval at which clients may send keepalive
	// pings (--keep-alive-min-time); 0 means 30 s. Faster clients get GOAWAY.
	KeepAliveMinTime time.Duration
	// KeepAlivePermitWithoutStream allows keepalive pings on connections without an
	// open stream (--keep-alive-permit-without-stream; the CLI defaults it to true).
	KeepAlivePermitWithoutStream bool
	// TLS serves over TLS (HTTP/2 negotiated by ALPN) when set; nil serves plaintext.
	TLS *tls.Config
	// MaxStreams caps concurrent SyncFlags streams; more get ResourceExhausted. 0 means 10000.
	MaxStreams int
	// IdleTimeout closes a connection without an RPC in progress after this long
	// (--idle-timeout, with GOAWAY); 0 means never.
	IdleTimeout time.Duration
	// RequestTimeout bounds the wait for an RPC's request message once its headers
	// arrived; 0 means 5 s. SyncFlags streams last as long as they like afterwards.
	RequestTimeout time.Duration
}

// Server is the sync listener. Create it with New and run it with Serve (once).
type Server struct {
	opts        Options
	grpc        *grpc.Server
	syncContext *structpb.Struct // static values; shared read-only by every response
	maxStreams  int64
	streams     atomic.Int64
	refusals    server.LogThrottle // "too many streams" warnings
	labels      *labelLimiter
	payloads    payloadCache

	readyWait time.Duration // how long the readiness gate waits for the store (tests shorten it)
	ready     chan struct{} // closed when the store is ready or readyWait has passed
	readyOnce sync.Once
	done      chan struct{} // closed when shutdown begins
	doneOnce  sync.Once

	// wakeHook, if set (tests only), is called after a stream handled a store
	// wake-up, with whether it sent a message.
	wakeHook func(sent bool)
}

// New builds the server: a grpc-go server with keepalive enforcement, an idle
// timeout, deadlines for the handshake and for each request message, request size
// and nesting limits, panic recovery and, if configured, TLS, serving
// FlagSyncService.
func New(opts Options) *Server {
	if opts.KeepAliveMinTime <= 0 {
		opts.KeepAliveMinTime = defaultKeepAliveMinTime
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = defaultMaxStreams
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = defaultRequestTimeout
	}
	// Static values are strings, so the conversion cannot fail.
	sc, err := structpb.NewStruct(opts.Enricher.StaticContext())
	if err != nil {
		sc = &structpb.Struct{}
	}
	s := &Server{
		opts:        opts,
		syncContext: sc,
		maxStreams:  int64(opts.MaxStreams),
		labels:      newLabelLimiter(),
		readyWait:   defaultReadyWait,
		ready:       make(chan struct{}),
		done:        make(chan struct{}),
	}
	serverOpts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             opts.KeepAliveMinTime,
			PermitWithoutStream: opts.KeepAlivePermitWithoutStream,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: opts.IdleTimeout}),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.InTapHandle(requestDeadline{opts.RequestTimeout}.tap),
		grpc.StatsHandler(requestDeadline{opts.RequestTimeout}),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		// each in-process provider (or sidecar, behind flagd-proxy) holds a
		// connection: a small read buffer; grpc-go returns the write buffer to a
		// pool between writes by default
		grpc.ReadBufferSize(readBufferSize),
		// requests nesting messages deeper than protolimit allows are refused
		// (InvalidArgument) without being decoded
		grpc.ForceServerCodecV2(protolimit.GRPCServerCodec{}),
	}
	unary, stream := []grpc.UnaryServerInterceptor{s.recoverUnary}, []grpc.StreamServerInterceptor{s.recoverStream, protolimit.StreamInterceptor}
	if opts.Auth != nil {
		u, st := opts.Auth.GRPCInterceptors("sync")
		unary, stream = append([]grpc.UnaryServerInterceptor{u}, unary...), append([]grpc.StreamServerInterceptor{st}, stream...)
	}
	if opts.Tracing != nil {
		unary = append([]grpc.UnaryServerInterceptor{s.traceUnary}, unary...)
		stream = append([]grpc.StreamServerInterceptor{s.traceStream}, stream...)
	}
	serverOpts = append(serverOpts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...))
	if opts.TLS != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.grpc = grpc.NewServer(serverOpts...)
	var impl syncv1grpc.FlagSyncServiceServer = &handler{s: s}
	if opts.Service != nil {
		impl = opts.Service
	}
	s.grpc.RegisterService(protolimit.GRPCService(&syncv1grpc.FlagSyncService_ServiceDesc), impl)
	return s
}

// Serve serves on ln until ctx ends or the listener fails. On ctx's end it ends every
// SyncFlags stream (Unavailable "server shutting down", so providers reconnect), stops
// accepting, and waits up to 5 s for RPCs in flight before stopping hard. It returns
// nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	gateCtx, stopGate := context.WithCancel(ctx)
	defer stopGate()
	if s.opts.Store != nil {
		go s.gate(gateCtx)
	}

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(ln) }()
	s.opts.Log.Info().Str("listener", "sync").Str("address", ln.Addr().String()).Bool("tls", s.opts.TLS != nil).Msg("serving")

	select {
	case err := <-errc:
		s.beginShutdown()
		s.grpc.Stop()
		if err == nil {
			err = errors.New("server stopped unexpectedly")
		}
		return fmt.Errorf("sync: %w", err)
	case <-ctx.Done():
	}

	s.beginShutdown()
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.opts.Log.Warn().Str("listener", "sync").Dur("grace", shutdownGrace).Msg("RPCs still running after the shutdown grace; closing them")
		s.grpc.Stop()
		<-stopped
	}
	err := <-errc
	s.opts.Log.Info().Str("listener", "sync").Msg("stopped")
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

func (s *Server) beginShutdown() { s.doneOnce.Do(func() { close(s.done) }) }

func (s *Server) openGate() { s.readyOnce.Do(func() { close(s.ready) }) }

// gate opens the readiness gate once every source has had a payload applied, or
// after readyWait with whatever is loaded (logging the sources still missing).
func (s *Server) gate(ctx context.Context) {
	st := s.opts.Store
	wake, stop := st.Watch()
	defer stop()
	if st.Ready() {
		s.openGate()
		return
	}
	t := time.NewTimer(s.readyWait)
	defer t.Stop()
	for {
		select {
		case <-wake:
			if st.Ready() {
				s.openGate()
				return
			}
		case <-t.C:
			var missing []string
			for _, src := range st.Status() {
				if !src.Ready {
					missing = append(missing, src.Name)
				}
			}
			s.opts.Log.Warn().Str("listener", "sync").Dur("waited", s.readyWait).Strs("sources", missing).
				Msg("sources have not delivered their first payload; syncing the flags loaded so far")
			s.openGate()
			return
		case <-ctx.Done():
			return
		}
	}
}

// payloadCache holds the flag_configuration of the newest snapshot per selector, so
// that a change is rendered once however many streams share a selector.
type payloadCache struct {
	mu    sync.Mutex
	gen   uint64
	bySel map[store.Selector]*syncPayload
}

// syncPayload is a selection's flag_configuration and its SyncFlagsResponse, encoded
// once for every stream it goes to (they all reference the same bytes).
type syncPayload struct {
	config   string
	once     sync.Once
	response *protolimit.Encoded
	err      error
}

// encoded is the SyncFlagsResponse carrying the payload.
func (p *syncPayload) encoded(syncContext *structpb.Struct) (*protolimit.Encoded, error) {
	p.once.Do(func() {
		p.response, p.err = protolimit.Encode(&syncv1.SyncFlagsResponse{FlagConfiguration: p.config, SyncContext: syncContext})
	})
	return p.response, p.err
}

// payload returns the selection's flag_configuration in snap. Rendering happens under
// the lock: streams woken together by a change wait for one rendering instead of
// each doing it.
func (s *Server) payload(snap *store.Snapshot, sel store.Selector) *syncPayload {
	c := &s.payloads
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bySel == nil || snap.Generation > c.gen {
		c.gen, c.bySel = snap.Generation, make(map[store.Selector]*syncPayload)
	}
	if snap.Generation != c.gen { // an older snapshot, read before a newer one was cached
		return &syncPayload{config: string(snap.SyncPayload(sel))}
	}
	if p, ok := c.bySel[sel]; ok {
		return p
	}
	p := &syncPayload{config: string(snap.SyncPayload(sel))}
	if len(c.bySel) < maxCachedPayloads {
		c.bySel[sel] = p
	}
	return p
}

// waitReady blocks until the readiness gate opens, the RPC ends or shutdown begins.
func (s *Server) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.done:
		return errShuttingDown()
	}
}

// errShuttingDown is what an RPC ended by shutdown returns: Unavailable, which every
// provider treats as "reconnect".
func errShuttingDown() error { return status.Error(codes.Unavailable, "server shutting down") }

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error().Str("listener", "sync").Str("method", info.FullMethod).Interface("panic", p).Msg("RPC panicked")
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return next(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error().Str("listener", "sync").Str("method", info.FullMethod).Interface("panic", p).Msg("RPC panicked")
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return next(srv, ss)
}
