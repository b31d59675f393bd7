package proxy

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/server"
)

// selectorHeader carries the selector (flagd's sync server reads it before the
// request's deprecated selector field; so does the proxy).
const selectorHeader = "flagd-selector"

// defaultMaxStreams caps concurrent SyncFlags streams.
const defaultMaxStreams = 10000

// Options configure a Service.
type Options struct {
	// Flags serves the FeatureFlags. Required.
	Flags *Flags
	// Auth checks callers; nil serves every caller (--auth=none, the OpenFeature
	// Operator's flagd-proxy behaviour).
	Auth *Authorizer
	// Log receives refusals (throttled) and, at debug level, every stream.
	Log zerolog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// MaxStreams caps concurrent SyncFlags streams; more get ResourceExhausted. 0
	// is 10,000.
	MaxStreams int
	// Now is the clock of the refusal log's throttle (tests); nil is time.Now.
	Now func() time.Time
}

// Service is the proxy's FlagSyncService.
type Service struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
	opts     Options
	streams  atomic.Int64
	refusals server.LogThrottle
	done     <-chan struct{} // closed when Serve's context ends
}

// NewService returns the service; serve it with Serve.
func NewService(opts Options) *Service {
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = defaultMaxStreams
	}
	s := &Service{opts: opts, done: make(chan struct{})}
	s.refusals.Now = opts.Now
	return s
}

// Serve serves the service on ln through a sync listener configured by listener
// (its Store and Service are set here) until ctx ends; then every stream ends with
// Unavailable (sidecars reconnect) and the listener shuts down gracefully.
func (s *Service) Serve(ctx context.Context, ln net.Listener, listener syncserver.Options) error {
	s.done = ctx.Done()
	listener.Store, listener.Service = nil, s
	return syncserver.New(listener).Serve(ctx, ln)
}

// selectorOf returns the request's selector: the Flagd-Selector metadata if
// present, otherwise the request's field.
func selectorOf(ctx context.Context, body string) string {
	if vs := metadata.ValueFromIncomingContext(ctx, selectorHeader); len(vs) > 0 {
		return vs[0]
	}
	return body
}

// admit parses the selector and checks the caller: InvalidArgument for a selector
// that names no FeatureFlag, PermissionDenied for a caller without a valid token or
// without the grant. The caller is nil without an Authorizer.
func (s *Service) admit(ctx context.Context, method, selector string) (Ref, *Caller, error) {
	ref, err := ParseSelector(selector)
	if err != nil {
		return ref, nil, s.refuse(method, selector, nil, status.Error(codes.InvalidArgument, err.Error()))
	}
	if s.opts.Auth == nil {
		return ref, nil, nil
	}
	caller, err := s.opts.Auth.Authenticate(ctx, metadata.ValueFromIncomingContext(ctx, "authorization"))
	if err == nil {
		err = s.opts.Auth.Authorize(ctx, caller, ref)
	}
	if err != nil {
		return ref, nil, s.refuse(method, selector, caller, err)
	}
	return ref, caller, nil
}

// refuse counts and logs (at most every 10 s) a refused RPC and returns err.
func (s *Service) refuse(method, selector string, caller *Caller, err error) error {
	code := status.Code(err)
	s.opts.Metrics.refusedRPC(code.String())
	if log, held := s.refusals.Allow(); log {
		level := zerolog.WarnLevel
		if code == codes.InvalidArgument || code == codes.NotFound {
			level = zerolog.InfoLevel
		}
		s.opts.Log.WithLevel(level).Func(func(e *zerolog.Event) {
			if caller != nil {
				e.Str("caller", caller.Name())
			}
		}).Str("method", method).Str("selector", limit(selector, maxQuoted)).Str("code", code.String()).
			Str("reason", status.Convert(err).Message()).Int64("refused_since_last_log", held).Msg("flagd-proxy request refused (logged at most every 10 s)")
	}
	return err
}

