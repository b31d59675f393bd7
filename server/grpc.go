package server

import (
	"context"
	"errors"
	"math"
	"net"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"
)

// gRPC transport settings of a split listener (GRPCServerOptions).
const (
	// grpcBufferSize is the size of the write buffer a connection takes from
	// grpc-go's pool while it writes (none while idle): grpc-go copies every frame
	// through it and writes it out whenever it is full, so a response of n bytes
	// costs n/grpcBufferSize writes. 16 KiB, a whole DATA frame or TLS record, writes
	// a 1,000-flag ResolveAll answer in a quarter of the writes 4 KiB took: 24% less
	// server CPU per call (grpc-all), with unary calls and the EventStream
	// fan-out's RSS unchanged; 32 KiB saved little more and kept 20 MiB more in the
	// pool after a burst of streams (eventstream-fanout).
	grpcBufferSize = 16 << 10
	// grpcReadBufferSize is each connection's read buffer: a request's frames are a
	// few hundred bytes, and a bigger frame is read past the buffer (bufio reads a
	// payload at least its size straight into grpc-go's), so 1 KiB costs no more
	// reads and saves 3 MiB for 1,000 idle EventStreams (eventstream-fanout).
	grpcReadBufferSize = 1 << 10
	// grpcMinPingInterval is the shortest interval between a client's keepalive
	// pings that grpc-go tolerates (it sends GOAWAY "too_many_pings" to faster
	// clients). net/http, which served these listeners before, enforces nothing, and
	// grpc-go's default (5 min) would cut off providers configured to ping every
	// minute; pings stay cheap at this rate.
	grpcMinPingInterval = time.Second
	grpcWindow          = 1 << 20
)

// GRPCServerOptions are the grpc-go server options that give a listener's gRPC
// connections (ListenConfig.GRPC) the limits its HTTP connections have: at most 250
// concurrent streams per connection, request headers bounded by MaxHeaderBytes, the
// request message of each RPC within ReadTimeout of its headers (the handler must
// call RequestReceived once it has it), connections without an RPC closed after
// IdleTimeout, small per-connection read buffers and a write buffer taken from a
// pool only while writing (grpc-go's default), and keepalive pings from clients accepted down to one a second.
// Two settings are for speed: RPCs run on GOMAXPROCS worker goroutines (whose
// stacks have grown already) rather than a new goroutine each, and fixed 1 MiB
// flow-control windows replace grpc-go's bandwidth estimation, which pings the
// client on the first data of every quiet period (most unary calls). Together
// about a sixth of the CPU of a small unary call (floor-grpc). Message size limits
// and codecs are the service's business.
func GRPCServerOptions(cfg ListenConfig) []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(maxStreamsPerConnection),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcMinPingInterval, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: cfg.IdleTimeout}),
		grpc.ReadBufferSize(grpcReadBufferSize),
		grpc.WriteBufferSize(grpcBufferSize),
		grpc.Creds(splitCredentials{}),
		grpc.InitialWindowSize(grpcWindow),
		grpc.InitialConnWindowSize(grpcWindow),
	}
	// GOMAXPROCS is at least 1 and bounded by the CPUs; the bounds only prove the
	// conversion exact (out of them grpc-go would start a goroutine per RPC)
	if n := runtime.GOMAXPROCS(0); n > 0 && n <= math.MaxUint32 {
		opts = append(opts, grpc.NumStreamWorkers(uint32(n)))
	}
	if cfg.MaxHeaderBytes > 0 && cfg.MaxHeaderBytes <= math.MaxUint32 {
		opts = append(opts, grpc.MaxHeaderListSize(uint32(cfg.MaxHeaderBytes)))
	}
	if cfg.ReadHeaderTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(cfg.ReadHeaderTimeout))
	}
	if cfg.ReadTimeout > 0 {
		opts = append(opts, grpc.InTapHandle(RequestDeadline(cfg.ReadTimeout)))
	}
	return opts
}

// ErrRequestTimeout ends an RPC whose request message did not arrive within the
// listener's ReadTimeout.
var ErrRequestTimeout = errors.New("request message not received in time")

type requestTimerKey struct{}

// RequestDeadline returns a grpc.InTapHandle bounding the wait for an RPC's request
// message: grpc-go starts a handler (a goroutine, a stream slot) as soon as an RPC's
// headers arrive and has no deadline of its own for the message that follows, so a
// client sending headers only could hold goroutines for ever. The RPC's context is
// cancelled (with ErrRequestTimeout) after timeout unless the handler calls
// RequestReceived first; long-lived streams are not affected once their request is
// in.
func RequestDeadline(timeout time.Duration) tap.ServerInHandle {
	return func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		timer := time.AfterFunc(timeout, func() { cancel(ErrRequestTimeout) })
		return context.WithValue(ctx, requestTimerKey{}, timer), nil
	}
}

// RequestReceived stops the RequestDeadline timer of the RPC of ctx, if any.
func RequestReceived(ctx context.Context) {
	if t, ok := ctx.Value(requestTimerKey{}).(*time.Timer); ok {
		t.Stop()
	}
}

// splitCredentials are the transport credentials of a split listener's gRPC server
// (GRPCServerOptions): the splitter has terminated TLS already, so the handshake
// hands the connection on and reports what the TLS handshake established (peer
// AuthInfo credentials.TLSInfo, as grpc-go's own TLS credentials report it), or no
// security on plaintext connections.
type splitCredentials struct{}

type plainAuthInfo struct{ credentials.CommonAuthInfo }

func (plainAuthInfo) AuthType() string { return "insecure" }

func (splitCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if sc, ok := c.(*splitConn); ok && sc.tlsState != nil {
		return c, credentials.TLSInfo{State: *sc.tlsState, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
	}
	return c, plainAuthInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (splitCredentials) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("split listener credentials are server-side only")
}

func (splitCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "split"}
}

func (splitCredentials) Clone() credentials.TransportCredentials { return splitCredentials{} }

func (splitCredentials) OverrideServerName(string) error { return nil } // part of the interface

// GRPCIsTLS reports whether the RPC of ctx arrived over TLS.
func GRPCIsTLS(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	_, isTLS := p.AuthInfo.(credentials.TLSInfo)
	return isTLS
}
