package evaluation

import (
	"context"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// v1Service implements flagd.evaluation.v1.Service. Responses always carry value,
// reason, variant and metadata; a flag without a default variant is reported as
// FLAG_NOT_FOUND (flagd's "old proto behaviour"), a disabled flag as a success with
// the zero value and reason DISABLED.
type v1Service struct{ s *Service }

func (h *v1Service) ResolveBoolean(ctx context.Context, req *connect.Request[evalv1.ResolveBooleanRequest]) (*connect.Response[evalv1.ResolveBooleanResponse], error) {
	return reply[evalv1.ResolveBooleanResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeBoolean, apiV1))
}

func (h *v1Service) ResolveString(ctx context.Context, req *connect.Request[evalv1.ResolveStringRequest]) (*connect.Response[evalv1.ResolveStringResponse], error) {
	return reply[evalv1.ResolveStringResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeString, apiV1))
}

func (h *v1Service) ResolveFloat(ctx context.Context, req *connect.Request[evalv1.ResolveFloatRequest]) (*connect.Response[evalv1.ResolveFloatResponse], error) {
	return reply[evalv1.ResolveFloatResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeFloat, apiV1))
}

func (h *v1Service) ResolveInt(ctx context.Context, req *connect.Request[evalv1.ResolveIntRequest]) (*connect.Response[evalv1.ResolveIntResponse], error) {
	return reply[evalv1.ResolveIntResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeInteger, apiV1))
}

func (h *v1Service) ResolveObject(ctx context.Context, req *connect.Request[evalv1.ResolveObjectRequest]) (*connect.Response[evalv1.ResolveObjectResponse], error) {
	return reply[evalv1.ResolveObjectResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeObject, apiV1))
}

func (h *v1Service) ResolveAll(ctx context.Context, req *connect.Request[evalv1.ResolveAllRequest]) (*connect.Response[evalv1.ResolveAllResponse], error) {
	items, sel, err := h.s.resolveAll(ctx, httpMeta(req.Header()), req.Msg.GetContext(), apiV1)
	if err != nil {
		return nil, err
	}
	defer h.s.items.put(items)
	return connect.NewResponse(v1AllResponse(items, sel)), nil
}

// v1AllResponse is the ResolveAll response of v1.
func v1AllResponse(items []bulkItem, sel store.Selector) *evalv1.ResolveAllResponse {
	out := &evalv1.ResolveAllResponse{Flags: make(map[string]*evalv1.AnyFlag, len(items)), Metadata: selectorMetadata(sel)}
	for _, it := range items {
		f := &evalv1.AnyFlag{Reason: it.reason, Variant: it.variant, Metadata: it.meta}
		switch v := it.value.(type) {
		case bool:
			f.Value = &evalv1.AnyFlag_BoolValue{BoolValue: v}
		case string:
			f.Value = &evalv1.AnyFlag_StringValue{StringValue: v}
		case float64:
			f.Value = &evalv1.AnyFlag_DoubleValue{DoubleValue: v}
		case *structpb.Struct:
			f.Value = &evalv1.AnyFlag_ObjectValue{ObjectValue: v}
		}
		out.Flags[it.key] = f
	}
	return out
}

func (h *v1Service) EventStream(ctx context.Context, req *connect.Request[evalv1.EventStreamRequest], stream *connect.ServerStream[evalv1.EventStreamResponse]) error {
	return h.s.eventStream(ctx, req.Header().Get(SelectorHeader), true, func(ev *streamEvent) error {
		return stream.Send(&evalv1.EventStreamResponse{Type: ev.typ, Data: ev.data})
	})
}
