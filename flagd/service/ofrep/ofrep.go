// Package ofrep serves the OpenFeature Remote Evaluation Protocol on flagd's OFREP
// port (8016): single evaluation (POST /ofrep/v1/evaluate/flags/{key}) and bulk
// evaluation (POST /ofrep/v1/evaluate/flags), with flagd's status codes and JSON
// bodies. Bulk answers carry a strong ETag over the body and honour If-None-Match
// with 304 Not Modified. Responses are written by a pooled, reflection-free encoder
// that produces exactly what encoding/json would for flagd's response structs.
package ofrep

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// Route templates, also used as the http_route metric label.
const (
	SingleRoute = "/ofrep/v1/evaluate/flags/{key}"
	BulkRoute   = "/ofrep/v1/evaluate/flags"
)

const (
	flagsPrefix    = BulkRoute + "/"
	selectorHeader = "Flagd-Selector"
	metricsService = "flagd"
)

// Options configures the OFREP listener.
type Options struct {
	Store          *store.Store      // required
	Enricher       *service.Enricher // may be nil; -X and -H both apply to OFREP
	Metrics        *metrics.Metrics  // may be nil
	Tracing        *tracing.Tracing  // may be nil: no spans
	Log            zerolog.Logger
	CORSOrigins    []string       // server.CORS; empty: no CORS headers, "*" all
	Auth           *server.Tokens // when set, a bearer token is required (--auth-token-file)
	MaxRequestBody int64          // 0 unlimited; over the limit → 413 {"errorDetails":"request body too large"}
}

// Service is the OFREP HTTP handler.
type Service struct {
	opts     Options
	handler  http.Handler // ServeHTTP behind the CORS policy
	single   http.Handler
	bulk     http.Handler
	encoders sync.Pool
	bodies   sync.Pool // *requestBody
	plans    plans     // bulk plans of the newest snapshot (bulk.go)
	// jsonCT and cacheControl are shared header values (net/http never modifies them).
	jsonCT       []string
	cacheControl []string
}

// New builds the OFREP service.
func New(opts Options) *Service {
	s := &Service{
		opts:         opts,
		jsonCT:       []string{"application/json"},
		cacheControl: []string{"no-cache, private"},
	}
	s.encoders.New = func() any { return &encoder{buf: make([]byte, 0, 1024)} }
	s.bodies.New = func() any { return &requestBody{in: make([]byte, 0, 512)} }
	s.single = opts.Metrics.Middleware(metricsService, func(*http.Request) string { return SingleRoute }, http.HandlerFunc(s.serveSingle))
	s.bulk = opts.Metrics.Middleware(metricsService, func(*http.Request) string { return BulkRoute }, http.HandlerFunc(s.serveBulk))
	s.handler = server.NewCORS(opts.CORSOrigins).Handler(corsRules, opts.Auth.Handler("ofrep", s))
	return s
}

// corsRules: browsers may POST and read the ETag (for If-None-Match); preflight
// answers may be cached for 10 minutes.
var corsRules = server.CORSRules{Methods: []string{http.MethodPost}, ExposeHeaders: "ETag", MaxAge: 600}

// Handler returns the HTTP handler serving both OFREP routes, CORS included.
func (s *Service) Handler() http.Handler { return s.handler }

// ServeHTTP routes a request (404 for other paths, 405 for methods other than
// POST); CORS is answered in front of it by Handler.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.opts.Tracing != nil {
		s.serveTraced(w, r)
		return
	}
	s.serve(w, r)
}

// serve routes a request and returns the route template it matched ("" for none).
func (s *Service) serve(w http.ResponseWriter, r *http.Request) string {
	var h http.Handler
	var route string
	switch {
	case r.URL.Path == BulkRoute || r.URL.Path == flagsPrefix:
		h, route = s.bulk, BulkRoute
	case strings.HasPrefix(r.URL.Path, flagsPrefix):
		if _, ok := flagKey(r); !ok {
			http.NotFound(w, r)
			return ""
		}
		h, route = s.single, SingleRoute
	default:
		http.NotFound(w, r)
		return ""
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return route
	}
	h.ServeHTTP(w, r)
	return route
}

// flagKey extracts {key}: one non-empty path segment. The escaped path is used, so a
// key containing "/" can be requested as %2F.
func flagKey(r *http.Request) (string, bool) {
	if r.URL.RawPath == "" {
		key := r.URL.Path[len(flagsPrefix):]
		return key, key != "" && !strings.Contains(key, "/")
	}
	p := r.URL.EscapedPath()
	if !strings.HasPrefix(p, flagsPrefix) {
		return "", false
	}
	raw := p[len(flagsPrefix):]
	if raw == "" || strings.Contains(raw, "/") {
		return "", false
	}
	key, err := url.PathUnescape(raw)
	return key, err == nil && key != ""
}

type request struct {
	Context map[string]any `json:"context"`
}

