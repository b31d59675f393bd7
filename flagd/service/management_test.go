package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/ofrep"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
)

const (
	fileSource   = "file:/etc/flags.json"
	secretSource = "https://ops:s3cret@flags.example.com/flags.json?token=abc"
	flagDoc      = `{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`
)

// serve runs h with server.Serve on 127.0.0.1:0 until the test ends and returns the address.
func serve(t *testing.T, name string, h http.Handler) string {
	t.Helper()
	cfg := server.ListenConfig{Name: name, Address: "127.0.0.1:0", ReadHeaderTimeout: 3 * time.Second}
	ln, err := server.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, cfg, h, zerolog.Nop(), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).String()
}

type response struct {
	Status      int
	ContentType string
	Body        string
}

func get(t *testing.T, url string) response {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header.Get("Content-Type"), string(b)}
}

func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func check(t *testing.T, c healthpb.HealthClient, svc string) (healthpb.HealthCheckResponse_ServingStatus, codes.Code) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN, status.Code(err)
	}
	return res.GetStatus(), codes.OK
}

// TestReadinessLifecycle walks flagd mode's management port through not ready →
// ready → shutting down and checks /healthz, /readyz (with the sources report),
// gRPC Check and a gRPC Watch stream at every step.
func TestReadinessLifecycle(t *testing.T) {
	st, err := store.New([]string{fileSource, secretSource}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	mgmt := management.New(management.Options{Ready: st.Ready, NotReady: service.ReadinessReport(st.Status), Watch: st.Watch, Log: zerolog.Nop()})
	addr := serve(t, "management", mgmt.Handler())
	base := "http://" + addr
	client := healthClient(t, addr)

	watchCtx, stopWatch := context.WithTimeout(context.Background(), 10*time.Second)
	defer stopWatch()
	watch, err := client.Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	nextWatched := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		res, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		return res.GetStatus()
	}

	type state struct {
		Healthz  response
		Readyz   response
		Health   healthpb.HealthCheckResponse_ServingStatus
		Watched  healthpb.HealthCheckResponse_ServingStatus
		UnknownC codes.Code
	}
	observe := func() state {
		s := state{Healthz: get(t, base+"/healthz"), Readyz: get(t, base+"/readyz"), Watched: nextWatched()}
		s.Health, _ = check(t, client, "")
		_, s.UnknownC = check(t, client, "flagd.evaluation.v1.Service")
		return s
	}
	healthy := response{200, "", ""}

	// No source has delivered: 412 with the sources that are missing (credentials redacted).
	notReady := `{"reason":"waiting for the first payload of every source","sources":[` +
		`{"source":"file:/etc/flags.json","ready":false},` +
		`{"source":"https://redacted@flags.example.com/flags.json?redacted","ready":false}]}`
	want := state{healthy, response{412, "application/json", notReady}, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, codes.NotFound}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("before any payload (-want +got):\n%s", diff)
	}

	// One source applied, the other rejected its payload: still not ready, and the error is shown.
	if err := st.Apply(fileSource, []byte(flagDoc)); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(secretSource, []byte(`{"flags":`)); err == nil {
		t.Fatal("a truncated payload was accepted")
	}
	res := get(t, base+"/readyz")
	var body struct {
		Reason  string
		Sources []struct {
			Source    string
			Failures  int
			LastError string
		}
	}
	if err := json.Unmarshal([]byte(res.Body), &body); err != nil {
		t.Fatalf("readyz body %q: %v", res.Body, err)
	}
	if res.Status != 412 || len(body.Sources) != 1 || body.Sources[0].Failures != 1 || body.Sources[0].LastError == "" ||
		strings.Contains(res.Body, "s3cret") || strings.Contains(res.Body, "abc") {
		t.Fatalf("readyz with one source failing: %d %s", res.Status, res.Body)
	}

	// Every source applied: ready.
	if err := st.Apply(secretSource, []byte(flagDoc)); err != nil {
		t.Fatal(err)
	}
	want = state{healthy, healthy, healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_SERVING, codes.NotFound}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("after every source (-want +got):\n%s", diff)
	}

	// Shutdown: not ready any more, still alive.
	mgmt.ShuttingDown()
	mgmt.ShuttingDown() // idempotent
	want = state{healthy, response{412, "application/json", `{"reason":"shutting down"}`}, healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_NOT_SERVING, codes.NotFound}
	if diff := cmp.Diff(want, observe()); diff != "" {
		t.Fatalf("shutting down (-want +got):\n%s", diff)
	}
}

