package tracing

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

func TestSemanticConventionValues(t *testing.T) {
	reasons := map[eval.Reason]string{
		eval.ReasonStatic: "static", eval.ReasonTargetingMatch: "targeting_match", eval.ReasonDefault: "default",
		eval.ReasonDisabled: "disabled", eval.ReasonError: "error", "SPLIT": "split",
	}
	got := map[eval.Reason]string{}
	for r := range reasons {
		got[r] = reasonValue(r)
	}
	if diff := cmp.Diff(reasons, got); diff != "" {
		t.Errorf("reasons (-want +got):\n%s", diff)
	}
	codes := map[eval.ErrorCode]string{
		eval.ErrorFlagNotFound: "flag_not_found", eval.ErrorTypeMismatch: "type_mismatch", eval.ErrorParse: "parse_error",
		eval.ErrorInvalidContext: "invalid_context", eval.ErrorGeneral: "general", "PROVIDER_NOT_READY": "provider_not_ready",
	}
	gotCodes := map[eval.ErrorCode]string{}
	for c := range codes {
		gotCodes[c] = ErrorType(c)
	}
	if diff := cmp.Diff(codes, gotCodes); diff != "" {
		t.Errorf("error types (-want +got):\n%s", diff)
	}
}

func TestNewWithoutProviderIsOff(t *testing.T) {
	if New(nil, nil) != nil {
		t.Fatal("tracing without a tracer provider")
	}
}

// TestStartJoinsCallerTrace: the span is a server span of flagd's tracer, child of
// the caller's traceparent; without one it starts a new trace.
func TestStartJoinsCallerTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := New(tp, nil)
	h := http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	_, span := tr.StartHTTP(context.Background(), OFREP, "flagd.ofrep", h)
	span.End()
	_, root := tr.StartHTTP(context.Background(), Sync, "root", http.Header{})
	root.End()
	type view struct{ Scope, Kind, TraceID, Parent string }
	var got []view
	for _, s := range rec.Ended() {
		got = append(got, view{s.InstrumentationScope().Name, s.SpanKind().String(), s.SpanContext().TraceID().String(), s.Parent().SpanID().String()})
	}
	want := []view{
		{"flagd.ofrep", "server", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"},
		{"flagd.sync", "server", got[1].TraceID, trace.SpanID{}.String()},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got[1].TraceID == got[0].TraceID {
		t.Error("a request without traceparent joined another trace")
	}
}
