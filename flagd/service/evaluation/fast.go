package evaluation

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	"connectrpc.com/connect"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
)

// The fast path serves unary Connect-protocol JSON calls of the typed Resolve*
// methods of the three services without connect-go: a plain POST with
// Content-Type application/json (or application/json; charset=utf-8), an
// uncompressed body within the limit, Connect-Protocol-Version 1 or absent, and a
// positive or absent Connect-Timeout-Ms (checked once, where connect-go checks its
// context: before the method runs). It decodes the body with requestParser, evaluates exactly as
// the connect-go handlers do (same find/evaluate code, metrics, logs and errors)
// and writes the response JSON by hand, splicing in the cached protojson encoding
// of the metadata and object values. Headers and bodies are what connect-go sends:
// the request's Content-Type, Accept-Encoding: gzip, gzip for a body of 1 KiB or
// more when the client accepts it, and errors as {"code","message"} with Connect's
// HTTP status.
//
// Everything else goes to connect-go unchanged: other methods (ResolveAll,
// EventStream), gRPC, gRPC-Web, Connect with binary protobuf, GET requests,
// compressed bodies, other protocol versions, malformed timeouts, bodies over the
// limit or that fail to read, and every body requestParser does not accept (the
// bytes already read are replayed, so connect-go sees the request as sent). A
// response protojson would refuse to write (a NaN in metadata, invalid UTF-8 in a
// variant) is built as a message and marshalled by the connect-go codec, so the
// error is connect-go's too.

// compressMinBytes is the smallest response body that is compressed when the
// client accepts it (WithCompressMinBytes of the connect-go handlers).
const compressMinBytes = 1024

// maxPooledBody keeps one huge request or response from pinning pool memory.
const maxPooledBody = 64 << 10

// fastProcedure is a typed method the fast path serves.
type fastProcedure struct {
	api api
	typ eval.Type
}

func fastProcedures() map[string]fastProcedure {
	m := map[string]fastProcedure{}
	for _, a := range []struct {
		api                               api
		boolean, str, integer, float, obj string
	}{
		{apiV1, evaluationv1connect.ServiceResolveBooleanProcedure, evaluationv1connect.ServiceResolveStringProcedure,
			evaluationv1connect.ServiceResolveIntProcedure, evaluationv1connect.ServiceResolveFloatProcedure, evaluationv1connect.ServiceResolveObjectProcedure},
		{apiV2, evaluationv2connect.ServiceResolveBooleanProcedure, evaluationv2connect.ServiceResolveStringProcedure,
			evaluationv2connect.ServiceResolveIntProcedure, evaluationv2connect.ServiceResolveFloatProcedure, evaluationv2connect.ServiceResolveObjectProcedure},
		{apiSchemaV1, schemav1connect.ServiceResolveBooleanProcedure, schemav1connect.ServiceResolveStringProcedure,
			schemav1connect.ServiceResolveIntProcedure, schemav1connect.ServiceResolveFloatProcedure, schemav1connect.ServiceResolveObjectProcedure},
	} {
		m[a.boolean] = fastProcedure{a.api, eval.TypeBoolean}
		m[a.str] = fastProcedure{a.api, eval.TypeString}
		m[a.integer] = fastProcedure{a.api, eval.TypeInteger}
		m[a.float] = fastProcedure{a.api, eval.TypeFloat}
		m[a.obj] = fastProcedure{a.api, eval.TypeObject}
	}
	return m
}

// fastBuffers are the per-request buffers of the fast path, pooled per Service.
type fastBuffers struct {
	in     []byte // request body
	out    []byte // response body
	zip    []byte // compressed response body
	parser requestParser
}

func (s *Service) getFastBuffers() *fastBuffers { return s.fastBufs.Get().(*fastBuffers) }

// putFastBuffers returns fb to the pool, wiped: truncating alone would leave the
// request's body (its evaluation context), its answer and its unescaped strings in
// the arrays until the next request overwrites them. Only the bytes this request
// wrote are cleared (the rest was cleared when it was last returned): its body,
// its response, its compressed response and at most len(body) bytes of scratch (an
// unescaped string is never longer than its escaped form in the body). Buffers
// grown over maxPooledBody are dropped, not wiped.
func (s *Service) putFastBuffers(fb *fastBuffers) {
	scratch := fb.parser.Wipe(len(fb.in))
	if cap(fb.in) > maxPooledBody || cap(fb.out) > maxPooledBody || cap(fb.zip) > maxPooledBody || scratch > maxPooledBody {
		return
	}
	clear(fb.in)
	clear(fb.out)
	clear(fb.zip)
	fb.in, fb.out, fb.zip = fb.in[:0], fb.out[:0], fb.zip[:0]
	s.fastBufs.Put(fb)
}

