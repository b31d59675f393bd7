package evaluation

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
)

// benchCases are the ResolveBoolean bodies of the benchmarks.
var benchCases = []struct{ name, body string }{
	{"static", `{"flagKey":"plain","context":{}}`},
	{"static-with-metadata", `{"flagKey":"bool-static","context":{"targetingKey":"user-1"}}`},
	{"targeting", `{"flagKey":"targeted","context":{"email":"a@b.c","targetingKey":"user-1"}}`},
}

// BenchmarkResolveBooleanConnectJSON measures the whole server side of a Connect
// JSON ResolveBoolean (routing, metrics-free middleware, decode, selector, context,
// evaluation, encode) in process, without a network, through connect-go
// ("connect-go") and through the fast path ("fast"). Allocations include the
// benchmark's own request and recorder.
func BenchmarkResolveBooleanConnectJSON(b *testing.B) {
	for _, path := range []struct {
		name string
		fast bool
	}{{"connect-go", false}, {"fast", true}} {
		svc := newService(Options{Store: newTestStore(b), Enricher: testEnricher()}, path.fast)
		h := svc.Handler()
		for _, bc := range benchCases {
			body := []byte(bc.body)
			b.Run(path.name+"/"+bc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest(http.MethodPost, "/flagd.evaluation.v1.Service/ResolveBoolean", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("status %d: %s", rec.Code, rec.Body)
					}
				}
			})
		}
	}
}

// BenchmarkResolveBooleanHandler is the handler alone, with metrics on (as served):
// a reused request and a ResponseWriter that discards, so ns/op and allocs/op are
// the server's own (the OFREP single benchmark measures the same way).
func BenchmarkResolveBooleanHandler(b *testing.B) {
	for _, path := range []struct {
		name string
		fast bool
	}{{"connect-go", false}, {"fast", true}} {
		m, err := metrics.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		svc := newService(Options{Store: newTestStore(b), Enricher: testEnricher(), Metrics: m}, path.fast)
		h := svc.Handler()
		for _, bc := range benchCases {
			b.Run(path.name+"/"+bc.name, func(b *testing.B) {
				req, err := http.NewRequest(http.MethodPost, "http://x/flagd.evaluation.v1.Service/ResolveBoolean", nil)
				if err != nil {
					b.Fatal(err)
				}
				rd := &benchBody{}
				req.Body = rd
				req.Header.Set("Content-Type", "application/json")
				req.ContentLength = int64(len(bc.body))
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					rd.Reset(bc.body)
					clear(w.h)
					w.status = 0
					h.ServeHTTP(w, req)
					if w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		}
	}
}

// BenchmarkResolveBooleanTelemetry is BenchmarkResolveBooleanHandler with what
// --otel-collector-uri and --metrics-exporter otel turn on: a span per request
// (AlwaysSample, batch processor, an exporter that discards) from a caller's
// traceparent, and the metrics' OTLP producer attached to a reader (it reads the
// Prometheus instruments at export time only, so it adds nothing per request).
func BenchmarkResolveBooleanTelemetry(b *testing.B) {
	for _, path := range []struct {
		name string
		fast bool
	}{{"connect-go", false}, {"fast", true}} {
		m, err := metrics.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader(sdkmetric.WithProducer(m.OTelProducer()))))
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() {
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		svc := newService(Options{Store: newTestStore(b), Enricher: testEnricher(), Metrics: m, Tracing: tracing.New(tp, nil)}, path.fast)
		h := svc.Handler()
		for _, bc := range benchCases {
			b.Run(path.name+"/"+bc.name, func(b *testing.B) {
				req, err := http.NewRequest(http.MethodPost, "http://x/flagd.evaluation.v1.Service/ResolveBoolean", nil)
				if err != nil {
					b.Fatal(err)
				}
				rd := &benchBody{}
				req.Body = rd
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				req.ContentLength = int64(len(bc.body))
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					rd.Reset(bc.body)
					clear(w.h)
					w.status = 0
					h.ServeHTTP(w, req)
					if w.status != http.StatusOK {
						b.Fatalf("status %d", w.status)
					}
				}
			})
		}
	}
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(b), nil
}

type benchBody struct{ strings.Reader }

func (*benchBody) Close() error { return nil }
