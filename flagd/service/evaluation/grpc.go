package evaluation

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // requests compressed with gzip, as connect-go accepts them
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// The gRPC transport: the evaluation listener's connections whose first request is
// gRPC with the protobuf codec are served by grpc-go (server.ListenConfig.GRPC),
// with the same services, methods and answers as connect-go gives them on the
// other connections: status codes and messages, response messages, the metrics of
// the HTTP middleware (metrics.RPCs), spans, the bearer token check, the body
// limit, EventStream limits and shutdown. The typed Resolve* methods decode their
// request straight into the evaluation context (resolveRequest) and encode their
// response by hand, splicing in the cached binary encoding of the metadata and of
// object values, as the Connect JSON fast path does with JSON; ResolveAll and
// EventStream use the generated messages.

// grpcMethod is one method served over grpc-go.
type grpcMethod struct {
	path string // "/flagd.evaluation.v1.Service/ResolveBoolean"
	fastProcedure
	newRequest func() proto.Message // the generated request message (fallback decoding, error messages)
}

// GRPCServer returns the grpc-go server of the evaluation listener's gRPC
// connections, serving flagd.evaluation.v1 (with ResolveAll), flagd.evaluation.v2
// and schema.v1. transport are the listener's options (server.GRPCServerOptions).
// A request message is limited to MaxRequestBody bytes after decompression, as the
// connect-go handlers limit it.
func (s *Service) GRPCServer(transport ...grpc.ServerOption) *grpc.Server {
	maxRecv := math.MaxInt32
	if s.opts.MaxRequestBody > 0 && s.opts.MaxRequestBody < math.MaxInt32 {
		maxRecv = int(s.opts.MaxRequestBody)
	}
	opts := append([]grpc.ServerOption{grpc.ForceServerCodecV2(grpcCodec{}), grpc.MaxRecvMsgSize(maxRecv)}, transport...)
	g := grpc.NewServer(opts...)
	for _, d := range s.grpcServices() {
		g.RegisterService(d, s)
	}
	return g
}

