package ofrep

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
)

// spanName is the name of every OFREP span: flagd's otelhttp operation name.
const spanName = "flagd.ofrep"

// serveTraced serves a request inside a server span of the flagd.ofrep tracer,
// child of the caller's traceparent, with the HTTP attributes otelhttp records
// (method, route template, scheme, status code) and, for a single evaluation, the
// feature-flag attributes; a bulk evaluation records feature_flag.count.
func (s *Service) serveTraced(w http.ResponseWriter, r *http.Request) {
	ctx, span := s.opts.Tracing.StartHTTP(r.Context(), tracing.OFREP, spanName, r.Header)
	defer span.End()
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	route := s.serve(sw, r.WithContext(ctx))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", metrics.MethodLabel(r.Method)),
		attribute.String("url.scheme", scheme),
		attribute.Int("http.response.status_code", sw.status),
	}
	if route != "" {
		attrs = append(attrs, attribute.String("http.route", route))
	}
	span.SetAttributes(attrs...)
	if sw.status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, http.StatusText(sw.status))
	}
}

// failed marks the request's span as failed before any evaluation.
func (s *Service) failed(r *http.Request, code eval.ErrorCode, description string) {
	if s.opts.Tracing != nil {
		tracing.Failed(trace.SpanFromContext(r.Context()), tracing.ErrorType(code), description)
	}
}

// statusWriter captures the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
