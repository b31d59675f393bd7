package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"

	"github.com/flagpole-dev/flagpole/telemetry/otlptest"
)

func TestParseEndpoint(t *testing.T) {
	cases := map[string]struct {
		uri      string
		tlsFiles bool
		want     endpoint
		wantErr  string
	}{
		"host:port is plaintext":          {uri: "collector:4317", want: endpoint{target: "collector:4317"}},
		"host:port with TLS files is TLS": {uri: "collector:4317", tlsFiles: true, want: endpoint{target: "collector:4317", tls: true}},
		"IPv6":                            {uri: "[::1]:4317", want: endpoint{target: "[::1]:4317"}},
		"http is plaintext":               {uri: "http://collector:4317", want: endpoint{target: "collector:4317", scheme: "http"}},
		"http with a trailing slash":      {uri: "http://collector:4317/", want: endpoint{target: "collector:4317", scheme: "http"}},
		"https is TLS":                    {uri: "https://collector:4317", want: endpoint{target: "collector:4317", scheme: "https", tls: true}},
		"HTTPS in capitals":               {uri: "HTTPS://collector:4317", want: endpoint{target: "collector:4317", scheme: "https", tls: true}},
		"https with TLS files":            {uri: "https://collector:4317", tlsFiles: true, want: endpoint{target: "collector:4317", scheme: "https", tls: true}},
		"http with TLS files":             {uri: "http://collector:4317", tlsFiles: true, wantErr: `--otel-collector-uri "http://collector:4317" is plaintext (http://), but --otel-ca-path or --otel-cert-path is set`},
		"no port":                         {uri: "collector", wantErr: `--otel-collector-uri "collector": want host:port, http://host:port or https://host:port`},
		"URL without port":                {uri: "https://collector", wantErr: `--otel-collector-uri "https://collector": want https://host:port (the port is required)`},
		"no host":                         {uri: ":4317", wantErr: `--otel-collector-uri ":4317": want host:port`},
		"port not a number":               {uri: "collector:otlp", wantErr: `--otel-collector-uri "collector:otlp": port "otlp" is not a number from 1 to 65535`},
		"port zero":                       {uri: "http://collector:0", wantErr: `port "0" is not a number from 1 to 65535`},
		"port too large":                  {uri: "collector:70000", wantErr: `port "70000" is not a number from 1 to 65535`},
		"grpc scheme":                     {uri: "grpc://collector:4317", wantErr: `--otel-collector-uri "grpc://collector:4317": scheme "grpc" is not supported`},
		"path":                            {uri: "http://collector:4318/v1/traces", wantErr: `OTLP/gRPC has no path, query or fragment`},
		"credentials are not echoed":      {uri: "https://user:secret@collector:4317", wantErr: "--otel-collector-uri: credentials in the URI are not supported (use OTEL_EXPORTER_OTLP_HEADERS)"},
		"empty":                           {uri: "", wantErr: "--otel-collector-uri is empty"},
		"bad URL":                         {uri: "http://[::1:4317", wantErr: "--otel-collector-uri: not a URL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := parseEndpoint(tc.uri, tc.tlsFiles)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error echoes the credentials: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(endpoint{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	ca := otlptest.NewCA(t, "test-ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := ca.WriteLeaf(t, dir, "client", "client")
	otherCert, _ := ca.WriteLeaf(t, dir, "other", "other")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	cases := map[string]struct {
		opts Options
		want string
	}{
		"metrics without URI":    {Options{Metrics: true}, "--metrics-exporter otel needs --otel-collector-uri"},
		"CA without URI":         {Options{CA: caFile}, "need --otel-collector-uri"},
		"cert without key":       {Options{CollectorURI: "c:4317", Cert: certFile}, "--otel-cert-path and --otel-key-path must be given together"},
		"negative reload":        {Options{CollectorURI: "c:4317", ReloadInterval: -time.Second}, "--otel-reload-interval -1s must not be negative"},
		"bad URI":                {Options{CollectorURI: "ftp://c:21"}, `scheme "ftp" is not supported`},
		"missing CA":             {Options{CollectorURI: "c:4317", CA: missing}, "--otel-ca-path: open " + missing},
		"CA not PEM":             {Options{CollectorURI: "c:4317", CA: notPEM}, "--otel-ca-path " + notPEM + ": no PEM certificate found"},
		"missing cert":           {Options{CollectorURI: "c:4317", Cert: missing, Key: keyFile}, "--otel-cert-path: open " + missing},
		"missing key":            {Options{CollectorURI: "c:4317", Cert: certFile, Key: missing}, "--otel-key-path: open " + missing},
		"key of another cert":    {Options{CollectorURI: "c:4317", Cert: otherCert, Key: keyFile}, "--otel-cert-path " + otherCert + " and --otel-key-path " + keyFile + ": tls: private key does not match public key"},
		"TLS files with http://": {Options{CollectorURI: "http://c:4317", CA: caFile}, "is plaintext (http://)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			tc.opts.Log = zerolog.Nop()
			tel, err := New(context.Background(), tc.opts)
			if err == nil {
				_ = tel.Shutdown(context.Background())
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestNothingConfiguredExportsNothing(t *testing.T) {
	tel, err := New(context.Background(), Options{Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if tel.TracerProvider() != nil || tel.Propagator() != nil {
		t.Fatal("providers without a collector URI")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var none *Telemetry
	if none.TracerProvider() != nil || none.Shutdown(context.Background()) != nil {
		t.Fatal("nil Telemetry is not inert")
	}
}

// fastExport makes the SDK export spans and metrics every few milliseconds
// (standard variables, so this also shows they are honoured).
func fastExport(t *testing.T) {
	t.Helper()
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "50")
}

// emitSpan ends one span of the given name.
func emitSpan(tp trace.TracerProvider, name string) {
	_, span := tp.Tracer("test").Start(context.Background(), name)
	span.End()
}

func spanNamed(r *otlptest.Receiver, name string) (otlptest.Span, bool) {
	for _, s := range r.Spans() {
		if s.Name == name {
			return s, true
		}
	}
	return otlptest.Span{}, false
}

func newTelemetry(t *testing.T, opts Options) *Telemetry {
	t.Helper()
	if opts.ServiceVersion == "" {
		opts.ServiceVersion = "v9.9.9-test"
	}
	tel, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	return tel
}

// TestExportPlaintextWithResource: host:port is plaintext; spans and metrics arrive
// with flagd's resource.
func TestExportPlaintextWithResource(t *testing.T) {
	fastExport(t)
	rcv := otlptest.Start(t, nil)
	tel := newTelemetry(t, Options{CollectorURI: rcv.Addr, Metrics: true, MetricProducer: counterProducer{}, Log: zerolog.Nop()})
	emitSpan(tel.TracerProvider(), "plain")
	otlptest.Eventually(t, "the span", func() bool { _, ok := spanNamed(rcv, "plain"); return ok })
	otlptest.Eventually(t, "the metric", func() bool {
		for _, p := range rcv.Points() {
			if p.Name == "test.counter" && p.Scope == "flagd" && p.Value == 3 {
				return true
			}
		}
		return false
	})
	span, _ := spanNamed(rcv, "plain")
	res := span.Resource
	for _, key := range []string{"host.name", "os.type", "os.description", "process.runtime.name", "process.runtime.version",
		"process.runtime.description", "telemetry.sdk.language", "telemetry.sdk.name", "telemetry.sdk.version"} {
		if res[key] == "" {
			t.Errorf("resource has no %s: %v", key, res)
		}
	}
	if res["service.name"] != "flagd" || res["service.version"] != "v9.9.9-test" {
		t.Errorf("service.name, service.version = %q, %q; want flagd, v9.9.9-test", res["service.name"], res["service.version"])
	}
	for _, key := range []string{"process.command_args", "process.executable.path", "process.owner", "process.pid"} {
		if _, ok := res[key]; ok {
			t.Errorf("resource has %s: process details stay in the pod", key)
		}
	}
}

func TestResourceFromEnvironment(t *testing.T) {
	fastExport(t)
	t.Setenv("OTEL_SERVICE_NAME", "flags-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.namespace=shop")
	rcv := otlptest.Start(t, nil)
	tel := newTelemetry(t, Options{CollectorURI: "http://" + rcv.Addr, Log: zerolog.Nop()})
	emitSpan(tel.TracerProvider(), "env")
	otlptest.Eventually(t, "the span", func() bool { _, ok := spanNamed(rcv, "env"); return ok })
	span, _ := spanNamed(rcv, "env")
	got := map[string]string{}
	for _, k := range []string{"service.name", "service.version", "deployment.environment.name", "service.namespace"} {
		got[k] = span.Resource[k]
	}
	want := map[string]string{"service.name": "flags-eu", "service.version": "v9.9.9-test",
		"deployment.environment.name": "prod", "service.namespace": "shop"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestExportTLS: https:// with --otel-ca-path verifies the collector against the CA;
// without it (system roots) the test CA is not trusted and nothing arrives, which
// is logged and not an error.
func TestExportTLS(t *testing.T) {
	fastExport(t)
	ca := otlptest.NewCA(t, "otel-ca")
	rcv := otlptest.Start(t, ca.ServerTLS(t, false))
	caFile := ca.WriteCA(t, t.TempDir(), "ca.crt")

	tel := newTelemetry(t, Options{CollectorURI: "https://" + rcv.Addr, CA: caFile, Log: zerolog.Nop()})
	emitSpan(tel.TracerProvider(), "over-tls")
	otlptest.Eventually(t, "the span over TLS", func() bool { _, ok := spanNamed(rcv, "over-tls"); return ok })

	// host:port with a CA file is TLS too
	tel2 := newTelemetry(t, Options{CollectorURI: rcv.Addr, CA: caFile, Log: zerolog.Nop()})
	emitSpan(tel2.TracerProvider(), "host-port-tls")
	otlptest.Eventually(t, "the span over TLS to host:port", func() bool { _, ok := spanNamed(rcv, "host-port-tls"); return ok })

	t.Setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "200") // give up (and log) soon
	var logs syncBuffer
	untrusted := newTelemetry(t, Options{CollectorURI: "https://" + rcv.Addr, Log: zerolog.New(&logs)})
	emitSpan(untrusted.TracerProvider(), "untrusted")
	otlptest.Eventually(t, "the export failure in the log", func() bool {
		return strings.Contains(logs.String(), "otel: export to the collector failed")
	})
	if _, ok := spanNamed(rcv, "untrusted"); ok {
		t.Fatal("a span arrived over a connection whose certificate the exporter cannot verify")
	}
}

// TestTLSFromEnvironment: without TLS flags, the exporters' standard variables
// still apply: OTEL_EXPORTER_OTLP_CERTIFICATE gives the roots for https:// and turns
// host:port into TLS; http:// stays plaintext; https:// refuses
// OTEL_EXPORTER_OTLP_INSECURE=true.
func TestTLSFromEnvironment(t *testing.T) {
	fastExport(t)
	ca := otlptest.NewCA(t, "env-ca")
	tlsRcv := otlptest.Start(t, ca.ServerTLS(t, false))
	plainRcv := otlptest.Start(t, nil)
	t.Setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.WriteCA(t, t.TempDir(), "ca.crt"))

	for name, c := range map[string]struct {
		uri string
		rcv *otlptest.Receiver
	}{
		"https with the environment's roots": {"https://" + tlsRcv.Addr, tlsRcv},
		"host:port turned into TLS":          {tlsRcv.Addr, tlsRcv},
		"http stays plaintext":               {"http://" + plainRcv.Addr, plainRcv},
	} {
		tel := newTelemetry(t, Options{CollectorURI: c.uri, Log: zerolog.Nop()})
		emitSpan(tel.TracerProvider(), name)
		otlptest.Eventually(t, name, func() bool { _, ok := spanNamed(c.rcv, name); return ok })
	}

	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "true")
	if _, err := New(context.Background(), Options{CollectorURI: "https://" + tlsRcv.Addr, Log: zerolog.Nop()}); err == nil ||
		!strings.Contains(err.Error(), "asks for TLS, but OTEL_EXPORTER_OTLP_TRACES_INSECURE=true asks for plaintext") {
		t.Fatalf("error = %v, want the contradiction named", err)
	}
}

// TestExportMutualTLS: a receiver that requires client certificates gets the one
// from --otel-cert-path/--otel-key-path, and after the files are replaced, the new
// one, without a restart.
func TestExportMutualTLS(t *testing.T) {
	fastExport(t)
	ca := otlptest.NewCA(t, "otel-ca")
	rcv := otlptest.Start(t, ca.ServerTLS(t, true))
	dir := t.TempDir()
	caFile := ca.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := ca.WriteLeaf(t, dir, "client", "flagd-client-1")

	tel := newTelemetry(t, Options{CollectorURI: "https://" + rcv.Addr, CA: caFile, Cert: certFile, Key: keyFile,
		ReloadInterval: 20 * time.Millisecond, Metrics: true, Log: zerolog.Nop()})
	clientSeen := func(cn string) bool {
		emitSpan(tel.TracerProvider(), "mtls")
		return slices.Contains(rcv.Clients(), cn)
	}
	otlptest.Eventually(t, "an export with the first client certificate", func() bool { return clientSeen("flagd-client-1") })

	ca.WriteLeaf(t, dir, "client", "flagd-client-2")
	otlptest.Eventually(t, "an export with the rotated client certificate", func() bool { return clientSeen("flagd-client-2") })

	// once rotated, every new export presents the new certificate
	n := len(rcv.Clients())
	otlptest.Eventually(t, "more exports", func() bool { emitSpan(tel.TracerProvider(), "mtls"); return len(rcv.Clients()) > n+2 })
	for _, c := range rcv.Clients()[n:] {
		if c != "flagd-client-2" {
			t.Fatalf("an export after the rotation presented %q", c)
		}
	}

	// without a client certificate the receiver refuses the exporter
	noCert := newTelemetry(t, Options{CollectorURI: "https://" + rcv.Addr, CA: caFile, Log: zerolog.Nop()})
	emitSpan(noCert.TracerProvider(), "no-client-cert")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = noCert.Shutdown(ctx)
	if _, ok := spanNamed(rcv, "no-client-cert"); ok {
		t.Fatal("the receiver accepted an exporter without a client certificate")
	}
}

// TestSampling: flagd's AlwaysSample records a span whose caller did not sample;
// OTEL_TRACES_SAMPLER, when set, decides instead.
func TestSampling(t *testing.T) {
	parent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true, // TraceFlags 0: not sampled
	}))
	rcv := otlptest.Start(t, nil)
	sampled := func() bool {
		tel := newTelemetry(t, Options{CollectorURI: rcv.Addr, Log: zerolog.Nop()})
		_, span := tel.TracerProvider().Tracer("test").Start(parent, "child")
		defer span.End()
		return span.SpanContext().IsSampled()
	}
	if !sampled() {
		t.Error("AlwaysSample did not sample the child of an unsampled caller")
	}
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	if sampled() {
		t.Error("OTEL_TRACES_SAMPLER=parentbased_always_on sampled the child of an unsampled caller")
	}
}

// TestCollectorDownIsNotFatal: exports to a closed port fail, are logged once, and
// Shutdown returns when its context ends.
func TestCollectorDownIsNotFatal(t *testing.T) {
	fastExport(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs syncBuffer
	tel, err := New(context.Background(), Options{CollectorURI: addr, Metrics: true, Log: zerolog.New(&logs)})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		emitSpan(tel.TracerProvider(), "lost")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		done <- tel.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Logf("Shutdown: %v (the collector is down: an error is expected)", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after its context ended")
	}
	if n := strings.Count(logs.String(), "otel: export to the collector failed"); n == 0 || n > 2 {
		t.Errorf("want one failure line per signal, got %d: %s", n, logs.String())
	}
}

func TestExportLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newExportLog("traces", zerolog.New(&buf))
	l.now = func() time.Time { return now }
	fail := errors.New("connection refused")
	l.report(fail) // logged
	for range 5 {
		now = now.Add(time.Second)
		l.report(fail) // counted
	}
	now = now.Add(time.Minute)
	l.report(fail) // logged with 5 left out
	l.report(nil)  // recovered
	l.report(nil)  // nothing
	got := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		`{"level":"warn","signal":"traces","error":"connection refused","failures_not_logged":0,"next_log_after":60000,"message":"otel: export to the collector failed; the data is dropped and serving goes on"}`,
		`{"level":"warn","signal":"traces","error":"connection refused","failures_not_logged":5,"next_log_after":60000,"message":"otel: export to the collector failed; the data is dropped and serving goes on"}`,
		`{"level":"info","signal":"traces","failures_not_logged":0,"message":"otel: export to the collector works again"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestErrorHandler(t *testing.T) {
	var buf bytes.Buffer
	h := ErrorHandler(zerolog.New(&buf).Level(zerolog.InfoLevel))
	h.Handle(context.Canceled)                                    // shutdown: debug only
	h.Handle(fmt.Errorf("collect: %w", context.DeadlineExceeded)) // likewise
	h.Handle(errors.New("partial success: 3 spans rejected"))     // logged
	h.Handle(errors.New("partial success: 1 span rejected"))      // within the minute: counted
	want := `{"level":"warn","signal":"sdk","error":"partial success: 3 spans rejected","failures_not_logged":0,"next_log_after":60000,"message":"otel: the SDK reported an error"}` + "\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestReloadKeepsGoodFiles: a reading that fails keeps the previous credentials; a
// changed reading replaces them and closes the connections made with the old ones.
func TestReloadKeepsGoodFiles(t *testing.T) {
	dir := t.TempDir()
	ca := otlptest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := ca.WriteLeaf(t, dir, "client", "one")
	var logs syncBuffer
	c, err := newReloadingCreds(tlsFiles{ca: caFile, cert: certFile, key: keyFile}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	first := c.cur.Load()
	if c.reload() {
		t.Fatal("reload without a change replaced the credentials")
	}

	a, b := net.Pipe()
	defer b.Close()
	tracked := c.conns.add(a)

	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.reload() || c.cur.Load() != first {
		t.Fatal("a broken key replaced the credentials")
	}
	if !strings.Contains(logs.String(), "cannot reload the collector TLS files; keeping the previous ones") {
		t.Fatalf("the failed reload was not logged: %s", logs.String())
	}

	ca.WriteLeaf(t, dir, "client", "two")
	if !c.reload() || c.cur.Load() == first {
		t.Fatal("new files were not taken")
	}
	if _, err := tracked.Write([]byte("x")); err == nil {
		t.Fatal("a connection made with the old certificate is still open")
	}
	if n := c.conns.closeAll(); n != 0 {
		t.Fatalf("%d connections still tracked after the reload", n)
	}
}

// counterProducer produces one counter, test.counter = 3, in scope flagd.
type counterProducer struct{}

func (counterProducer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: "flagd"}, Metrics: []metricdata.Metrics{{
		Name: "test.counter", Data: metricdata.Sum[int64]{Temporality: metricdata.CumulativeTemporality, IsMonotonic: true,
			DataPoints: []metricdata.DataPoint[int64]{{StartTime: now, Time: now, Value: 3}}},
	}}}}, nil
}

// syncBuffer is a bytes.Buffer safe for the exporters' goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
