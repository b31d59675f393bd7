// Package evaluation is flagd's evaluation listener (port 8013): one HTTP handler
// serving flagd.evaluation.v1.Service (with ResolveAll), flagd.evaluation.v2.Service
// and the deprecated schema.v1.Service over gRPC, gRPC-Web and Connect (JSON and
// binary protobuf), with flagd's JSON shapes, error mapping and EventStream events.
//
// Requests read the store's current snapshot without locking; the selector comes
// from the Flagd-Selector header and the evaluation context is the request's
// context merged with the configured --context-value / --context-from-header
// entries. Evaluation contexts are never logged above debug level.
//
// Unary Connect JSON calls of the typed Resolve* methods (what curl, browsers and
// the HTTP providers send) take a fast path in front of connect-go (fast.go): a
// hand-written decoder and encoder that answer exactly as connect-go does, at a
// fraction of the cost; anything it does not handle goes to connect-go unchanged.
package evaluation

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// SelectorHeader carries the selector of every evaluation request.
const SelectorHeader = "Flagd-Selector"

// Defaults of the Options left at zero.
const (
	DefaultKeepAlive  = 20 * time.Second
	DefaultMaxStreams = 10000
)

// The messages of flagd's error mapping (errFormat). SDKs map the gRPC/connect code
// back to an OpenFeature error code; the message is fixed, as in flagd. The precise
// reason is logged at debug level.
const (
	msgFlagNotFound = "Flag not found"
	msgTypeMismatch = "Type mismatch error"
	msgParseError   = "Error parsing input or configuration"
	msgGeneral      = "General error"
	msgDeadline     = "stream closed due to server-side timeout"
)

// Event types of EventStream.
const (
	eventProviderReady    = "provider_ready"
	eventConfigChange     = "configuration_change"
	eventKeepAlive        = "keep_alive"
	eventProviderShutdown = "provider_shutdown"
)

// jsonOptions are flagd's protojson options for responses (EmitUnpopulated).
var jsonOptions = protojson.MarshalOptions{EmitUnpopulated: true}

// metricsService is the service_name label of the HTTP metrics.
const metricsService = "flagd"

// Options configures the evaluation listener.
type Options struct {
	Store    *store.Store
	Enricher *service.Enricher // may be nil
	Metrics  *metrics.Metrics  // may be nil
	Tracing  *tracing.Tracing  // may be nil: no spans
	Log      zerolog.Logger
	// CORSOrigins are the origins allowed to call from a browser (server.CORS:
	// "*" allows all, "https://*.example.com" a pattern). Empty: no CORS headers at
	// all (flagd allows every origin then: a documented difference).
	CORSOrigins []string
	// Auth, when set, requires a bearer token on every request (--auth-token-file);
	// CORS preflights are answered before it.
	Auth *server.Tokens
	// MaxRequestBody limits a request body, and a decompressed message, in bytes;
	// 0 means unlimited.
	MaxRequestBody int64
	// StreamDeadline ends v1/v2 EventStreams with DeadlineExceeded after this long;
	// 0 means never. schema.v1 streams ignore it, as in flagd.
	StreamDeadline time.Duration
	// KeepAlive is the idle interval after which a stream gets a keep_alive event;
	// 0 means 20s.
	KeepAlive time.Duration
	// MaxStreams caps the concurrent EventStreams; 0 means 10000. Streams beyond
	// the cap are refused with ResourceExhausted.
	MaxStreams int
}

// Service is the evaluation listener. Create it with New.
type Service struct {
	opts       Options
	st         *store.Store
	enricher   *service.Enricher
	metrics    *metrics.Metrics
	tracing    *tracing.Tracing
	log        zerolog.Logger
	keepAlive  time.Duration
	maxStreams int64

	events       *events            // the events of EventStreams (stream.go)
	streams      atomic.Int64       // open EventStreams
	refusals     server.LogThrottle // "too many open streams" warnings
	shutdown     chan struct{}      // closed by Shutdown
	shutdownOnce sync.Once

	rpcs       *metrics.RPCs // the metrics of calls served by grpc-go (grpc.go)
	cache      structCache
	items      itemPool            // ResolveAll's items (allpool.go)
	replies    replyPool           // ResolveAll's gRPC responses
	procedures map[string]struct{} // known procedure paths: the bounded route label
	handler    http.Handler
	codec      *protolimit.ConnectJSON // flagd's JSON options: unpopulated fields emitted, unknown ones ignored

	// the fast path (fast.go); fast is nil when it is off
	fast        map[string]fastProcedure
	fastBufs    sync.Pool // *fastBuffers
	gzips       sync.Pool // *gzip.Writer
	mapsHost    bool      // --context-from-header maps Host, which connect-go adds to the request header
	hdrJSON     []string  // shared header values (net/http never modifies them)
	hdrJSONUTF8 []string
	hdrGzip     []string
	// observe, when set (tests), learns for each request to a fast procedure whether
	// the fast path served it ("") or why it went to connect-go.
	observe func(why string)
}