// TestMetricsEndpoint evaluates over OFREP and reads flagd's metric names, with real
// status codes and route templates, from /metrics.
func TestMetricsEndpoint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New([]string{fileSource}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(fileSource, []byte(flagDoc)); err != nil {
		t.Fatal(err)
	}
	ofrepURL := "http://" + serve(t, "ofrep", ofrep.New(ofrep.Options{Store: st, Metrics: m, Log: zerolog.Nop()}).Handler())
	mgmtURL := "http://" + serve(t, "management", management.New(management.Options{Ready: st.Ready, Gatherer: reg, Log: zerolog.Nop()}).Handler())

	for _, path := range []string{"/ofrep/v1/evaluate/flags/f", "/ofrep/v1/evaluate/flags/f", "/ofrep/v1/evaluate/flags/nope", "/ofrep/v1/evaluate/flags"} {
		res, err := http.Post(ofrepURL+path, "application/json", strings.NewReader(`{"context":{"email":"x@example.com"}}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	res := get(t, mgmtURL+"/metrics")
	if res.Status != 200 {
		t.Fatalf("/metrics: %+v", res)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(res.Body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	// series lists "name{label=value,...} count" for counters and histogram counts.
	series := map[string]float64{}
	for name, f := range families {
		for _, mt := range f.GetMetric() {
			key := name + labelString(mt.GetLabel())
			switch {
			case mt.GetCounter() != nil:
				series[key] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				series[key] = float64(mt.GetHistogram().GetSampleCount())
			case mt.GetGauge() != nil:
				series[key] = mt.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		`http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=200,http_route=/ofrep/v1/evaluate/flags,service_name=flagd,url_scheme=http}`:       1,
		`http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=200,http_route=/ofrep/v1/evaluate/flags/{key},service_name=flagd,url_scheme=http}`: 2,
		`http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=404,http_route=/ofrep/v1/evaluate/flags/{key},service_name=flagd,url_scheme=http}`: 1,
		`http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=200,http_route=/ofrep/v1/evaluate/flags,service_name=flagd,url_scheme=http}`:       1,
		`http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=200,http_route=/ofrep/v1/evaluate/flags/{key},service_name=flagd,url_scheme=http}`: 2,
		`http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=404,http_route=/ofrep/v1/evaluate/flags/{key},service_name=flagd,url_scheme=http}`: 1,
		`http_server_active_requests{http_request_method=POST,http_route=/ofrep/v1/evaluate/flags,service_name=flagd,url_scheme=http}`:                                              0,
		`http_server_active_requests{http_request_method=POST,http_route=/ofrep/v1/evaluate/flags/{key},service_name=flagd,url_scheme=http}`:                                        0,
		`feature_flag_flagd_impression_total{feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=STATIC,feature_flag_result_variant=on}`:                        3,
		`feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=STATIC}`:                                        3,
		`feature_flag_flagd_result_reason_total{error_type=FLAG_NOT_FOUND,feature_flag_key=,feature_flag_provider_name=flagd,feature_flag_reason=ERROR}`:                            1,
	}
	if diff := cmp.Diff(want, series); diff != "" {
		t.Errorf("/metrics series (-want +got):\n%s", diff)
	}
}

func labelString(labels []*dto.LabelPair) string {
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// TestReadyzReportsDegradedSources: a ready source whose updates fail (a file it
// cannot read, a server it cannot reach) keeps its last good flags and /readyz
// stays 200, but says so: which source (redacted), its error, since when it fails
// and when the flags it serves were read. Once it recovers the body is empty again.
func TestReadyzReportsDegradedSources(t *testing.T) {
	st, err := store.New([]string{fileSource, secretSource}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{fileSource, secretSource} {
		if err := st.Apply(src, []byte(flagDoc)); err != nil {
			t.Fatal(err)
		}
	}
	mgmt := management.New(management.Options{Ready: st.Ready, NotReady: service.ReadinessReport(st.Status),
		Degraded: service.DegradedReport(st.Status), Log: zerolog.Nop()})
	url := "http://" + serve(t, "management", mgmt.Handler()) + "/readyz"
	if diff := cmp.Diff(response{200, "", ""}, get(t, url)); diff != "" {
		t.Fatalf("healthy (-want +got):\n%s", diff)
	}
	st.Fail(secretSource, errors.New("GET "+secretSource+": connection refused"))
	st.Fail(secretSource, errors.New("GET "+secretSource+": connection refused"))
	res := get(t, url)
	var body struct {
		Status   string
		Degraded []struct {
			Source, LastError                string
			Failures                         int
			FailingSince, ServingFlagsReadAt time.Time
		}
	}
	if err := json.Unmarshal([]byte(res.Body), &body); err != nil {
		t.Fatalf("readyz while a source fails: %d %q: %v", res.Status, res.Body, err)
	}
	d := body.Degraded
	if res.Status != 200 || body.Status != "ready" || len(d) != 1 || d[0].Failures != 2 ||
		d[0].Source != "https://redacted@flags.example.com/flags.json?redacted" || !strings.Contains(d[0].LastError, "connection refused") ||
		d[0].FailingSince.IsZero() || d[0].ServingFlagsReadAt.IsZero() || d[0].FailingSince.Before(d[0].ServingFlagsReadAt) {
		t.Errorf("readyz while a source fails: %d %s", res.Status, res.Body)
	}
	if strings.Contains(res.Body, "s3cret") || strings.Contains(res.Body, "abc") {
		t.Errorf("readyz carries the source's credentials: %s", res.Body)
	}
	if err := st.Apply(secretSource, []byte(flagDoc)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(response{200, "", ""}, get(t, url)); diff != "" {
		t.Errorf("recovered (-want +got):\n%s", diff)
	}
}