// serveFast serves a request for one of the fast procedures, or hands it to next
// (the connect-go handlers).
func (s *Service) serveFast(w http.ResponseWriter, r *http.Request, p fastProcedure, next http.Handler) {
	contentType, timeout, why := s.fastEligible(r)
	if why != "" {
		s.stepAside(w, r, next, why)
		return
	}
	var start time.Time
	if timeout > 0 {
		start = time.Now()
	}
	fb := s.getFastBuffers()
	defer s.putFastBuffers(fb)
	body, err := jsonwire.AppendBody(fb.in[:0], r.Body, r.ContentLength, maxPooledBody)
	fb.in = body
	if err != nil {
		// connect-go reads the same bytes and then the same error (a body over the
		// limit, a broken connection) and answers as it does
		r.Body = replayBody{Reader: io.MultiReader(bytes.NewReader(body), r.Body), Closer: r.Body}
		s.stepAside(w, r, next, "reading the body failed")
		return
	}
	key, ctx, ok := fb.parser.parse(body)
	if !ok {
		r.Body = replayBody{Reader: bytes.NewReader(body), Closer: r.Body}
		s.stepAside(w, r, next, "body not decoded by the fast path")
		return
	}
	if s.observe != nil {
		s.observe("")
	}
	// connect-go checks the request's context before it calls the method
	if err := r.Context().Err(); err != nil {
		s.writeFastError(w, contextError(err), fb)
		return
	}
	if timeout > 0 && time.Since(start) >= timeout {
		s.writeFastError(w, contextError(context.DeadlineExceeded), fb)
		return
	}
	out, err := s.fastAnswer(r, p, key, ctx, fb)
	if err != nil {
		s.writeFastError(w, err, fb)
		return
	}
	s.writeFastResult(w, r, contentType, out, fb)
}

// fastEligible checks the request line and headers; it returns the response
// Content-Type (the request's, as connect-go echoes it) and the Connect timeout (0:
// none), or why the request goes to connect-go.
func (s *Service) fastEligible(r *http.Request) (contentType []string, timeout time.Duration, why string) {
	if r.Method != http.MethodPost {
		return nil, 0, "method " + r.Method
	}
	h := r.Header
	switch first(h, "Content-Type") {
	case "application/json":
		contentType = s.hdrJSON
	case "application/json; charset=utf-8":
		contentType = s.hdrJSONUTF8
	default:
		return nil, 0, "content type"
	}
	if v := first(h, "Content-Encoding"); v != "" && v != "identity" {
		return nil, 0, "compressed body"
	}
	if len(h["Connect-Content-Encoding"]) > 0 {
		return nil, 0, "Connect-Content-Encoding"
	}
	if v := first(h, "Connect-Protocol-Version"); v != "" && v != "1" {
		return nil, 0, "Connect-Protocol-Version"
	}
	if v := first(h, "Connect-Timeout-Ms"); v != "" {
		// connect-go refuses more than 10 digits and what ParseInt refuses, and a
		// timeout of 0 or less has expired before the method runs
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || len(v) > 10 || ms <= 0 {
			return nil, 0, "Connect-Timeout-Ms"
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	if s.opts.MaxRequestBody > 0 && r.ContentLength > s.opts.MaxRequestBody {
		return nil, 0, "body over the limit"
	}
	return contentType, timeout, ""
}

// contextError is connect-go's error for a done request context.
func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// first is the first value of a header, as connect-go reads it (key canonical).
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (s *Service) stepAside(w http.ResponseWriter, r *http.Request, next http.Handler, why string) {
	if s.observe != nil {
		s.observe(why)
	}
	next.ServeHTTP(w, r)
}

// replayBody is a request body whose first bytes were already read by the fast path.
type replayBody struct {
	io.Reader
	io.Closer
}

// fastAnswer evaluates and encodes the response body. The error is a connect error
// to answer with.
func (s *Service) fastAnswer(r *http.Request, p fastProcedure, key string, ctx map[string]any, fb *fastBuffers) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { //nolint:errorlint // net/http compares with ==
				panic(v)
			}
			out, err = nil, s.recovered(r.URL.Path, v)
		}
	}()
	if s.mapsHost {
		r.Header["Host"] = []string{r.Host} // connect-go sets it before the handler runs
	}
	// the span, the lookup and the evaluation are resolve's (the connect-go path)
	m := httpMeta(r.Header)
	span := s.startSpan(r.Context(), m, resolveSpanName(p.typ), p.api)
	if span != nil {
		defer span.End()
	}
	f, err := s.find(m.selector, key, span)
	if err != nil {
		return nil, err
	}
	res, err := s.evaluate(f, key, s.evalContext(ctx, r.Header, p.api), p.typ, p.api, span)
	if err != nil {
		return nil, err
	}
	out, exact, err := s.appendResponse(fb.out[:0], p, res)
	fb.out = out
	if err != nil {
		return nil, err
	}
	if exact {
		return out, nil
	}
	// protojson refuses something in the response: build the message and let the
	// codec say what, as connect-go would
	msg, err := s.responseMessage(p.api, p.typ, res)
	if err != nil {
		return nil, err
	}
	data, err := s.codec.Marshal(msg)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, fmt.Errorf("marshal message: %w", err))
	}
	return data, nil
}