// grpcServices are the service descriptions of the three services.
func (s *Service) grpcServices() []*grpc.ServiceDesc {
	type typed struct {
		name string
		typ  eval.Type
		v1   func() proto.Message
		v2   func() proto.Message
		old  func() proto.Message
	}
	methods := []typed{
		{"ResolveBoolean", eval.TypeBoolean, func() proto.Message { return &evalv1.ResolveBooleanRequest{} },
			func() proto.Message { return &evalv2.ResolveBooleanRequest{} }, func() proto.Message { return &schemav1.ResolveBooleanRequest{} }},
		{"ResolveString", eval.TypeString, func() proto.Message { return &evalv1.ResolveStringRequest{} },
			func() proto.Message { return &evalv2.ResolveStringRequest{} }, func() proto.Message { return &schemav1.ResolveStringRequest{} }},
		{"ResolveFloat", eval.TypeFloat, func() proto.Message { return &evalv1.ResolveFloatRequest{} },
			func() proto.Message { return &evalv2.ResolveFloatRequest{} }, func() proto.Message { return &schemav1.ResolveFloatRequest{} }},
		{"ResolveInt", eval.TypeInteger, func() proto.Message { return &evalv1.ResolveIntRequest{} },
			func() proto.Message { return &evalv2.ResolveIntRequest{} }, func() proto.Message { return &schemav1.ResolveIntRequest{} }},
		{"ResolveObject", eval.TypeObject, func() proto.Message { return &evalv1.ResolveObjectRequest{} },
			func() proto.Message { return &evalv2.ResolveObjectRequest{} }, func() proto.Message { return &schemav1.ResolveObjectRequest{} }},
	}
	services := []struct {
		name string
		api  api
		file string
	}{
		{"flagd.evaluation.v1.Service", apiV1, "flagd/evaluation/v1/evaluation.proto"},
		{"flagd.evaluation.v2.Service", apiV2, "flagd/evaluation/v2/evaluation.proto"},
		{"schema.v1.Service", apiSchemaV1, "schema/v1/schema.proto"},
	}
	var out []*grpc.ServiceDesc
	for _, svc := range services {
		d := &grpc.ServiceDesc{ServiceName: svc.name, HandlerType: (*any)(nil), Metadata: svc.file}
		for _, m := range methods {
			gm := &grpcMethod{path: "/" + svc.name + "/" + m.name, fastProcedure: fastProcedure{svc.api, m.typ}}
			switch svc.api {
			case apiV1:
				gm.newRequest = m.v1
			case apiV2:
				gm.newRequest = m.v2
			default:
				gm.newRequest = m.old
			}
			d.Methods = append(d.Methods, grpc.MethodDesc{MethodName: m.name,
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					return s.grpcResolve(ctx, dec, gm)
				}})
		}
		a := svc.api
		if a != apiV2 {
			all := &grpcMethod{path: "/" + svc.name + "/ResolveAll", fastProcedure: fastProcedure{a, eval.TypeAny}}
			all.newRequest = func() proto.Message { return &evalv1.ResolveAllRequest{} }
			if a == apiSchemaV1 {
				all.newRequest = func() proto.Message { return &schemav1.ResolveAllRequest{} }
			}
			d.Methods = append(d.Methods, grpc.MethodDesc{MethodName: "ResolveAll",
				Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					return s.grpcResolveAll(ctx, dec, all)
				}})
		}
		stream := &grpcMethod{path: "/" + svc.name + "/EventStream", fastProcedure: fastProcedure{a, eval.TypeAny}}
		switch a {
		case apiV1:
			stream.newRequest = func() proto.Message { return &evalv1.EventStreamRequest{} }
		case apiV2:
			stream.newRequest = func() proto.Message { return &evalv2.EventStreamRequest{} }
		default:
			stream.newRequest = func() proto.Message { return &schemav1.EventStreamRequest{} }
		}
		d.Streams = []grpc.StreamDesc{{StreamName: "EventStream", ServerStreams: true,
			Handler: func(_ any, ss grpc.ServerStream) error { return s.grpcEventStream(ss, stream) }}}
		out = append(out, d)
	}
	return out
}

// grpcReply is a response message encoded by hand; grpcCodec sends its bytes. A
// reply with a pool gives its buffer (pooled, holding b) back to it once grpc-go
// has written it.
type grpcReply struct {
	b      []byte
	pooled *[]byte
	pool   *replyPool
}

// protoRequest is a request message decoded by grpcCodec; err is a decoding
// failure, answered InvalidArgument by the handler (grpc-go would answer Internal).
type protoRequest struct {
	msg proto.Message
	err error
}

// grpcCodec is the codec of the gRPC transport (forced: only connections speaking
// gRPC with the protobuf codec reach grpc-go). It decodes requests within
// protolimit's bounds and sends hand-encoded replies as they are.
type grpcCodec struct{}

func (grpcCodec) Name() string { return "proto" }

func (grpcCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*grpcReply); ok {
		if r.pool != nil {
			return mem.BufferSlice{mem.NewBuffer(r.pooled, r.pool)}, nil
		}
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return protolimit.GRPCCodec{}.Marshal(v)
}

func (grpcCodec) Unmarshal(data mem.BufferSlice, v any) error {
	var buf mem.Buffer
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		defer buf.Free()
		b = buf.ReadOnlyData()
	}
	switch r := v.(type) {
	case *resolveRequest:
		r.decode(b)
		return nil
	case *protoRequest:
		r.err = protolimit.UnmarshalBinary(b, r.msg)
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", v)
	}
	return protolimit.UnmarshalBinary(b, m)
}

// decodeError is connect-go's error for a request it cannot decode.
func decodeError(m proto.Message, err error) error {
	return status.Errorf(codes.InvalidArgument, "unmarshal message: unmarshal into %T: %v", m, err)
}

// grpcError converts an error of the shared evaluation code (a connect error) to
// the status connect-go sends over gRPC.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return status.Error(codes.Code(ce.Code()), ce.Message())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unknown, err.Error())
}