// New builds the service. opts.Store is required.
func New(opts Options) *Service { return newService(opts, true) }

// newService builds the service with or without the fast path (tests compare both).
func newService(opts Options, fast bool) *Service {
	s := &Service{
		opts:       opts,
		st:         opts.Store,
		enricher:   opts.Enricher,
		metrics:    opts.Metrics,
		tracing:    opts.Tracing,
		log:        opts.Log,
		keepAlive:  opts.KeepAlive,
		maxStreams: int64(opts.MaxStreams),
		shutdown:   make(chan struct{}),
		procedures: map[string]struct{}{},
		rpcs:       opts.Metrics.RPCs(metricsService),
		events:     newEvents(),
	}
	s.cache.metrics = opts.Metrics
	if s.keepAlive <= 0 {
		s.keepAlive = DefaultKeepAlive
	}
	if s.maxStreams <= 0 {
		s.maxStreams = DefaultMaxStreams
	}
	// flagd's JSON codec options: unpopulated fields are emitted (v1 always carries
	// value, reason, variant and metadata; unset proto3 optional fields of v2 stay
	// omitted), unknown request fields are ignored, int64 values are JSON strings
	s.codec = protolimit.NewConnectJSON("json", jsonOptions)
	if fast {
		s.fast = fastProcedures()
		s.fastBufs.New = func() any { return &fastBuffers{in: make([]byte, 0, 512), out: make([]byte, 0, 512)} }
		s.gzips.New = func() any { return gzip.NewWriter(nil) }
		s.hdrJSON = []string{"application/json"}
		s.hdrJSONUTF8 = []string{"application/json; charset=utf-8"}
		s.hdrGzip = []string{"gzip"}
		if opts.Enricher != nil {
			for name := range opts.Enricher.Headers {
				s.mapsHost = s.mapsHost || http.CanonicalHeaderKey(name) == "Host"
			}
		}
	}
	s.handler = s.buildHandler()
	return s
}

// Handler returns the HTTP handler serving the three evaluation services, with
// CORS, the request body limit and the HTTP metrics (route label: the procedure
// path, or "other" for unknown paths).
func (s *Service) Handler() http.Handler { return s.handler }

// Shutdown sends provider_shutdown to every open EventStream and ends them; streams
// opened afterwards are refused with Unavailable. It is idempotent.
func (s *Service) Shutdown() {
	s.shutdownOnce.Do(func() { close(s.shutdown) })
}

func (s *Service) buildHandler() http.Handler {
	handlerOpts := []connect.HandlerOption{
		// every codec bounds the nesting it decodes (protolimit)
		connect.WithCodec(protolimit.ConnectProto{}),
		connect.WithCodec(s.codec),
		connect.WithCodec(protolimit.NewConnectJSON("json; charset=utf-8", jsonOptions)),
		// tiny responses are not worth gzip (the Go HTTP client asks for it by default)
		connect.WithCompressMinBytes(compressMinBytes),
		connect.WithRecover(func(_ context.Context, spec connect.Spec, _ http.Header, p any) error {
			return s.recovered(spec.Procedure, p)
		}),
	}
	if s.opts.MaxRequestBody > 0 {
		// per message, after decompression (the byte limit below covers the raw body)
		handlerOpts = append(handlerOpts, connect.WithReadMaxBytes(int(min(s.opts.MaxRequestBody, int64(maxInt)))))
	}
	_, v1Handler := evaluationv1connect.NewServiceHandler(&v1Service{s: s}, handlerOpts...)
	_, v2Handler := evaluationv2connect.NewServiceHandler(&v2Service{s: s}, handlerOpts...)
	_, oldHandler := schemav1connect.NewServiceHandler(&schemaV1Service{s: s}, handlerOpts...)
	for _, p := range []string{
		evaluationv1connect.ServiceResolveAllProcedure, evaluationv1connect.ServiceResolveBooleanProcedure,
		evaluationv1connect.ServiceResolveStringProcedure, evaluationv1connect.ServiceResolveFloatProcedure,
		evaluationv1connect.ServiceResolveIntProcedure, evaluationv1connect.ServiceResolveObjectProcedure,
		evaluationv1connect.ServiceEventStreamProcedure,
		evaluationv2connect.ServiceResolveBooleanProcedure, evaluationv2connect.ServiceResolveStringProcedure,
		evaluationv2connect.ServiceResolveFloatProcedure, evaluationv2connect.ServiceResolveIntProcedure,
		evaluationv2connect.ServiceResolveObjectProcedure, evaluationv2connect.ServiceEventStreamProcedure,
		schemav1connect.ServiceResolveAllProcedure, schemav1connect.ServiceResolveBooleanProcedure,
		schemav1connect.ServiceResolveStringProcedure, schemav1connect.ServiceResolveFloatProcedure,
		schemav1connect.ServiceResolveIntProcedure, schemav1connect.ServiceResolveObjectProcedure,
		schemav1connect.ServiceEventStreamProcedure,
	} {
		s.procedures[p] = struct{}{}
	}

	// flagd's bufSwitchHandler: /flagd.evaluation.v2... to v2, other /flagd... to v1,
	// everything else to the legacy schema.v1 service.
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/flagd.evaluation.v2"):
			v2Handler.ServeHTTP(w, r)
		case strings.HasPrefix(p, "/flagd"):
			v1Handler.ServeHTTP(w, r)
		default:
			oldHandler.ServeHTTP(w, r)
		}
	})
	if s.fast != nil {
		// unary Connect JSON calls of the typed methods, in front of connect-go
		slow := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if p, ok := s.fast[r.URL.Path]; ok {
				s.serveFast(w, r, p, slow)
				return
			}
			slow.ServeHTTP(w, r)
		})
	}
	if s.opts.MaxRequestBody > 0 {
		h = http.MaxBytesHandler(h, s.opts.MaxRequestBody)
	}
	h = s.metrics.Middleware(metricsService, s.route, s.opts.Auth.Handler("evaluation", h))
	return server.NewCORS(s.opts.CORSOrigins).Handler(corsRules, h)
}

