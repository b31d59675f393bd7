package modes

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/evaluation/v2/evaluationv2grpc"
	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/telemetry/otlptest"
)

// Markers a caller puts in evaluation contexts and headers: none may leave flagd.
const (
	contextMarker = "ctx-marker-4e1f@example.com" // ends with @example.com: new-checkout is "on"
	keyMarker     = "tk-marker-90ab"
	headerMarker  = "hdr-marker-c3d2"
	baggageMarker = "bag-marker-7a7a"
)

// traceparent is a caller's W3C trace context with a distinct trace id per n.
func traceparent(n byte) (header, traceID, spanID string) {
	traceID, spanID = fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e47%02x", n), "00f067aa0ba902b7"
	return "00-" + traceID + "-" + spanID + "-01", traceID, spanID
}

// fastExport makes the SDK export every few milliseconds (standard variables).
func fastExport(t *testing.T) {
	t.Helper()
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "20")
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "100")
}

// runFlagd starts flagd mode on free ports with the example flags and args; the
// returned stop function cancels it and returns Serve's result.
func runFlagd(t *testing.T, args ...string) (Addresses, func() error) {
	t.Helper()
	base := []string{"-f", "file:" + examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1"}
	c, err := parseStart(t, append(base, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{Version: "v1.2.3-test"}, func(a Addresses) { addrs <- a })
	}()
	var a Addresses
	select {
	case a = <-addrs:
	case err := <-done:
		cancel()
		t.Fatalf("flagd did not start: %v", err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("flagd did not stop within 30 s")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	waitReady(t, "http://"+a.Management+"/readyz")
	return a, stop
}

// postJSON sends a JSON body with the caller's headers and returns the response body.
func postJSON(t *testing.T, url, body string, header http.Header) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", url, res.StatusCode, b)
	}
	return string(b)
}

func callerHeader(tp string) http.Header {
	return http.Header{
		"Traceparent":   {tp},
		"Baggage":       {"user.id=" + baggageMarker},
		"Authorization": {"Bearer " + headerMarker},
		"X-Customer":    {headerMarker}, // mapped into the context with -H
	}
}

func grpcClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func spanIn(rcv *otlptest.Receiver, scope, name, traceID string) (otlptest.Span, bool) {
	for _, s := range rcv.Spans() {
		if s.Scope == scope && s.Name == name && s.TraceID == traceID {
			return s, true
		}
	}
	return otlptest.Span{}, false
}

// TestFlagdExportsTelemetry runs flagd start with -o and -t otel against an
// in-process OTLP receiver: evaluations over Connect JSON (the fast path), gRPC and
// OFREP and a sync fetch become spans joined to the callers' traces, flagd's
// metrics arrive under their OTel names, /metrics keeps serving, and nothing the
// callers sent in evaluation contexts or headers is in anything the receiver got.
//
//nolint:gocognit // an end-to-end script: call every API, then check every span and metric; its steps read in order
func TestFlagdExportsTelemetry(t *testing.T) {
	fastExport(t)
	rcv := otlptest.Start(t, nil)
	a, stop := runFlagd(t, "-o", rcv.Addr, "-t", "otel", "-H", "X-Customer=customer")

	ctxJSON := `{"email":"` + contextMarker + `","targetingKey":"` + keyMarker + `","customer":"` + headerMarker + `"}`
	tpConnect, traceConnect, parent := traceparent(1)
	got := postJSON(t, "http://"+a.Evaluation+"/flagd.evaluation.v1.Service/ResolveBoolean",
		`{"flagKey":"new-checkout","context":`+ctxJSON+`}`, callerHeader(tpConnect))
	if !strings.Contains(got, `"variant":"on"`) {
		t.Fatalf("the evaluation context was not used: %s", got)
	}

	tpGRPC, traceGRPC, _ := traceparent(2)
	reqCtx, err := structpb.NewStruct(map[string]any{"email": contextMarker, "targetingKey": keyMarker})
	if err != nil {
		t.Fatal(err)
	}
	md := metadata.Pairs("traceparent", tpGRPC, "authorization", "Bearer "+headerMarker, "x-customer", headerMarker, "baggage", "user.id="+baggageMarker)
	if _, err := evaluationv2grpc.NewServiceClient(grpcClient(t, a.Evaluation)).ResolveBoolean(
		metadata.NewOutgoingContext(context.Background(), md), &evalv2.ResolveBooleanRequest{FlagKey: "new-checkout", Context: reqCtx}); err != nil {
		t.Fatal(err)
	}

	tpOFREP, traceOFREP, _ := traceparent(3)
	postJSON(t, "http://"+a.OFREP+"/ofrep/v1/evaluate/flags/new-checkout", `{"context":`+ctxJSON+`}`, callerHeader(tpOFREP))
	tpBulk, traceBulk, _ := traceparent(4)
	postJSON(t, "http://"+a.OFREP+"/ofrep/v1/evaluate/flags", `{"context":`+ctxJSON+`}`, callerHeader(tpBulk))

	tpSync, traceSync, _ := traceparent(5)
	if _, err := syncv1grpc.NewFlagSyncServiceClient(grpcClient(t, a.Sync)).FetchAllFlags(
		metadata.NewOutgoingContext(context.Background(), metadata.Pairs("traceparent", tpSync)), &syncv1.FetchAllFlagsRequest{ProviderId: keyMarker}); err != nil {
		t.Fatal(err)
	}

	type want struct{ scope, name, trace string }
	wants := []want{
		{"flagd.evaluation.v1", "resolveBoolean", traceConnect},
		{"flagd.evaluation.v2", "resolveBoolean", traceGRPC},
		{"flagd.ofrep", "flagd.ofrep", traceOFREP},
		{"flagd.ofrep", "flagd.ofrep", traceBulk},
		{"flagd.sync", "flagd.sync.v1.FlagSyncService/FetchAllFlags", traceSync},
	}
	otlptest.Eventually(t, "the spans of every call", func() bool {
		for _, w := range wants {
			if _, ok := spanIn(rcv, w.scope, w.name, w.trace); !ok {
				return false
			}
		}
		return true
	})
	evalAttrs := map[string]string{"feature_flag.key": "new-checkout", "feature_flag.provider.name": "flagd",
		"feature_flag.result.variant": "on", "feature_flag.result.reason": "targeting_match"}
	for _, w := range wants {
		s, _ := spanIn(rcv, w.scope, w.name, w.trace)
		if s.Kind != "server" || s.ParentSpanID != parent {
			t.Errorf("%s: kind %s parent %s, want a server span under the caller's %s", s, s.Kind, s.ParentSpanID, parent)
		}
		if s.Resource["service.name"] != "flagd" || s.Resource["service.version"] != "v1.2.3-test" {
			t.Errorf("%s: resource %v", s, s.Resource)
		}
		switch w.trace {
		case traceConnect, traceGRPC, traceOFREP:
			got := map[string]string{}
			for k := range evalAttrs {
				got[k] = s.Attributes[k]
			}
			if diff := cmp.Diff(evalAttrs, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", s, diff)
			}
			if len(s.Events) != 1 || s.Events[0].Name != "feature_flag.evaluation" || s.Events[0].Attributes["feature_flag.key"] != "new-checkout" {
				t.Errorf("%s: events %v, want one feature_flag.evaluation", s, s.Events)
			}
		case traceBulk:
			if s.Attributes["feature_flag.count"] == "" || s.Attributes["feature_flag.count"] == "0" {
				t.Errorf("%s: no feature_flag.count", s)
			}
		}
	}
	// the fast path and connect-go (gRPC) spans carry the same evaluation attributes
	fast, _ := spanIn(rcv, "flagd.evaluation.v1", "resolveBoolean", traceConnect)
	slow, _ := spanIn(rcv, "flagd.evaluation.v2", "resolveBoolean", traceGRPC)
	if diff := cmp.Diff(fast.Attributes, slow.Attributes); diff != "" {
		t.Errorf("Connect JSON and gRPC spans differ (-connect +grpc):\n%s", diff)
	}

	names := []string{"http.server.request.duration", "http.server.response.body.size", "http.server.active_requests",
		"feature_flag.flagd.impression", "feature_flag.flagd.result.reason"}
	otlptest.Eventually(t, "flagd's metrics", func() bool {
		seen := map[string]bool{}
		for _, p := range rcv.Points() {
			if p.Scope == "flagd" && p.Resource["service.name"] == "flagd" {
				seen[p.Name] = true
			}
		}
		for _, n := range names {
			if !seen[n] {
				return false
			}
		}
		return true
	})
	otlptest.Eventually(t, "the impressions of the three evaluations", func() bool {
		var total float64
		for _, p := range rcv.Points() {
			if p.Name == "feature_flag.flagd.impression" && p.Attributes["feature_flag.key"] == "new-checkout" && p.Attributes["feature_flag.result.variant"] == "on" {
				total = max(total, p.Value) // cumulative: the latest export holds the count
			}
		}
		return total >= 4 // Connect, gRPC, OFREP single and bulk
	})

	// /metrics is unchanged
	res, err := http.Get("http://" + a.Management + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `feature_flag_flagd_impression_total{feature_flag_key="new-checkout"`) {
		t.Errorf("/metrics lacks the impressions:\n%s", body)
	}

	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	assertNothingLeaked(t, rcv)
}

// assertNothingLeaked scans every byte the receiver was sent for the markers.
func assertNothingLeaked(t *testing.T, rcv *otlptest.Receiver) {
	t.Helper()
	raw := rcv.Raw()
	all := bytes.Join(raw, nil)
	if len(raw) == 0 || !bytes.Contains(all, []byte("new-checkout")) {
		t.Fatal("the receiver got nothing to scan")
	}
	for _, m := range []string{contextMarker, "ctx-marker", keyMarker, headerMarker, baggageMarker} {
		if bytes.Contains(all, []byte(m)) {
			t.Errorf("%q left flagd in an OTLP export", m)
		}
	}
}

// TestFlagdExportsOverMutualTLS: with --otel-ca-path, --otel-cert-path and
// --otel-key-path the exports go over TLS to a receiver that requires a client
// certificate, and a rotated client certificate is used without a restart.
func TestFlagdExportsOverMutualTLS(t *testing.T) {
	fastExport(t)
	ca := otlptest.NewCA(t, "collector-ca")
	rcv := otlptest.Start(t, ca.ServerTLS(t, true))
	dir := t.TempDir()
	caFile := ca.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := ca.WriteLeaf(t, dir, "client", "flagd-1")
	a, stop := runFlagd(t, "-o", "https://"+rcv.Addr, "-A", caFile, "-D", certFile, "-K", keyFile, "-I", "50ms", "-t", "otel")

	tp, traceID, _ := traceparent(9)
	evaluate := func() {
		postJSON(t, "http://"+a.OFREP+"/ofrep/v1/evaluate/flags/search-page-size", `{}`, http.Header{"Traceparent": {tp}})
	}
	presented := func(cn string) bool {
		evaluate()
		return slices.Contains(rcv.Clients(), cn)
	}
	otlptest.Eventually(t, "an export with the client certificate", func() bool { return presented("flagd-1") })
	otlptest.Eventually(t, "a span over mutual TLS", func() bool {
		_, ok := spanIn(rcv, "flagd.ofrep", "flagd.ofrep", traceID)
		return ok
	})

	ca.WriteLeaf(t, dir, "client", "flagd-2")
	otlptest.Eventually(t, "an export with the rotated client certificate", func() bool { return presented("flagd-2") })
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestFlagdCollectorDown: a collector that does not answer changes nothing for
// callers, and shutdown is not held up by it.
func TestFlagdCollectorDown(t *testing.T) {
	fastExport(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a, stop := runFlagd(t, "-o", addr, "-t", "otel")
	for range 50 {
		postJSON(t, "http://"+a.Evaluation+"/flagd.evaluation.v1.Service/ResolveBoolean", `{"flagKey":"new-checkout","context":{}}`, http.Header{})
	}
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestFlagdRejectsBadTelemetryFlags: every bad OTel option stops the start with an
// error naming its flag.
func TestFlagdRejectsBadTelemetryFlags(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/not.pem"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		args []string
		want string
	}{
		"scheme":       {[]string{"-o", "grpc://collector:4317"}, `--otel-collector-uri "grpc://collector:4317": scheme "grpc" is not supported`},
		"no port":      {[]string{"-o", "collector"}, `--otel-collector-uri "collector": want host:port`},
		"missing CA":   {[]string{"-o", "collector:4317", "-A", dir + "/missing.crt"}, "--otel-ca-path: open " + dir + "/missing.crt"},
		"CA not PEM":   {[]string{"-o", "collector:4317", "-A", notPEM}, "--otel-ca-path " + notPEM + ": no PEM certificate found"},
		"TLS on http:": {[]string{"-o", "http://collector:4317", "-A", notPEM}, "is plaintext (http://)"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			base := []string{"-f", "file:" + examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1"}
			c, err := parseStart(t, append(base, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Serve(context.Background(), zerolog.Nop(), BuildInfo{}, func(Addresses) { t.Error("flagd started") })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
