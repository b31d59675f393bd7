package ofrep_test

import (
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
)

// TestSpans: every OFREP request is a flagd.ofrep server span, child of the
// caller's traceparent, with the HTTP attributes and the evaluation; nothing of
// the evaluation context or of the headers is recorded.
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	srv := startServer(t, serverOpts{tracing: tracing.New(tp, nil),
		enricher: &service.Enricher{Headers: map[string]string{"X-Tier": "tier"}}})
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	const marker = "pii-marker-77@example.com"
	header := map[string]string{"Traceparent": "00-" + traceID + "-" + parent + "-01", "X-Tier": marker, "Authorization": "Bearer " + marker}
	ctx := `{"context":{"email":"` + marker + `","targetingKey":"` + marker + `"}}`

	bulk := do(t, "POST", srv.url+"/ofrep/v1/evaluate/flags", ctx, header)
	calls := []struct{ path, body string }{
		{"/ofrep/v1/evaluate/flags/targeted", ctx},
		{"/ofrep/v1/evaluate/flags/missing", ctx},
		{"/ofrep/v1/evaluate/flags/parse-error", ctx},
		{"/ofrep/v1/evaluate/flags/targeted", `{"context":`},
		{"/ofrep/v1/nothing-here", ctx},
	}
	for _, c := range calls {
		do(t, "POST", srv.url+c.path, c.body, header)
	}
	do(t, "GET", srv.url+"/ofrep/v1/evaluate/flags/targeted", "", header)

	type view struct {
		Scope, Name, Kind, TraceID, Parent, Status string
		Attributes                                 map[string]string
		Events                                     int
	}
	var got []view
	for _, s := range rec.Ended() {
		v := view{Scope: s.InstrumentationScope().Name, Name: s.Name(), Kind: s.SpanKind().String(), TraceID: s.SpanContext().TraceID().String(),
			Parent: s.Parent().SpanID().String(), Status: s.Status().Code.String(), Attributes: map[string]string{}, Events: len(s.Events())}
		for _, kv := range s.Attributes() {
			v.Attributes[string(kv.Key)] = kv.Value.String()
		}
		for _, e := range s.Events() {
			for _, kv := range e.Attributes {
				if strings.Contains(kv.Value.String(), marker) {
					t.Errorf("event %s carries the marker: %s", e.Name, kv.Key)
				}
			}
		}
		for k, val := range v.Attributes {
			if strings.Contains(val, marker) {
				t.Errorf("span %s carries the marker in %s", v.Name, k)
			}
		}
		got = append(got, v)
	}
	httpAttrs := func(method, route string, status int, more map[string]string) map[string]string {
		m := map[string]string{"http.request.method": method, "url.scheme": "http", "http.response.status_code": strconv.Itoa(status)}
		if route != "" {
			m["http.route"] = route
		}
		maps.Copy(m, more)
		return m
	}
	span := func(status string, events int, attrs map[string]string) view {
		return view{Scope: "flagd.ofrep", Name: "flagd.ofrep", Kind: "server", TraceID: traceID, Parent: parent, Status: status, Attributes: attrs, Events: events}
	}
	flagAttrs := func(key, variant, reason, errType string) map[string]string {
		m := map[string]string{"feature_flag.key": key, "feature_flag.provider.name": "flagd", "feature_flag.result.reason": reason}
		if variant != "" {
			m["feature_flag.result.variant"] = variant
		}
		if errType != "" {
			m["error.type"] = errType
		}
		return m
	}
	single := "/ofrep/v1/evaluate/flags/{key}"
	merge := func(a, b map[string]string) map[string]string {
		maps.Copy(a, b)
		return a
	}
	flagCount := strconv.Itoa(strings.Count(bulk.body, `"key":`))
	want := []view{
		span("Unset", 0, httpAttrs("POST", "/ofrep/v1/evaluate/flags", 200, map[string]string{"feature_flag.count": flagCount})),
		span("Unset", 1, merge(httpAttrs("POST", single, 200, nil), flagAttrs("targeted", "yes", "targeting_match", ""))),
		span("Error", 1, merge(httpAttrs("POST", single, 404, nil), flagAttrs("missing", "", "error", "flag_not_found"))),
		span("Error", 1, merge(httpAttrs("POST", single, 400, nil), flagAttrs("parse-error", "", "error", "parse_error"))),
		span("Error", 0, httpAttrs("POST", single, 400, map[string]string{"error.type": "invalid_context"})),
		span("Unset", 0, httpAttrs("POST", "", 404, nil)),
		span("Unset", 0, httpAttrs("GET", single, 405, nil)),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if flagCount == "0" {
		t.Fatal("the bulk answer has no flags")
	}
}
