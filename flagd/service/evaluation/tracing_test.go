package evaluation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v2/evaluationv2grpc"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/server"
)

// The caller's trace context of every traced test request.
const (
	callerTraceID   = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpanID    = "00f067aa0ba902b7"
	callerParent    = "00-" + callerTraceID + "-" + callerSpanID + "-01"
	piiMarker       = "pii-marker-5c1d@example.com"
	headerPIIMarker = "header-marker-93ab"
)

// spanView is what a test compares of a span.
type spanView struct {
	Scope, Name, Kind string
	TraceID, Parent   string
	Attributes        map[string]string
	Events            []eventView
	Status            string
}

type eventView struct {
	Name       string
	Attributes map[string]string
}

func viewOf(s sdktrace.ReadOnlySpan) spanView {
	v := spanView{Scope: s.InstrumentationScope().Name, Name: s.Name(), Kind: s.SpanKind().String(),
		TraceID: s.SpanContext().TraceID().String(), Parent: s.Parent().SpanID().String(),
		Attributes: map[string]string{}, Status: s.Status().Code.String() + ":" + s.Status().Description}
	for _, kv := range s.Attributes() {
		v.Attributes[string(kv.Key)] = kv.Value.String()
	}
	for _, e := range s.Events() {
		ev := eventView{Name: e.Name, Attributes: map[string]string{}}
		for _, kv := range e.Attributes {
			ev.Attributes[string(kv.Key)] = kv.Value.String()
		}
		v.Events = append(v.Events, ev)
	}
	return v
}

// tracedService is a service tracing into a span recorder.
func tracedService(t *testing.T, fast bool) (*Service, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return newService(withDefaults(t, Options{Tracing: tracing.New(tp, nil)}), fast), rec
}

type tracedCall struct {
	name     string
	path     string
	key      string
	selector string
}

var tracedCalls = []tracedCall{
	{"v1 targeting match", "/flagd.evaluation.v1.Service/ResolveBoolean", "targeted", ""},
	{"v2 static string", "/flagd.evaluation.v2.Service/ResolveString", "string-flag", ""},
	{"schema.v1 int", "/schema.v1.Service/ResolveInt", "int-flag", ""},
	{"v2 float", "/flagd.evaluation.v2.Service/ResolveFloat", "float-flag", ""},
	{"v1 object", "/flagd.evaluation.v1.Service/ResolveObject", "object-flag", ""},
	{"v2 disabled", "/flagd.evaluation.v2.Service/ResolveBoolean", "disabled", ""},
	{"not found", "/flagd.evaluation.v1.Service/ResolveBoolean", "missing", ""},
	{"v1 code default is FLAG_NOT_FOUND", "/flagd.evaluation.v1.Service/ResolveBoolean", "no-default", ""},
	{"type mismatch", "/flagd.evaluation.v2.Service/ResolveString", "bool-static", ""},
	{"parse error", "/flagd.evaluation.v2.Service/ResolveBoolean", "parse-error", ""},
	{"invalid selector", "/flagd.evaluation.v2.Service/ResolveBoolean", "plain", "nope=1"},
	{"selector", "/flagd.evaluation.v2.Service/ResolveBoolean", "b-only", "flagSetId=set-b"},
}

