package ofrep_test

import (
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/ofrep"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// benchStore holds n flags: every other one with a targeting rule on the context.
func benchStore(b *testing.B, n int) *store.Store {
	b.Helper()
	var doc strings.Builder
	doc.WriteString(`{"metadata":{"flagSetId":"bench","version":"1"},"flags":{`)
	for i := range n {
		if i > 0 {
			doc.WriteByte(',')
		}
		if i%2 == 0 {
			fmt.Fprintf(&doc, `"flag-%04d":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}`, i)
		} else {
			fmt.Fprintf(&doc, `"flag-%04d":{"state":"ENABLED","variants":{"a":"alpha","b":"beta"},"defaultVariant":"a",`+
				`"targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"b",null]}}`, i)
		}
	}
	doc.WriteString(`}}`)
	st, err := store.New([]string{"bench"}, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Apply("bench", []byte(doc.String())); err != nil {
		b.Fatal(err)
	}
	return st
}

// discardWriter is a reusable ResponseWriter, so handler benchmarks measure the
// handler rather than httptest.ResponseRecorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

type bodyReader struct{ strings.Reader }

func (*bodyReader) Close() error { return nil }

func benchHandler(b *testing.B, h http.Handler, path, body string) {
	b.Helper()
	benchHandlerHeader(b, h, path, body, nil, http.StatusOK)
}

func benchHandlerHeader(b *testing.B, h http.Handler, path, body string, header http.Header, want int) {
	b.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://x"+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	maps.Copy(req.Header, header)
	rd := &bodyReader{}
	req.Body = rd
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(body)
		clear(w.h)
		h.ServeHTTP(w, req)
		if w.status != want {
			b.Fatalf("status %d", w.status)
		}
	}
}

func benchHTTP(b *testing.B, h http.Handler, path, body string, want int) {
	b.Helper()
	url := serve(b, h) + path
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	b.ReportAllocs()
	for b.Loop() {
		res, err := client.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

func BenchmarkOFREPSingle(b *testing.B) {
	st := benchStore(b, 1000)
	h := ofrep.New(ofrep.Options{Store: st, Enricher: &service.Enricher{}, Log: zerolog.Nop(), MaxRequestBody: 1_000_000}).Handler()
	const ctx = `{"context":{"targetingKey":"user-1","email":"ann@example.com"}}`
	b.Run("handler/static", func(b *testing.B) { benchHandler(b, h, "/ofrep/v1/evaluate/flags/flag-0500", ctx) })
	b.Run("handler/targeting", func(b *testing.B) { benchHandler(b, h, "/ofrep/v1/evaluate/flags/flag-0501", ctx) })
	b.Run("http/static", func(b *testing.B) { benchHTTP(b, h, "/ofrep/v1/evaluate/flags/flag-0500", ctx, 200) })
}

func BenchmarkOFREPBulk(b *testing.B) {
	st := benchStore(b, 1000)
	h := ofrep.New(ofrep.Options{Store: st, Log: zerolog.Nop(), MaxRequestBody: 1_000_000}).Handler()
	const ctx = `{"context":{"targetingKey":"user-1","email":"ann@example.com"}}`
	b.Run("handler/1000-flags", func(b *testing.B) { benchHandler(b, h, "/ofrep/v1/evaluate/flags", ctx) })
	b.Run("handler/304", func(b *testing.B) {
		req, err := http.NewRequest(http.MethodPost, "http://x/ofrep/v1/evaluate/flags", strings.NewReader(ctx))
		if err != nil {
			b.Fatal(err)
		}
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		etag := w.h.Get("ETag")
		benchHandlerHeader(b, h, "/ofrep/v1/evaluate/flags", ctx, http.Header{"If-None-Match": {etag}}, 304)
	})
	b.Run("http/1000-flags", func(b *testing.B) { benchHTTP(b, h, "/ofrep/v1/evaluate/flags", ctx, 200) })
	// The load harness's flags and request (bench/load, ofrep-bulk): 597 of the
	// 1,000 flags target (email, country, fractional, sem_ver, $ref), with the
	// evaluation counters on, as flagd mode serves them.
	b.Run("handler/load-mix", func(b *testing.B) {
		doc, err := flaggen.Generate(1000)
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.New([]string{"load"}, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Apply("load", doc); err != nil {
			b.Fatal(err)
		}
		m, err := metrics.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		h := ofrep.New(ofrep.Options{Store: st, Metrics: m, Log: zerolog.Nop(), MaxRequestBody: 1_000_000}).Handler()
		benchHandler(b, h, "/ofrep/v1/evaluate/flags",
			`{"context":{"targetingKey":"user-1","email":"ada`+flaggen.TargetingEmailSuffix+`","country":"de","version":"2.3.0"}}`)
	})
}