// grpcMeta reads what the evaluation needs from the RPC's metadata: the selector,
// the headers --context-from-header maps (only when configured) and, with tracing,
// the caller's trace context.
func (s *Service) grpcMeta(ctx context.Context) reqMeta {
	var m reqMeta
	if v := metadata.ValueFromIncomingContext(ctx, selectorKey); len(v) > 0 {
		m.selector = v[0]
	}
	if s.enricher != nil && len(s.enricher.Headers) > 0 {
		m.header = make(http.Header, len(s.enricher.Headers))
		for name := range s.enricher.Headers {
			key := strings.ToLower(name)
			if key == "host" { // net/http's Host is HTTP/2's :authority
				key = ":authority"
			}
			if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
				m.header[http.CanonicalHeaderKey(name)] = v
			}
		}
	}
	if s.tracing != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		m.carrier = metadataCarrier(md)
	}
	return m
}

// selectorKey is the Flagd-Selector header as gRPC metadata.
const selectorKey = "flagd-selector"

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

// grpcRecover turns a panic of a handler into connect-go's answer to it (Internal
// "internal error", logged); http.ErrAbortHandler is not special here.
func (s *Service) grpcRecover(path string, err *error) {
	if p := recover(); p != nil {
		*err = grpcError(s.recovered(path, p))
	}
}

// grpcResolve serves a typed Resolve* method.
func (s *Service) grpcResolve(ctx context.Context, dec func(any) error, gm *grpcMethod) (reply any, err error) {
	rpc := s.rpcs.Start(gm.path, server.GRPCIsTLS(ctx))
	size := 0
	defer func() { rpc.End(size) }()
	defer server.RequestReceived(ctx)
	defer s.grpcRecover(gm.path, &err)
	if err := s.opts.Auth.VerifyGRPC(ctx, "evaluation"); err != nil {
		return nil, err
	}
	var req resolveRequest
	if err := dec(&req); err != nil {
		return nil, err
	}
	server.RequestReceived(ctx)
	if req.slow {
		msg := gm.newRequest()
		if err := protolimit.UnmarshalBinary(req.raw, msg); err != nil {
			return nil, decodeError(msg, err)
		}
		r := msg.(interface {
			GetFlagKey() string
			GetContext() *structpb.Struct
		})
		req.key, req.ctx = r.GetFlagKey(), structMap(r.GetContext())
	}
	// connect-go checks the request's context before it calls the method
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	m := s.grpcMeta(ctx)
	span := s.startSpan(ctx, m, resolveSpanName(gm.typ), gm.api)
	if span != nil {
		defer span.End()
	}
	f, err := s.find(m.selector, req.key, span)
	if err != nil {
		return nil, grpcError(err)
	}
	res, err := s.evaluate(f, req.key, s.evalContext(req.ctx, m.header, gm.api), gm.typ, gm.api, span)
	if err != nil {
		return nil, grpcError(err)
	}
	out, exact, err := s.appendProtoResponse(nil, gm.fastProcedure, res)
	if err != nil {
		return nil, grpcError(err)
	}
	if !exact {
		// something protobuf cannot encode (invalid UTF-8): the message says what
		msg, err := s.responseMessage(gm.api, gm.typ, res)
		if err != nil {
			return nil, grpcError(err)
		}
		if out, err = proto.Marshal(msg); err != nil {
			return nil, status.Errorf(codes.Internal, "marshal message: %v", err)
		}
	}
	size = len(out) + 5
	return &grpcReply{b: out}, nil
}