const maxInt = int(^uint(0) >> 1)

// route is the metrics route label: the procedure path when it is one of ours.
func (s *Service) route(r *http.Request) string {
	if _, ok := s.procedures[r.URL.Path]; ok {
		return r.URL.Path
	}
	return "other"
}

// api says which service a request came through; the services differ in how they
// report the code default and whether they map headers into the context.
type api uint8

const (
	apiV1 api = iota
	apiV2
	apiSchemaV1
)

// result is a successful resolution with its response metadata. codeDefault means
// no value and no variant: the caller uses its code default (DISABLED, or DEFAULT
// without a defaultVariant).
type result struct {
	entry       *store.Entry
	gen         uint64
	res         eval.Resolution
	meta        *cachedStruct
	codeDefault bool
}

// found is a flag found through the request's selector.
type found struct {
	snap  *store.Snapshot
	sel   store.Selector
	entry *store.Entry
}

// resolve evaluates one flag for a typed method of any of the services (the
// connect-go handlers; the fast path does the same in fastAnswer).
func (s *Service) resolve(ctx context.Context, m reqMeta, key string, reqCtx *structpb.Struct, t eval.Type, a api) (result, error) {
	span := s.startSpan(ctx, m, resolveSpanName(t), a)
	if span != nil {
		defer span.End()
	}
	f, err := s.find(m.selector, key, span)
	if err != nil {
		return result{}, err
	}
	return s.evaluate(f, key, s.evalContext(structMap(reqCtx), m.header, a), t, a, span)
}

// reqMeta is what an evaluation reads from a request's headers (net/http) or
// metadata (grpc-go): the selector, the headers --context-from-header maps (nil
// when none is configured on the gRPC path), and the caller's trace context.
type reqMeta struct {
	selector string
	header   http.Header
	carrier  propagation.TextMapCarrier // read only when tracing
}

// httpMeta is the reqMeta of an HTTP request's headers.
func httpMeta(h http.Header) reqMeta {
	return reqMeta{selector: h.Get(SelectorHeader), header: h, carrier: propagation.HeaderCarrier(h)}
}

// find parses the selector and looks the flag up. A flag that is not found is
// recorded (metrics, span, debug log) and reported as flagd does. span is nil when
// tracing is off.
func (s *Service) find(selector, key string, span trace.Span) (found, error) {
	sel, err := store.ParseSelector(selector)
	if err != nil {
		if span != nil {
			tracing.Failed(span, tracing.ErrorType(eval.ErrorGeneral), "invalid selector")
		}
		return found{}, connect.NewError(connect.CodeInvalidArgument, err)
	}
	snap := s.st.Current()
	e, ok := snap.Get(key, sel)
	if !ok {
		res := eval.NotFound(key)
		s.record(span, key, false, res)
		s.logFailure(key, sel, res)
		return found{}, errorFor(res.ErrorCode)
	}
	return found{snap: snap, sel: sel, entry: e}, nil
}

