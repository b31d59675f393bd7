package evaluation

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
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