// SyncFlags streams the FeatureFlag the selector names: its flags at once, then
// after every change. The caller is checked again every Authorizer.RecheckEvery and
// when its token expires; a refusal ends the stream with PermissionDenied.
func (s *Service) SyncFlags(req *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	ctx := stream.Context()
	selector := selectorOf(ctx, req.GetSelector())
	ref, caller, err := s.admit(ctx, "SyncFlags", selector)
	if err != nil {
		return err
	}
	if n := s.streams.Add(1); n > int64(s.opts.MaxStreams) {
		s.streams.Add(-1)
		return s.refuse("SyncFlags", selector, caller, status.Errorf(codes.ResourceExhausted, "too many sync streams (limit %d)", s.opts.MaxStreams))
	}
	defer s.streams.Add(-1)
	sub, err := s.opts.Flags.Subscribe(ctx, ref)
	if err != nil {
		return s.refuse("SyncFlags", selector, caller, s.flagError(ctx, ref, err))
	}
	defer sub.Close()
	s.opts.Metrics.streamOpened(1)
	defer s.opts.Metrics.streamOpened(-1)
	log := s.opts.Log.With().Str("featureflag", ref.String()).Str("provider_id", req.GetProviderId()).Logger()
	if caller != nil {
		log = log.With().Str("caller", caller.Name()).Logger()
	}
	log.Debug().Msg("sync stream opened")
	end, err := s.follow(ctx, stream, sub, ref, caller)
	log.Debug().Str("reason", end).Err(err).Msg("sync stream closed")
	if status.Code(err) == codes.PermissionDenied {
		return s.refuse("SyncFlags", selector, caller, err)
	}
	return err
}

// follow sends the subscription's documents until the stream ends; it returns why.
func (s *Service) follow(ctx context.Context, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse], sub *Subscription, ref Ref, caller *Caller) (string, error) {
	var recheck, expiry <-chan time.Time
	if caller != nil {
		t := time.NewTicker(s.opts.Auth.RecheckEvery())
		defer t.Stop()
		recheck = t.C
		if !caller.Expires.IsZero() {
			e := time.NewTimer(time.Until(caller.Expires))
			defer e.Stop()
			expiry = e.C
		}
	}
	for {
		select {
		case p := <-sub.C():
			if err := stream.Send(&syncv1.SyncFlagsResponse{FlagConfiguration: p.Doc}); err != nil {
				return "send failed", err
			}
		case <-recheck:
			if err := s.opts.Auth.Recheck(ctx, caller, ref); err != nil {
				if status.Code(err) == codes.Unavailable {
					continue // the API server is away: keep serving, ask again later
				}
				return "access revoked", err
			}
		case <-expiry:
			return "token expired", status.Errorf(codes.PermissionDenied, "the token expired at %s: reconnect with the current one (the kubelet rotates projected tokens)", caller.Expires.UTC().Format(time.RFC3339))
		case <-ctx.Done():
			return "client gone", status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return "shutdown", status.Error(codes.Unavailable, "server shutting down")
		}
	}
}

// flagError maps a Subscribe or Current error to a status.
func (s *Service) flagError(ctx context.Context, ref Ref, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Errorf(codes.NotFound, "FeatureFlag %s not found", ref)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.Unavailable, "FeatureFlag %s: %v", ref, err)
}

// FetchAllFlags returns the FeatureFlag's flags once.
func (s *Service) FetchAllFlags(ctx context.Context, req *syncv1.FetchAllFlagsRequest) (*syncv1.FetchAllFlagsResponse, error) {
	selector := selectorOf(ctx, req.GetSelector())
	ref, caller, err := s.admit(ctx, "FetchAllFlags", selector)
	if err != nil {
		return nil, err
	}
	p, err := s.opts.Flags.Current(ctx, ref)
	if err != nil {
		return nil, s.refuse("FetchAllFlags", selector, caller, s.flagError(ctx, ref, err))
	}
	return &syncv1.FetchAllFlagsResponse{FlagConfiguration: p.Doc}, nil
}

// GetMetadata returns no metadata (the proxy has no static context values), to an
// authenticated caller.
func (s *Service) GetMetadata(ctx context.Context, _ *syncv1.GetMetadataRequest) (*syncv1.GetMetadataResponse, error) {
	if s.opts.Auth != nil {
		if _, err := s.opts.Auth.Authenticate(ctx, metadata.ValueFromIncomingContext(ctx, "authorization")); err != nil {
			return nil, s.refuse("GetMetadata", "", nil, err)
		}
	}
	return &syncv1.GetMetadataResponse{Metadata: &structpb.Struct{}}, nil
}
