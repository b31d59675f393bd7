package evaluation

import (
	"context"

	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// schemaV1Service implements the deprecated schema.v1.Service. It has the shape of
// flagd.evaluation.v1 but does not map --context-from-header into the context, its
// EventStream ignores the stream deadline, and a flag without a default variant
// resolves to the zero value with reason DEFAULT (flagd leaks its internal FALLBACK
// reason here: fixed).
type schemaV1Service struct{ s *Service }

func (h *schemaV1Service) ResolveBoolean(ctx context.Context, req *connect.Request[schemav1.ResolveBooleanRequest]) (*connect.Response[schemav1.ResolveBooleanResponse], error) {
	return reply[schemav1.ResolveBooleanResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeBoolean, apiSchemaV1))
}

func (h *schemaV1Service) ResolveString(ctx context.Context, req *connect.Request[schemav1.ResolveStringRequest]) (*connect.Response[schemav1.ResolveStringResponse], error) {
	return reply[schemav1.ResolveStringResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeString, apiSchemaV1))
}

func (h *schemaV1Service) ResolveFloat(ctx context.Context, req *connect.Request[schemav1.ResolveFloatRequest]) (*connect.Response[schemav1.ResolveFloatResponse], error) {
	return reply[schemav1.ResolveFloatResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeFloat, apiSchemaV1))
}

func (h *schemaV1Service) ResolveInt(ctx context.Context, req *connect.Request[schemav1.ResolveIntRequest]) (*connect.Response[schemav1.ResolveIntResponse], error) {
	return reply[schemav1.ResolveIntResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeInteger, apiSchemaV1))
}

func (h *schemaV1Service) ResolveObject(ctx context.Context, req *connect.Request[schemav1.ResolveObjectRequest]) (*connect.Response[schemav1.ResolveObjectResponse], error) {
	return reply[schemav1.ResolveObjectResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeObject, apiSchemaV1))
}

func (h *schemaV1Service) ResolveAll(ctx context.Context, req *connect.Request[schemav1.ResolveAllRequest]) (*connect.Response[schemav1.ResolveAllResponse], error) {
	items, _, err := h.s.resolveAll(ctx, httpMeta(req.Header()), req.Msg.GetContext(), apiSchemaV1)
	if err != nil {
		return nil, err
	}
	defer h.s.items.put(items)
	return connect.NewResponse(schemaAllResponse(items)), nil
}

// schemaAllResponse is the ResolveAll response of schema.v1.
func schemaAllResponse(items []bulkItem) *schemav1.ResolveAllResponse {
	out := &schemav1.ResolveAllResponse{Flags: make(map[string]*schemav1.AnyFlag, len(items))}
	for _, it := range items {
		f := &schemav1.AnyFlag{Reason: it.reason, Variant: it.variant}
		switch v := it.value.(type) {
		case bool:
			f.Value = &schemav1.AnyFlag_BoolValue{BoolValue: v}
		case string:
			f.Value = &schemav1.AnyFlag_StringValue{StringValue: v}
		case float64:
			f.Value = &schemav1.AnyFlag_DoubleValue{DoubleValue: v}
		case *structpb.Struct:
			f.Value = &schemav1.AnyFlag_ObjectValue{ObjectValue: v}
		default:
			continue // schema.v1 AnyFlag has no way to say "no value"
		}
		out.Flags[it.key] = f
	}
	return out
}

func (h *schemaV1Service) EventStream(ctx context.Context, req *connect.Request[schemav1.EventStreamRequest], stream *connect.ServerStream[schemav1.EventStreamResponse]) error {
	return h.s.eventStream(ctx, req.Header().Get(SelectorHeader), false, func(ev *streamEvent) error {
		return stream.Send(&schemav1.EventStreamResponse{Type: ev.typ, Data: ev.data})
	})
}