// decode reads the request body. It writes the error response itself (413, or 400
// INVALID_CONTEXT) and reports false when the request must stop there. The body is
// read whole (over MaxRequestBody: 413) and decoded as encoding/json decodes its
// first value into request: by parseRequest where it can, else by encoding/json.
func (s *Service) decode(w http.ResponseWriter, r *http.Request, key string, single bool) (map[string]any, bool) {
	var body io.Reader = r.Body
	if s.opts.MaxRequestBody > 0 {
		body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBody)
	}
	rb := s.bodies.Get().(*requestBody)
	defer s.putBody(rb)
	buf, err := jsonwire.AppendBody(rb.in[:0], body, r.ContentLength, maxPooledBody)
	rb.in = buf
	if err == nil {
		if ctx, ok := parseRequest(&rb.parser, buf); ok {
			return ctx, true
		}
		var req request
		if err = json.NewDecoder(bytes.NewReader(buf)).Decode(&req); err == nil || errors.Is(err, io.EOF) {
			return req.Context, true
		}
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field == "context" {
		// flagd ignores a context that is not an object and evaluates with {}.
		s.opts.Log.Debug().Str("flag", key).Str("type", typeErr.Value).Msg("ofrep: request context is not an object; evaluating with an empty context")
		return nil, true
	}
	enc := s.getEncoder()
	defer s.putEncoder(enc)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		s.failed(r, eval.ErrorGeneral, "request body too large")
		enc.buf = append(enc.buf, `{"errorDetails":`...)
		enc.buf = jsonwire.AppendString(enc.buf, detailsTooLarge)
		enc.buf = append(enc.buf, '}')
		s.write(w, http.StatusRequestEntityTooLarge, enc.buf)
		return nil, false
	}
	s.failed(r, eval.ErrorInvalidContext, "malformed request body")
	s.opts.Log.Debug().Str("flag", key).Err(err).Msg("ofrep: malformed request body")
	enc.requestError(key, single, eval.ErrorInvalidContext, detailsInvalidContext)
	s.write(w, http.StatusBadRequest, enc.buf)
	return nil, false
}

// selector parses the Flagd-Selector header, answering 400 GENERAL when invalid.
func (s *Service) selector(w http.ResponseWriter, r *http.Request, key string, single bool) (store.Selector, bool) {
	sel, err := store.ParseSelector(r.Header.Get(selectorHeader))
	if err == nil {
		return sel, true
	}
	s.failed(r, eval.ErrorGeneral, "invalid selector")
	enc := s.getEncoder()
	defer s.putEncoder(enc)
	enc.requestError(key, single, eval.ErrorGeneral, "invalid selector: "+err.Error())
	s.write(w, http.StatusBadRequest, enc.buf)
	return sel, false
}

func (s *Service) serveSingle(w http.ResponseWriter, r *http.Request) {
	key, _ := flagKey(r)
	ctx, ok := s.decode(w, r, key, true)
	if !ok {
		return
	}
	sel, ok := s.selector(w, r, key, true)
	if !ok {
		return
	}
	ctx = s.opts.Enricher.Merge(ctx, r.Header)
	var res eval.Resolution
	entry, found := s.opts.Store.Current().Get(key, sel)
	if found {
		res = entry.Flag.EvaluateAs(eval.TypeAny, ctx, nil)
	} else {
		res = eval.NotFound(key)
	}
	s.opts.Metrics.Evaluation(key, found, res)
	if s.opts.Tracing != nil {
		tracing.Evaluation(trace.SpanFromContext(r.Context()), key, res)
	}
	if res.Failed() {
		s.opts.Log.Debug().Str("flag", key).Str("selector", sel.String()).Str("code", string(res.ErrorCode)).Msg(res.ErrorMessage)
	}
	enc := s.getEncoder()
	status := enc.evaluation(key, res, reflectionOf(sel))
	s.write(w, status, enc.buf)
	s.putEncoder(enc)
}

func (s *Service) serveBulk(w http.ResponseWriter, r *http.Request) {
	ctx, ok := s.decode(w, r, "", false)
	if !ok {
		return
	}
	sel, ok := s.selector(w, r, "", false)
	if !ok {
		return
	}
	ctx = s.opts.Enricher.Merge(ctx, r.Header)
	snap := s.opts.Store.Current()
	plan := s.plan(snap, sel)
	if s.opts.Tracing != nil {
		trace.SpanFromContext(r.Context()).SetAttributes(tracing.KeyFlagCount.Int(len(plan.items)))
	}
	h := w.Header()
	inm := r.Header.Values("If-None-Match")
	var etag string
	if !plan.clock {
		// the answer is a function of the selection and the context: a client that
		// has it is answered before anything is evaluated
		etag = contextETag(plan, ctx)
		if len(inm) > 0 && noneMatch(inm, etag) {
			s.notModified(h, w, etag)
			return
		}
	}
	enc := s.getEncoder()
	defer s.putEncoder(enc)
	if need := int(plan.sizeEst.Load()) * 9 / 8; cap(enc.buf) < need && need <= maxPooledBuffer {
		enc.buf = make([]byte, 0, need)
	}
	enc.buf = append(enc.buf, `{"flags":[`...)
	s.encodeBulk(enc, plan, ctx, sel)
	enc.buf = append(enc.buf, plan.tail...)
	plan.sizeEst.Store(int64(len(enc.buf)))
	if plan.clock {
		etag = etagOf(enc.buf)
		if len(inm) > 0 && noneMatch(inm, etag) {
			s.notModified(h, w, etag)
			return
		}
	}
	h["Etag"] = []string{etag}
	h["Cache-Control"] = s.cacheControl
	s.write(w, http.StatusOK, enc.buf)
}