// recovered logs a panic of an evaluation handler and returns the error its client
// gets (connect.WithRecover's handler).
func (s *Service) recovered(procedure string, p any) error {
	s.log.Error().Str("procedure", procedure).Interface("panic", p).Msg("evaluation handler panicked")
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// appendResponse writes the response of p as protojson would with the codec's
// EmitUnpopulated (field order value, reason, variant, metadata). exact is false
// when protojson would refuse to write it (invalid UTF-8, a NaN or infinite number
// in a Struct): the caller then marshals the message.
func (s *Service) appendResponse(b []byte, p fastProcedure, r result) (out []byte, exact bool, err error) {
	var obj *cachedStruct
	if p.typ == eval.TypeObject {
		if obj, err = s.objectValue(r); err != nil {
			return b, false, err
		}
		if obj != nil && obj.err != nil {
			return b, false, nil //nolint:nilerr // protojson would refuse the value: not exact, and the caller's marshal reports it
		}
	}
	if r.meta.err != nil {
		return b, false, nil //nolint:nilerr // protojson would refuse the metadata: not exact, and the caller's marshal reports it
	}
	hasValue := hasTypedValue(p.typ, r.res.Value, obj)
	ok := true
	b = append(b, '{')
	if hasValue || p.api != apiV2 { // v1 and schema.v1 write the zero value
		b = append(b, `"value":`...)
		switch p.typ {
		case eval.TypeBoolean:
			v, _ := r.res.Value.(bool)
			b = strconv.AppendBool(b, v)
		case eval.TypeString:
			v, _ := r.res.Value.(string)
			b, ok = appendProtoString(b, v)
		case eval.TypeInteger:
			v, _ := r.res.Value.(int64)
			b = append(b, '"') // int64 is a JSON string in protojson
			b = strconv.AppendInt(b, v, 10)
			b = append(b, '"')
		case eval.TypeFloat:
			v, _ := r.res.Value.(float64)
			b = appendProtoDouble(b, v)
		case eval.TypeObject:
			if obj != nil {
				b = append(b, obj.json...)
			} else {
				b = append(b, "{}"...)
			}
		}
		if !ok {
			return b, false, nil
		}
		b = append(b, ',')
	}
	b = append(b, `"reason":`...)
	if b, ok = appendProtoString(b, string(r.res.Reason)); !ok {
		return b, false, nil
	}
	if p.api != apiV2 || (hasValue && r.res.Variant != "") {
		b = append(b, `,"variant":`...)
		if b, ok = appendProtoString(b, r.res.Variant); !ok {
			return b, false, nil
		}
	}
	b = append(b, `,"metadata":`...)
	b = append(b, r.meta.json...)
	return append(b, '}'), true, nil
}

// writeFastResult sends a successful response as connect-go does.
func (s *Service) writeFastResult(w http.ResponseWriter, r *http.Request, contentType []string, body []byte, fb *fastBuffers) {
	h := w.Header()
	h["Content-Type"] = contentType
	h["Accept-Encoding"] = s.hdrGzip
	if len(body) >= compressMinBytes && acceptsGzip(first(r.Header, "Accept-Encoding")) {
		fb.zip = s.compress(fb.zip[:0], body)
		body = fb.zip
		h["Content-Encoding"] = s.hdrGzip
	}
	// no Content-Length: net/http sets it for a body written at once, as for connect-go
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(body); err != nil { //nolint:gosec // G705: a JSON or protobuf body of the content type set above, never HTML
		s.log.Debug().Err(err).Msg("writing an evaluation response")
	}
}

// writeFastError sends an error as connect-go's unary Connect protocol does:
// {"code","message"} with the code's HTTP status, always application/json.
func (s *Service) writeFastError(w http.ResponseWriter, err error, fb *fastBuffers) {
	code, msg := connect.CodeUnknown, err.Error()
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		code, msg = ce.Code(), ce.Message()
	}
	b := append(fb.out[:0], `{"code":`...) //nolint:gocritic // appendAssign: reuses fb.out's array in a local; stored back in fb.out below
	b = jsonwire.AppendString(b, code.String())
	if msg != "" {
		b = append(b, `,"message":`...)
		b = jsonwire.AppendString(b, msg)
	}
	b = append(b, '}')
	fb.out = b
	h := w.Header()
	h["Content-Type"] = s.hdrJSON
	h["Accept-Encoding"] = s.hdrGzip
	w.WriteHeader(connectHTTPStatus(code))
	if _, err := w.Write(b); err != nil { //nolint:gosec // G705: a JSON body (Content-Type application/json), never HTML
		s.log.Debug().Err(err).Msg("writing an evaluation error")
	}
}

