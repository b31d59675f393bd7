package syncserver

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
)

// With tracing, every RPC is a server span of the "flagd.sync" tracer named as
// otelgrpc names them (flagd's sync server uses its stats handler):
// "flagd.sync.v1.FlagSyncService/SyncFlags", with rpc.system, rpc.service,
// rpc.method and rpc.grpc.status_code. A SyncFlags span lasts as long as its
// stream. The selector and provider id (request data) are not recorded.

// traceUnary is the unary interceptor of a traced server.
func (s *Server) traceUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	ctx, span := s.startSpan(ctx, info.FullMethod)
	defer span.End()
	resp, err := next(ctx, req)
	endRPC(span, err)
	return resp, err
}

// traceStream is the stream interceptor of a traced server.
func (s *Server) traceStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	ctx, span := s.startSpan(ss.Context(), info.FullMethod)
	defer span.End()
	err := next(srv, tracedStream{ServerStream: ss, ctx: ctx})
	endRPC(span, err)
	return err
}

func (s *Server) startSpan(ctx context.Context, fullMethod string) (context.Context, trace.Span) {
	md, _ := metadata.FromIncomingContext(ctx)
	name := strings.TrimPrefix(fullMethod, "/")
	ctx, span := s.opts.Tracing.Start(ctx, tracing.Sync, name, metadataCarrier(md))
	service, method, _ := strings.Cut(name, "/")
	span.SetAttributes(attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", service), attribute.String("rpc.method", method))
	return ctx, span
}

// endRPC records the status code; codes that mean a server fault set the span's
// status to Error (as otelgrpc does for server spans).
func endRPC(span trace.Span, err error) {
	code := status.Code(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		span.SetStatus(otelcodes.Error, code.String())
	}
}

// tracedStream carries the span's context to the handler.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (t tracedStream) Context() context.Context { return t.ctx }

// metadataCarrier reads the trace context from incoming gRPC metadata.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if vs := metadata.MD(m).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (m metadataCarrier) Set(key, value string) { metadata.MD(m).Set(key, value) }

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
