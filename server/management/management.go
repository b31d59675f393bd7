// Package management serves a management port: /healthz (liveness), /readyz (200
// when the process is ready, with a JSON body saying what is degraded if anything
// is; 412 Precondition Failed with a JSON body saying why not, and from the start
// of shutdown), /metrics (Prometheus) and the gRPC health service
// grpc.health.v1.Health (over gRPC, gRPC-Web or Connect; h2c comes from
// server.Serve). flagd mode (port 8014) and the operator both use it; what "ready"
// and "degraded" mean is theirs to say.
package management

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// Options configures the management listener.
type Options struct {
	Ready func() bool // nil means always ready
	// NotReady, optional, returns the JSON body of a 412 from /readyz: what is
	// missing (flagd mode: the sources without a payload). Without it the body is
	// {"reason":"not ready"}.
	NotReady func() any
	// Degraded, optional, returns the JSON body of a 200 from /readyz, or nil for
	// none: ready, but serving in a degraded way (flagd mode: sources failing while
	// their last good flags are served). Kubelet probes read only the status.
	Degraded func() any
	Gatherer prometheus.Gatherer // /metrics; nil: /metrics answers 404
	Log      zerolog.Logger
	// Watch, optional, wakes gRPC health Watch streams when readiness may have
	// changed. Without it the Watch RPC answers Unimplemented (Check works).
	Watch func() (<-chan struct{}, func())
}

// Service is the management HTTP handler.
type Service struct {
	opts     Options
	handler  http.Handler
	shutting atomic.Bool
	once     sync.Once
	shutdown chan struct{} // closed by ShuttingDown
}

// New builds the management service.
func New(opts Options) *Service {
	s := &Service{opts: opts, shutdown: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/readyz", s.readyz)
	if opts.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	var checker grpchealth.Checker = healthChecker{s}
	if opts.Watch != nil {
		checker = healthWatcher{healthChecker{s}}
	}
	// the health request is one string, but unknown fields can nest: every codec
	// bounds what it decodes (protolimit)
	mux.Handle(grpchealth.NewHandler(checker, connect.WithCodec(protolimit.ConnectProto{}),
		connect.WithCodec(protolimit.NewConnectJSON("json", protojson.MarshalOptions{})),
		connect.WithCodec(protolimit.NewConnectJSON("json; charset=utf-8", protojson.MarshalOptions{}))))
	s.handler = mux
	return s
}

// Handler returns the HTTP handler of the management port.
func (s *Service) Handler() http.Handler { return s.handler }

// ShuttingDown marks the start of shutdown: from now on /readyz answers 412 and
// gRPC health reports NOT_SERVING (Watch streams are told at once). Idempotent.
func (s *Service) ShuttingDown() {
	s.once.Do(func() {
		s.shutting.Store(true)
		close(s.shutdown)
		s.opts.Log.Info().Msg("management: shutting down; reporting not ready")
	})
}

func (s *Service) ready() bool {
	return !s.shutting.Load() && (s.opts.Ready == nil || s.opts.Ready())
}

// reason is the 412 body when nothing more specific is known.
type reason struct {
	Reason string `json:"reason"`
}

func (s *Service) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.ready() {
		if s.opts.Degraded != nil {
			if body := s.opts.Degraded(); body != nil {
				writeJSON(w, http.StatusOK, body)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	var body any = reason{"shutting down"}
	if !s.shutting.Load() {
		body = reason{"not ready"}
		if s.opts.NotReady != nil {
			body = s.opts.NotReady()
		}
	}
	writeJSON(w, http.StatusPreconditionFailed, body)
}

// writeJSON answers status with body as JSON (no body if it cannot be encoded).
func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// healthChecker answers grpc.health.v1.Health/Check for the whole server ("").
type healthChecker struct{ s *Service }

// Check implements grpchealth.Checker.
func (c healthChecker) Check(_ context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q: only the server as a whole (\"\") is reported", req.Service))
	}
	if c.s.ready() {
		return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
}

// healthWatcher adds the streaming Watch RPC, woken by store updates and shutdown.
type healthWatcher struct{ healthChecker }

// Watch implements grpchealth.Watcher.
func (c healthWatcher) Watch(_ context.Context, req *grpchealth.CheckRequest, onChange func()) (func(), error) {
	if req.Service != "" {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q: only the server as a whole (\"\") is reported", req.Service))
	}
	changes, stopWatch := c.s.opts.Watch()
	done := make(chan struct{})
	go func() {
		shutdown := c.s.shutdown
		for {
			select {
			case <-done:
				return
			case <-changes:
				onChange()
			case <-shutdown:
				shutdown = nil // closed: fire once
				onChange()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			stopWatch()
		})
	}, nil
}