// acceptsGzip reads Accept-Encoding as connect-go does: names separated by commas or
// spaces, no weights.
func acceptsGzip(accept string) bool {
	for len(accept) > 0 {
		i := 0
		for i < len(accept) && accept[i] != ',' && accept[i] != ' ' {
			i++
		}
		if accept[:i] == "gzip" {
			return true
		}
		if i == len(accept) {
			break
		}
		accept = accept[i+1:]
	}
	return false
}

// compress gzips src after dst with a pooled writer (connect-go's default level).
func (s *Service) compress(dst, src []byte) []byte {
	buf := bytes.NewBuffer(dst)
	zw := s.gzips.Get().(*gzip.Writer)
	zw.Reset(buf)
	_, _ = zw.Write(src) // writes to memory cannot fail
	_ = zw.Close()
	zw.Reset(nil)
	s.gzips.Put(zw)
	return buf.Bytes()
}

// connectHTTPStatus is the Connect protocol's HTTP status of an error code.
func connectHTTPStatus(code connect.Code) int {
	switch code {
	case connect.CodeCanceled:
		return 499
	case connect.CodeUnknown:
		return 500
	case connect.CodeInvalidArgument:
		return 400
	case connect.CodeDeadlineExceeded:
		return 504
	case connect.CodeNotFound:
		return 404
	case connect.CodeAlreadyExists:
		return 409
	case connect.CodePermissionDenied:
		return 403
	case connect.CodeResourceExhausted:
		return 429
	case connect.CodeFailedPrecondition:
		return 400
	case connect.CodeAborted:
		return 409
	case connect.CodeOutOfRange:
		return 400
	case connect.CodeUnimplemented:
		return 501
	case connect.CodeInternal:
		return 500
	case connect.CodeUnavailable:
		return 503
	case connect.CodeDataLoss:
		return 500
	case connect.CodeUnauthenticated:
		return 401
	}
	return 500
}

// hasTypedValue reports whether a resolution carries a value of the method's type
// (obj: the object value, when the method resolves objects), which both response
// encoders, JSON and protobuf, write only then.
func hasTypedValue(typ eval.Type, v any, obj *cachedStruct) bool {
	switch typ {
	case eval.TypeBoolean:
		_, ok := v.(bool)
		return ok
	case eval.TypeString:
		_, ok := v.(string)
		return ok
	case eval.TypeInteger:
		_, ok := v.(int64)
		return ok
	case eval.TypeFloat:
		_, ok := v.(float64)
		return ok
	case eval.TypeObject:
		return obj != nil
	}
	return false
}
