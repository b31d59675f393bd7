package evaluation

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkResolveBooleanConnectJSON measures the whole server side of a Connect
// JSON ResolveBoolean (routing, metrics-free middleware, decode, selector, context,
// evaluation, encode) in process, without a network. Allocations include the
// benchmark's own request and recorder.
func BenchmarkResolveBooleanConnectJSON(b *testing.B) {
	svc := New(Options{Store: newTestStore(b), Enricher: testEnricher()})
	h := svc.Handler()
	for _, bc := range []struct{ name, body string }{
		{"static", `{"flagKey":"plain","context":{}}`},
		{"static-with-metadata", `{"flagKey":"bool-static","context":{"targetingKey":"user-1"}}`},
		{"targeting", `{"flagKey":"targeted","context":{"email":"a@b.c","targetingKey":"user-1"}}`},
	} {
		body := []byte(bc.body)
		b.Run(bc.name, func(b *testing.B) {
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