// serveTraced sends every traced call over Connect JSON (with an evaluation context
// and a header holding markers) and returns the span of each.
func serveTraced(t *testing.T, svc *Service, rec *tracetest.SpanRecorder) []spanView {
	t.Helper()
	h := svc.Handler()
	var out []spanView
	for _, c := range tracedCalls {
		body := `{"flagKey":"` + c.key + `","context":{"email":"a@b.c","targetingKey":"` + piiMarker + `","nested":{"k":"` + piiMarker + `"}}}`
		req := httptest.NewRequest(http.MethodPost, c.path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Traceparent", callerParent)
		req.Header.Set("Baggage", "user.email="+piiMarker)
		req.Header.Set("X-User", headerPIIMarker) // mapped into the context by -H
		req.Header.Set("Authorization", "Bearer "+headerPIIMarker)
		if c.selector != "" {
			req.Header.Set(SelectorHeader, c.selector)
		}
		before := len(rec.Ended())
		h.ServeHTTP(httptest.NewRecorder(), req)
		ended := rec.Ended()
		if len(ended) != before+1 {
			t.Fatalf("%s: %d spans ended, want 1", c.name, len(ended)-before)
		}
		out = append(out, viewOf(ended[len(ended)-1]))
	}
	return out
}

// TestSpansFastPathEqualsConnectGo: the fast path and connect-go produce the same
// span for the same request, and the spans are flagd's.
func TestSpansFastPathEqualsConnectGo(t *testing.T) {
	fastSvc, fastRec := tracedService(t, true)
	var stepped []string
	fastSvc.observe = func(why string) {
		if why != "" {
			stepped = append(stepped, why)
		}
	}
	slowSvc, slowRec := tracedService(t, false)
	fast := serveTraced(t, fastSvc, fastRec)
	slow := serveTraced(t, slowSvc, slowRec)
	if len(stepped) > 0 {
		t.Fatalf("the fast path stepped aside: %v", stepped)
	}
	if diff := cmp.Diff(slow, fast); diff != "" {
		t.Errorf("fast path spans differ from connect-go's (-connect-go +fast):\n%s", diff)
	}

	ok := func(scope, name, key, variant, reason string) spanView {
		attrs := map[string]string{"feature_flag.key": key, "feature_flag.provider.name": "flagd", "feature_flag.result.reason": reason}
		if variant != "" {
			attrs["feature_flag.result.variant"] = variant
		}
		return spanView{Scope: scope, Name: name, Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
			Attributes: attrs, Events: []eventView{{Name: "feature_flag.evaluation", Attributes: attrs}}, Status: "Unset:"}
	}
	failed := func(scope, name, key, errType, code string) spanView {
		attrs := map[string]string{"feature_flag.key": key, "feature_flag.provider.name": "flagd",
			"feature_flag.result.reason": "error", "error.type": errType}
		return spanView{Scope: scope, Name: name, Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
			Attributes: attrs, Events: []eventView{{Name: "feature_flag.evaluation", Attributes: attrs}},
			Status: "Error:flag evaluation failed: " + code}
	}
	want := []spanView{
		ok("flagd.evaluation.v1", "resolveBoolean", "targeted", "on", "targeting_match"),
		ok("flagd.evaluation.v2", "resolveString", "string-flag", "red", "static"),
		ok("flagEvaluationService", "resolveInt", "int-flag", "ten", "default"),
		ok("flagd.evaluation.v2", "resolveFloat", "float-flag", "half", "static"),
		ok("flagd.evaluation.v1", "resolveObject", "object-flag", "obj", "static"),
		ok("flagd.evaluation.v2", "resolveBoolean", "disabled", "", "disabled"),
		failed("flagd.evaluation.v1", "resolveBoolean", "missing", "flag_not_found", "FLAG_NOT_FOUND"),
		failed("flagd.evaluation.v1", "resolveBoolean", "no-default", "flag_not_found", "FLAG_NOT_FOUND"),
		failed("flagd.evaluation.v2", "resolveString", "bool-static", "type_mismatch", "TYPE_MISMATCH"),
		failed("flagd.evaluation.v2", "resolveBoolean", "parse-error", "parse_error", "PARSE_ERROR"),
		{Scope: "flagd.evaluation.v2", Name: "resolveBoolean", Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
			Attributes: map[string]string{"error.type": "general"}, Status: "Error:invalid selector"},
		ok("flagd.evaluation.v2", "resolveBoolean", "b-only", "on", "static"),
	}
	if diff := cmp.Diff(want, fast); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	assertNoMarkers(t, fast)
}

// assertNoMarkers fails if a marker from the evaluation context or the headers is
// anywhere in the spans.
func assertNoMarkers(t *testing.T, spans []spanView) {
	t.Helper()
	for _, s := range spans {
		all := []map[string]string{s.Attributes}
		for _, e := range s.Events {
			all = append(all, e.Attributes)
		}
		for _, attrs := range all {
			for k, v := range attrs {
				for _, m := range []string{piiMarker, headerPIIMarker, "a@b.c"} {
					if strings.Contains(k, m) || strings.Contains(v, m) {
						t.Errorf("span %s/%s carries %q in %s=%s", s.Scope, s.Name, m, k, v)
					}
				}
			}
		}
	}
}

// TestResolveAllSpan: one span per ResolveAll with the number of flags answered.
func TestResolveAllSpan(t *testing.T) {
	svc, rec := tracedService(t, true)
	var answered []string
	for _, path := range []string{"/flagd.evaluation.v1.Service/ResolveAll", "/schema.v1.Service/ResolveAll"} {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"context":{"email":"`+piiMarker+`"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Traceparent", callerParent)
		w := httptest.NewRecorder()
		svc.Handler().ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		var body struct{ Flags map[string]any }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		answered = append(answered, strconv.Itoa(len(body.Flags)))
	}
	if answered[0] == answered[1] {
		t.Fatalf("v1 and schema.v1 answered %s flags each: the test cannot tell the counts apart", answered[0])
	}
	var got []spanView
	for _, s := range rec.Ended() {
		got = append(got, viewOf(s))
	}
	want := []spanView{
		{Scope: "flagd.evaluation.v1", Name: "resolveAll", Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
			Attributes: map[string]string{"feature_flag.count": answered[0]}, Status: "Unset:"},
		{Scope: "flagEvaluationService", Name: "resolveAll", Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
			Attributes: map[string]string{"feature_flag.count": answered[1]}, Status: "Unset:"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestSpansOverGRPC: a grpc-go client's traceparent metadata is the parent, and the
// span is the one Connect JSON gets.
func TestSpansOverGRPC(t *testing.T) {
	svc, rec := tracedService(t, true)
	srv := serveService(t, svc, server.ListenConfig{})
	conn := grpcConn(t, srv.ln.Addr().String(), insecure.NewCredentials())
	ctx := metadata.AppendToOutgoingContext(testContext(t), "traceparent", callerParent, "x-user", headerPIIMarker)
	reqCtx, err := structpb.NewStruct(map[string]any{"email": "a@b.c", "targetingKey": piiMarker})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := evaluationv2grpc.NewServiceClient(conn).ResolveBoolean(ctx, &evalv2.ResolveBooleanRequest{FlagKey: "targeted", Context: reqCtx}); err != nil {
		t.Fatal(err)
	}
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans, want 1", len(ended))
	}
	attrs := map[string]string{"feature_flag.key": "targeted", "feature_flag.provider.name": "flagd",
		"feature_flag.result.reason": "targeting_match", "feature_flag.result.variant": "on"}
	want := spanView{Scope: "flagd.evaluation.v2", Name: "resolveBoolean", Kind: "server", TraceID: callerTraceID, Parent: callerSpanID,
		Attributes: attrs, Events: []eventView{{Name: "feature_flag.evaluation", Attributes: attrs}}, Status: "Unset:"}
	got := viewOf(ended[0])
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	assertNoMarkers(t, []spanView{got})
}

// TestNoTracingNoSpans: without Tracing no span is started.
func TestNoTracingNoSpans(t *testing.T) {
	svc := newService(withDefaults(t, Options{}), true)
	if span := svc.startSpan(context.Background(), http.Header{"Traceparent": {callerParent}}, "resolveBoolean", apiV1); span != nil {
		t.Fatalf("span %v without tracing", span)
	}
}