// evaluate resolves a found flag with the request's evaluation context (already
// enriched) and records the evaluation.
func (s *Service) evaluate(f found, key string, ctx map[string]any, t eval.Type, a api, span trace.Span) (result, error) {
	res := f.entry.Flag.EvaluateAs(t, ctx, nil)
	if res.Failed() {
		s.record(span, key, true, res)
		s.logFailure(key, f.sel, res)
		return result{}, errorFor(res.ErrorCode)
	}
	codeDefault := res.Value == nil
	if codeDefault && a == apiV1 && res.Reason == eval.ReasonDefault {
		// flagd's "old proto behaviour": v1 reports a code default as FLAG_NOT_FOUND
		nf := eval.Resolution{Reason: eval.ReasonError, ErrorCode: eval.ErrorFlagNotFound,
			ErrorMessage: fmt.Sprintf("flag %q has no default variant: flagd.evaluation.v1 reports the code default as FLAG_NOT_FOUND", key)}
		s.record(span, key, true, nf)
		s.logFailure(key, f.sel, nf)
		return result{}, errorFor(nf.ErrorCode)
	}
	gen := f.snap.Generation
	ec := s.cache.entry(gen, f.entry)
	ec.counters.Count(s.metrics, key, res)
	if span != nil {
		tracing.Evaluation(span, key, res)
	}
	return result{entry: f.entry, gen: gen, res: res, meta: ec.metadata(f.sel, f.entry.Flag.Metadata), codeDefault: codeDefault}, nil
}

// record records one evaluation in the metrics and, when tracing, on span.
func (s *Service) record(span trace.Span, key string, exists bool, res eval.Resolution) {
	s.metrics.Evaluation(key, exists, res)
	if span != nil {
		tracing.Evaluation(span, key, res)
	}
}

// startSpan starts the server span of one RPC (flagd's tracer of the service and
// span name), the child of the caller's trace context in header. It returns nil
// when tracing is off.
func (s *Service) startSpan(ctx context.Context, m reqMeta, name string, a api) trace.Span {
	if s.tracing == nil {
		return nil
	}
	scope := tracing.EvaluationV1
	switch a {
	case apiV2:
		scope = tracing.EvaluationV2
	case apiSchemaV1:
		scope = tracing.SchemaV1
	}
	_, span := s.tracing.Start(ctx, scope, name, m.carrier)
	return span
}

// resolveSpanName is flagd's span name of a typed Resolve* method.
func resolveSpanName(t eval.Type) string {
	switch t {
	case eval.TypeBoolean:
		return "resolveBoolean"
	case eval.TypeString:
		return "resolveString"
	case eval.TypeInteger:
		return "resolveInt"
	case eval.TypeFloat:
		return "resolveFloat"
	case eval.TypeObject:
		return "resolveObject"
	}
	return "resolveAll"
}

// structMap is the request context as a map; nil when it is absent or empty.
func structMap(reqCtx *structpb.Struct) map[string]any {
	if len(reqCtx.GetFields()) == 0 {
		return nil
	}
	return reqCtx.AsMap()
}

// evalContext builds the evaluation context: the request's, then --context-value, then
// (except for schema.v1, as in flagd) --context-from-header.
func (s *Service) evalContext(base map[string]any, header http.Header, a api) map[string]any {
	if a == apiSchemaV1 {
		header = nil
	}
	return s.enricher.Merge(base, header)
}

func (s *Service) logFailure(key string, sel store.Selector, res eval.Resolution) {
	s.log.Debug().Str("flag", key).Str("selector", sel.String()).Str("error_code", string(res.ErrorCode)).
		Str("error", res.ErrorMessage).Msg("evaluation failed")
}

// errorFor maps an error code as flagd's errFormat does. Error responses carry no
// result body.
func errorFor(code eval.ErrorCode) error {
	switch code {
	case eval.ErrorFlagNotFound:
		return connect.NewError(connect.CodeNotFound, errors.New(msgFlagNotFound))
	case eval.ErrorTypeMismatch:
		return connect.NewError(connect.CodeInvalidArgument, errors.New(msgTypeMismatch))
	case eval.ErrorParse:
		return connect.NewError(connect.CodeDataLoss, errors.New(msgParseError))
	}
	return connect.NewError(connect.CodeUnknown, errors.New(msgGeneral))
}

// objectValue is the cached Struct of an object resolution (nil for a code default).
func (s *Service) objectValue(r result) (*cachedStruct, error) {
	m, ok := r.res.Value.(map[string]any)
	if !ok {
		return nil, nil
	}
	v, err := s.cache.object(r.gen, r.entry, r.res.Variant, m)
	if err != nil {
		s.log.Error().Str("flag", r.entry.Flag.Key).Str("variant", r.res.Variant).Err(err).Msg("object variant cannot be represented as a protobuf Struct")
		return nil, connect.NewError(connect.CodeUnknown, errors.New(msgGeneral))
	}
	return v, nil
}
