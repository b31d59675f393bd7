// Package tracing creates the server spans of flagd's listeners with flagd's
// tracer and span names, joined to the caller's trace (W3C traceparent), and
// records evaluations on them with the OpenTelemetry feature-flag semantic
// conventions: feature_flag.key, feature_flag.provider.name, feature_flag.result.variant,
// feature_flag.result.reason and error.type on the span (as flagd), plus a
// feature_flag.evaluation event carrying the same attributes.
//
// Only flag keys, variants, reasons, error codes and counts are recorded: never a
// value of the evaluation context, of a request header or of the request body
// (they may hold personal data), and never a flag's value.
//
// A nil *Tracing traces nothing; callers check for nil before building anything,
// so tracing that is off costs one comparison.
package tracing

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// Tracer (instrumentation scope) names, as flagd's.
const (
	ScopeEvaluationV1 = "flagd.evaluation.v1"
	ScopeEvaluationV2 = "flagd.evaluation.v2"
	ScopeSchemaV1     = "flagEvaluationService"
	ScopeOFREP        = "flagd.ofrep"
	ScopeSync         = "flagd.sync"
)

// ProviderName is feature_flag.provider.name.
const ProviderName = "flagd"

// EvaluationEvent is the name of the semantic-convention evaluation event.
const EvaluationEvent = "feature_flag.evaluation"

// Attribute keys.
const (
	KeyFlagKey      = attribute.Key("feature_flag.key")
	KeyProviderName = attribute.Key("feature_flag.provider.name")
	KeyVariant      = attribute.Key("feature_flag.result.variant")
	KeyReason       = attribute.Key("feature_flag.result.reason")
	KeyErrorType    = attribute.Key("error.type")
	KeyFlagCount    = attribute.Key("feature_flag.count")
)

// Scope selects one of flagd's tracers.
type Scope uint8

// The tracers.
const (
	EvaluationV1 Scope = iota
	EvaluationV2
	SchemaV1
	OFREP
	Sync
	numScopes
)

var scopeNames = [numScopes]string{ScopeEvaluationV1, ScopeEvaluationV2, ScopeSchemaV1, ScopeOFREP, ScopeSync}

// Tracing holds flagd's tracers and the propagator that reads the caller's
// trace context from requests.
type Tracing struct {
	tracers [numScopes]trace.Tracer
	prop    propagation.TextMapPropagator
	server  []trace.SpanStartOption
}

// New returns the tracing of the listeners, or nil (no tracing) when tp is nil. A
// nil prop reads W3C TraceContext and Baggage.
func New(tp trace.TracerProvider, prop propagation.TextMapPropagator) *Tracing {
	if tp == nil {
		return nil
	}
	if prop == nil {
		prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	t := &Tracing{prop: prop, server: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}}
	for i, name := range scopeNames {
		t.tracers[i] = tp.Tracer(name)
	}
	return t
}

// Start starts a server span of the given tracer, the child of the trace context
// the carrier (request headers or gRPC metadata) carries, if any.
func (t *Tracing) Start(ctx context.Context, s Scope, name string, carrier propagation.TextMapCarrier) (context.Context, trace.Span) {
	ctx = t.prop.Extract(ctx, carrier)
	return t.tracers[s].Start(ctx, name, t.server...)
}

// StartHTTP is Start with the request's headers as carrier.
func (t *Tracing) StartHTTP(ctx context.Context, s Scope, name string, h http.Header) (context.Context, trace.Span) {
	return t.Start(ctx, s, name, propagation.HeaderCarrier(h))
}

// Evaluation records one flag evaluation on span: the feature-flag attributes
// and the feature_flag.evaluation event; a failed evaluation also sets error.type
// and the span's status to Error (as flagd).
func Evaluation(span trace.Span, key string, res eval.Resolution) {
	kvs := make([]attribute.KeyValue, 0, 5)
	kvs = append(kvs, KeyFlagKey.String(key), KeyProviderName.String(ProviderName))
	if res.Failed() {
		kvs = append(kvs, KeyReason.String(reasonValue(eval.ReasonError)), KeyErrorType.String(ErrorType(res.ErrorCode)))
		span.SetStatus(codes.Error, "flag evaluation failed: "+string(res.ErrorCode))
	} else {
		if res.Variant != "" {
			kvs = append(kvs, KeyVariant.String(res.Variant))
		}
		kvs = append(kvs, KeyReason.String(reasonValue(res.Reason)))
	}
	span.SetAttributes(kvs...)
	span.AddEvent(EvaluationEvent, trace.WithAttributes(kvs...))
}

// Failed marks span as failed before any evaluation (a bad selector, a request
// that cannot be read): error.type and an Error status with description.
func Failed(span trace.Span, errorType, description string) {
	span.SetAttributes(KeyErrorType.String(errorType))
	span.SetStatus(codes.Error, description)
}

// reasonValue is feature_flag.result.reason: the semantic conventions' lower-case
// values (static, targeting_match, default, disabled, error, ...).
func reasonValue(r eval.Reason) string {
	switch r {
	case eval.ReasonStatic:
		return "static"
	case eval.ReasonTargetingMatch:
		return "targeting_match"
	case eval.ReasonDefault:
		return "default"
	case eval.ReasonDisabled:
		return "disabled"
	case eval.ReasonError:
		return "error"
	}
	return strings.ToLower(string(r))
}

// ErrorType is error.type of an evaluation error: the semantic conventions'
// lower-case OpenFeature error codes (flag_not_found, type_mismatch, parse_error,
// invalid_context, general).
func ErrorType(c eval.ErrorCode) string {
	switch c {
	case eval.ErrorFlagNotFound:
		return "flag_not_found"
	case eval.ErrorTypeMismatch:
		return "type_mismatch"
	case eval.ErrorParse:
		return "parse_error"
	case eval.ErrorInvalidContext:
		return "invalid_context"
	case eval.ErrorGeneral:
		return "general"
	}
	return strings.ToLower(string(c))
}
