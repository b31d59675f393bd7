package syncserver

import (
	"context"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// selectorHeader is the metadata key carrying the selector (gRPC lower-cases keys).
const selectorHeader = "flagd-selector"

// Stream end reasons of the feature_flag_flagd_sync_stream_duration_seconds metric.
const (
	reasonNormalClose      = "normal_close"      // the server shut down
	reasonDeadlineExceeded = "deadline_exceeded" // --stream-deadline passed
	reasonClientDisconnect = "client_disconnect" // the client went away, cancelled or timed out
	reasonError            = "error"
)

// handler implements FlagSyncService.
type handler struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
	s *Server
}

// selector returns the request's selector: the Flagd-Selector header if present
// (even empty, as flagd), otherwise the deprecated body field.
func selector(ctx context.Context, body string) (string, store.Selector, error) {
	expr := body
	if vs := metadata.ValueFromIncomingContext(ctx, selectorHeader); len(vs) > 0 {
		expr = vs[0]
	}
	sel, err := store.ParseSelector(expr)
	if err != nil {
		return expr, sel, status.Error(codes.InvalidArgument, err.Error())
	}
	return expr, sel, nil
}

// SyncFlags streams the selection's full flag configuration: once the store is ready
// (or the start-up wait has passed), then after every change that touches the
// selection.
func (h *handler) SyncFlags(req *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	s := h.s
	ctx := stream.Context()
	providerID := req.GetProviderId()
	expr, sel, err := selector(ctx, req.GetSelector()) // the body selector is deprecated but still honoured, as flagd
	if err != nil {
		end := s.opts.Metrics.SyncStreamStarted(s.labels.labels(store.Redact(expr), providerID))
		end(reasonError)
		s.opts.Log.Debug().Str("provider_id", providerID).Str("selector", store.Redact(expr)).Err(err).Msg("sync stream rejected")
		return err
	}
	if n := s.streams.Add(1); n > s.maxStreams {
		s.streams.Add(-1)
		if log, held := s.refusals.Allow(); log {
			s.opts.Log.Warn().Int64("limit", s.maxStreams).Int64("refused_since_last_warning", held).
				Msg("sync streams rejected: too many open streams (logged at most every 10 s)")
		}
		return status.Errorf(codes.ResourceExhausted, "too many sync streams (limit %d)", s.maxStreams)
	}
	defer s.streams.Add(-1)

	end := s.opts.Metrics.SyncStreamStarted(s.labels.labels(sel.String(), providerID))
	reason := reasonError
	defer func() { end(reason) }()
	s.opts.Log.Debug().Str("provider_id", providerID).Str("selector", sel.String()).Msg("sync stream opened")
	defer func() {
		s.opts.Log.Debug().Str("provider_id", providerID).Str("selector", sel.String()).Str("reason", reason).Msg("sync stream closed")
	}()

	var deadline <-chan time.Time
	if d := s.opts.StreamDeadline; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
	}
	// ended classifies why the stream stops when it is not a send failure.
	ended := func() error {
		select {
		case <-s.done:
			reason = reasonNormalClose
			return errShuttingDown()
		case <-deadline:
			reason = reasonDeadlineExceeded
			return status.Error(codes.DeadlineExceeded, "stream closed due to server-side timeout")
		default:
			reason = reasonClientDisconnect
			return status.FromContextError(ctx.Err()).Err()
		}
	}

	select {
	case <-s.ready:
	case <-ctx.Done():
		return ended()
	case <-s.done:
		return ended()
	case <-deadline:
		reason = reasonDeadlineExceeded
		return status.Error(codes.DeadlineExceeded, "stream closed due to server-side timeout")
	}

	st := s.opts.Store
	wake, stop := st.Watch() // before reading the snapshot, so no change is missed
	defer stop()
	// The payload is deterministic (flags sorted by key, each flag's JSON covering all
	// a client can observe), so an equal payload means the selection did not change.
	last := s.payload(st.Current(), sel)
	if err := stream.Send(s.response(last)); err != nil {
		reason = reasonClientDisconnect
		return err
	}
	for {
		select {
		case <-wake:
			p := s.payload(st.Current(), sel)
			if p == last {
				if s.wakeHook != nil {
					s.wakeHook(false)
				}
				continue
			}
			last = p
			if err := stream.Send(s.response(p)); err != nil {
				reason = reasonClientDisconnect
				return err
			}
			if s.wakeHook != nil {
				s.wakeHook(true)
			}
		case <-ctx.Done():
			return ended()
		case <-s.done:
			return ended()
		case <-deadline:
			reason = reasonDeadlineExceeded
			return status.Error(codes.DeadlineExceeded, "stream closed due to server-side timeout")
		}
	}
}

func (s *Server) response(payload string) *syncv1.SyncFlagsResponse {
	return &syncv1.SyncFlagsResponse{FlagConfiguration: payload, SyncContext: s.syncContext}
}

// FetchAllFlags returns the selection's flag configuration once, after the store is
// ready (or the start-up wait has passed).
func (h *handler) FetchAllFlags(ctx context.Context, req *syncv1.FetchAllFlagsRequest) (*syncv1.FetchAllFlagsResponse, error) {
	_, sel, err := selector(ctx, req.GetSelector())
	if err != nil {
		return nil, err
	}
	if err := h.s.waitReady(ctx); err != nil {
		return nil, err
	}
	return &syncv1.FetchAllFlagsResponse{FlagConfiguration: h.s.payload(h.s.opts.Store.Current(), sel)}, nil
}

// GetMetadata returns the static context values, or Unimplemented when disabled.
//
// GetMetadata is deprecated in the protocol but still served, as flagd.
func (h *handler) GetMetadata(context.Context, *syncv1.GetMetadataRequest) (*syncv1.GetMetadataResponse, error) {
	if h.s.opts.DisableMetadata {
		return nil, status.Error(codes.Unimplemented, "metadata endpoint disabled")
	}
	return &syncv1.GetMetadataResponse{Metadata: h.s.syncContext}, nil
}
