package evaluation

import (
	"context"

	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"connectrpc.com/connect"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// v2Service implements flagd.evaluation.v2.Service: value and variant are proto3
// optional and stay unset when the caller must use its code default (DISABLED, or
// DEFAULT without a default variant).
type v2Service struct{ s *Service }

func (h *v2Service) ResolveBoolean(ctx context.Context, req *connect.Request[evalv2.ResolveBooleanRequest]) (*connect.Response[evalv2.ResolveBooleanResponse], error) {
	return reply[evalv2.ResolveBooleanResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeBoolean, apiV2))
}

func (h *v2Service) ResolveString(ctx context.Context, req *connect.Request[evalv2.ResolveStringRequest]) (*connect.Response[evalv2.ResolveStringResponse], error) {
	return reply[evalv2.ResolveStringResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeString, apiV2))
}

func (h *v2Service) ResolveFloat(ctx context.Context, req *connect.Request[evalv2.ResolveFloatRequest]) (*connect.Response[evalv2.ResolveFloatResponse], error) {
	return reply[evalv2.ResolveFloatResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeFloat, apiV2))
}

func (h *v2Service) ResolveInt(ctx context.Context, req *connect.Request[evalv2.ResolveIntRequest]) (*connect.Response[evalv2.ResolveIntResponse], error) {
	return reply[evalv2.ResolveIntResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeInteger, apiV2))
}

func (h *v2Service) ResolveObject(ctx context.Context, req *connect.Request[evalv2.ResolveObjectRequest]) (*connect.Response[evalv2.ResolveObjectResponse], error) {
	return reply[evalv2.ResolveObjectResponse](h.s.resolveMessage(ctx, req.Header(), req.Msg.GetFlagKey(), req.Msg.GetContext(), eval.TypeObject, apiV2))
}

func (h *v2Service) EventStream(ctx context.Context, req *connect.Request[evalv2.EventStreamRequest], stream *connect.ServerStream[evalv2.EventStreamResponse]) error {
	return h.s.eventStream(ctx, req.Header().Get(SelectorHeader), true, func(ev *streamEvent) error {
		return stream.Send(&evalv2.EventStreamResponse{Type: ev.typ, Data: ev.data})
	})
}