// grpcResolveAll serves ResolveAll of v1 and schema.v1: from the list's pieces
// (allWire) when they are usable, else from the items (the item path).
func (s *Service) grpcResolveAll(ctx context.Context, dec func(any) error, gm *grpcMethod) (reply any, err error) {
	rpc := s.rpcs.Start(gm.path, server.GRPCIsTLS(ctx))
	size := 0
	defer func() { rpc.End(size) }()
	defer server.RequestReceived(ctx)
	defer s.grpcRecover(gm.path, &err)
	if err := s.opts.Auth.VerifyGRPC(ctx, "evaluation"); err != nil {
		return nil, err
	}
	req := protoRequest{msg: gm.newRequest()}
	if err := dec(&req); err != nil {
		return nil, err
	}
	server.RequestReceived(ctx)
	if req.err != nil {
		return nil, decodeError(req.msg, req.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	reqCtx := req.msg.(interface{ GetContext() *structpb.Struct }).GetContext()
	buf := s.replies.Get(0)
	defer func() {
		if err != nil { // no reply holds buf
			s.replies.Put(buf)
		}
	}()
	var (
		items        []bulkItem
		out          []byte // the answer's flags from the list's pieces (allWire)
		wired, unfit bool
	)
	m := s.grpcMeta(ctx)
	sel, err := s.resolveAllSpan(ctx, m, gm.api, func(sel store.Selector) int {
		p := s.newAllPass(sel, m.header, reqCtx, gm.api)
		defer p.done()
		if w := p.wire(); w != nil && w.usable {
			var n int
			out, n, wired = p.appendWire((*buf)[:0], w)
			// !wired cannot happen with usable pieces; the flags counted so far must
			// not be counted twice, so the answer fails (as protobuf would refuse it)
			unfit = !wired
			return n
		}
		items = p.items()
		return len(items)
	})
	if err != nil {
		return nil, grpcError(err)
	}
	if unfit {
		return nil, status.Error(codes.Internal, "marshal message: a flag's answer cannot be encoded")
	}
	defer s.items.put(items)
	var selMeta []byte
	if sm := selectorMetadata(sel); gm.api == apiV1 && sm != nil {
		if selMeta, err = (proto.MarshalOptions{Deterministic: true}).Marshal(sm); err != nil {
			return nil, status.Errorf(codes.Internal, "marshal message: %v", err)
		}
		if selMeta == nil {
			selMeta = []byte{} // present, empty
		}
	}
	if !wired {
		out = (*buf)[:0]
	}
	// the items (none after the pieces' flags), then the selector's metadata
	out, exact := appendResolveAll(out, gm.api, items, selMeta)
	if !exact {
		// something protobuf cannot encode (invalid UTF-8): the message says what
		var msg proto.Message
		if gm.api == apiV1 {
			msg = v1AllResponse(items, sel)
		} else {
			msg = schemaAllResponse(items)
		}
		if out, err = proto.Marshal(msg); err != nil {
			return nil, status.Errorf(codes.Internal, "marshal message: %v", err)
		}
	}
	size = len(out) + 5
	*buf = out // grown, or replaced by protobuf-go's: the pool takes either
	return &grpcReply{b: out, pooled: buf, pool: &s.replies}, nil
}

// grpcEventStream serves EventStream of the three services.
func (s *Service) grpcEventStream(ss grpc.ServerStream, gm *grpcMethod) (err error) {
	ctx := ss.Context()
	rpc := s.rpcs.Start(gm.path, server.GRPCIsTLS(ctx))
	size := 0
	defer func() { rpc.End(size) }()
	defer server.RequestReceived(ctx)
	defer s.grpcRecover(gm.path, &err)
	if err := s.opts.Auth.VerifyGRPC(ctx, "evaluation"); err != nil {
		return err
	}
	req := protoRequest{msg: gm.newRequest()}
	if err := ss.RecvMsg(&req); err != nil {
		return err
	}
	server.RequestReceived(ctx)
	if req.err != nil {
		return decodeError(req.msg, req.err)
	}
	// the three services' EventStreamResponse are the same message: one encoding
	send := func(ev *streamEvent) error {
		b := ev.encoded()
		if err := ss.SendMsg(&grpcReply{b: b}); err != nil {
			return err
		}
		size += len(b) + 5
		return nil
	}
	return grpcError(s.eventStream(ctx, s.grpcMeta(ctx).selector, gm.api != apiSchemaV1, send))
}
