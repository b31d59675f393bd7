package evaluation

import (
	"context"

	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// v2Service implements flagd.evaluation.v2.Service: value and variant are proto3
// optional and stay unset when the caller must use its code default (DISABLED, or
// DEFAULT without a default variant).
type v2Service struct{ s *Service }

func (h *v2Service) ResolveBoolean(_ context.Context, req *connect.Request[evalv2.ResolveBooleanRequest]) (*connect.Response[evalv2.ResolveBooleanResponse], error) {
	r, err := h.s.resolve(req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeBoolean, apiV2)
	if err != nil {
		return nil, err
	}
	out := &evalv2.ResolveBooleanResponse{Reason: string(r.res.Reason), Metadata: r.meta}
	if v, ok := r.res.Value.(bool); ok {
		out.Value, out.Variant = &v, variantOf(r)
	}
	return connect.NewResponse(out), nil
}

func (h *v2Service) ResolveString(_ context.Context, req *connect.Request[evalv2.ResolveStringRequest]) (*connect.Response[evalv2.ResolveStringResponse], error) {
	r, err := h.s.resolve(req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeString, apiV2)
	if err != nil {
		return nil, err
	}
	out := &evalv2.ResolveStringResponse{Reason: string(r.res.Reason), Metadata: r.meta}
	if v, ok := r.res.Value.(string); ok {
		out.Value, out.Variant = &v, variantOf(r)
	}
	return connect.NewResponse(out), nil
}

func (h *v2Service) ResolveFloat(_ context.Context, req *connect.Request[evalv2.ResolveFloatRequest]) (*connect.Response[evalv2.ResolveFloatResponse], error) {
	r, err := h.s.resolve(req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeFloat, apiV2)
	if err != nil {
		return nil, err
	}
	out := &evalv2.ResolveFloatResponse{Reason: string(r.res.Reason), Metadata: r.meta}
	if v, ok := r.res.Value.(float64); ok {
		out.Value, out.Variant = &v, variantOf(r)
	}
	return connect.NewResponse(out), nil
}

func (h *v2Service) ResolveInt(_ context.Context, req *connect.Request[evalv2.ResolveIntRequest]) (*connect.Response[evalv2.ResolveIntResponse], error) {
	r, err := h.s.resolve(req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeInteger, apiV2)
	if err != nil {
		return nil, err
	}
	out := &evalv2.ResolveIntResponse{Reason: string(r.res.Reason), Metadata: r.meta}
	if v, ok := r.res.Value.(int64); ok {
		out.Value, out.Variant = &v, variantOf(r)
	}
	return connect.NewResponse(out), nil
}

func (h *v2Service) ResolveObject(_ context.Context, req *connect.Request[evalv2.ResolveObjectRequest]) (*connect.Response[evalv2.ResolveObjectResponse], error) {
	r, err := h.s.resolve(req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeObject, apiV2)
	if err != nil {
		return nil, err
	}
	v, err := h.s.objectValue(r)
	if err != nil {
		return nil, err
	}
	out := &evalv2.ResolveObjectResponse{Reason: string(r.res.Reason), Metadata: r.meta, Value: v}
	if v != nil {
		out.Variant = variantOf(r)
	}
	return connect.NewResponse(out), nil
}

func (h *v2Service) EventStream(ctx context.Context, req *connect.Request[evalv2.EventStreamRequest], stream *connect.ServerStream[evalv2.EventStreamResponse]) error {
	return h.s.eventStream(ctx, req.Header(), true, func(typ string, data *structpb.Struct) error {
		return stream.Send(&evalv2.EventStreamResponse{Type: typ, Data: data})
	})
}

// variantOf is the optional variant of a resolution with a value (flagd leaves an
// empty variant name unset).
func variantOf(r result) *string {
	if r.res.Variant == "" {
		return nil
	}
	v := r.res.Variant
	return &v
}