// encodeBulk appends the answer of every flag of plan for ctx to enc.buf and counts
// the evaluations (in a shard of the plan's tally, held until the flags are encoded,
// not while the answer is written).
func (s *Service) encodeBulk(enc *encoder, plan *bulkPlan, ctx map[string]any, sel store.Selector) {
	enc.decisions.Reset(plan.groups)
	sh := plan.tally.Acquire()
	defer plan.tally.Release(sh)
	for i := range plan.items {
		it := &plan.items[i]
		if i > 0 {
			enc.buf = append(enc.buf, ',')
		}
		if it.fixed != nil {
			enc.buf = append(enc.buf, it.fixed...)
			if sh == nil {
				it.outcomes.Count(s.opts.Metrics, it.entry.Flag.Key, it.res)
			}
			continue
		}
		dec := enc.decisions.Decide(it.entry.Flag, it.group, ctx, nil)
		s.appendTargeted(enc, it, dec, plan.refl, sel, sh)
	}
	if sh != nil {
		sh.Answer() // every fixed answer above
	}
}

// notModified answers 304 with the tag. No flag was evaluated for it (when the tag
// comes from the context), so no evaluation is counted: the HTTP metrics count the
// request with its 304.
func (s *Service) notModified(h http.Header, w http.ResponseWriter, etag string) {
	h["Etag"] = []string{etag}
	h["Cache-Control"] = s.cacheControl
	w.WriteHeader(http.StatusNotModified)
}

// write sends a JSON body with its length.
func (s *Service) write(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = s.jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		s.opts.Log.Debug().Err(err).Msg("ofrep: writing response")
	}
}

// maxPooledBuffer keeps one huge bulk answer from pinning memory in the pool.
const maxPooledBuffer = 1 << 20

// maxPooledBody keeps one huge request body from pinning memory in the pool.
const maxPooledBody = 64 << 10

// requestBody is a pooled request body and its parser.
type requestBody struct {
	in     []byte
	parser jsonwire.Parser
}

// putBody returns rb to the pool, wiped: a body is an evaluation context, which
// may hold personal data, and must not linger in pooled memory. Bodies grown over
// maxPooledBody are dropped, not wiped.
func (s *Service) putBody(rb *requestBody) {
	if scratch := rb.parser.Wipe(len(rb.in)); scratch > maxPooledBody || cap(rb.in) > maxPooledBody {
		return
	}
	clear(rb.in)
	rb.in = rb.in[:0]
	s.bodies.Put(rb)
}

// parseRequest decodes a body of the shape clients send — {"context": {...}}, the
// context null or absent — into what encoding/json decodes into request, nil for
// an empty context. Anything else (another member, a context that is not an
// object, a duplicate key, trailing data, what jsonwire.Parser declines) reports
// false: encoding/json decodes it then, with its own rules (case-insensitive
// names, last duplicate wins, a non-object context ignored).
func parseRequest(p *jsonwire.Parser, body []byte) (map[string]any, bool) {
	p.MaxDepth = protolimit.MaxContextDepth
	p.Reset(body)
	p.WS()
	if !p.Consume('{') {
		return nil, false
	}
	p.WS()
	var ctx map[string]any
	if !p.Consume('}') {
		name, ok := p.StringBytes()
		if !ok || string(name) != "context" {
			return nil, false
		}
		p.WS()
		if !p.Consume(':') {
			return nil, false
		}
		p.WS()
		switch {
		case p.Literal("null"):
		case p.Peek() == '{':
			if ctx, ok = p.Object(1); !ok {
				return nil, false
			}
		default:
			return nil, false
		}
		p.WS()
		if !p.Consume('}') {
			return nil, false
		}
	}
	p.WS()
	return ctx, p.Done()
}

func (s *Service) getEncoder() *encoder { return s.encoders.Get().(*encoder) }

func (s *Service) putEncoder(e *encoder) {
	if cap(e.buf) > maxPooledBuffer {
		return
	}
	e.buf = e.buf[:0]
	e.decisions.Clear()
	s.encoders.Put(e)
}
