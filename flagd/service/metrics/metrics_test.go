package metrics

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// gather returns "name{label=value,...}" → counter value, histogram sample count or
// gauge value, for every series in reg.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			parts := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(parts)
			key := f.GetName() + "{" + strings.Join(parts, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func newMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func TestNewRejectsDoubleRegistration(t *testing.T) {
	_, reg := newMetrics(t)
	if _, err := New(reg); err == nil {
		t.Fatal("registering the instruments twice succeeded")
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.Evaluation("f", true, eval.Resolution{Reason: eval.ReasonStatic})
	m.SyncStreamStarted("", "p")("normal_close")
	next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if h := m.Middleware("flagd", func(*http.Request) string { return "r" }, next); h == nil {
		t.Fatal("nil handler")
	}
}

func TestEvaluation(t *testing.T) {
	m, reg := newMetrics(t)
	m.Evaluation("f", true, eval.Resolution{Value: true, Variant: "on", Reason: eval.ReasonTargetingMatch})
	m.Evaluation("f", true, eval.Resolution{Value: true, Variant: "on", Reason: eval.ReasonTargetingMatch})
	m.Evaluation("f", true, eval.Resolution{Reason: eval.ReasonDisabled})
	m.Evaluation("f", true, eval.Resolution{Reason: eval.ReasonError, ErrorCode: eval.ErrorParse})
	m.Evaluation("user-controlled-key", false, eval.NotFound("user-controlled-key"))
	m.Evaluation("another-unknown", false, eval.NotFound("another-unknown"))
	want := map[string]float64{
		"feature_flag_flagd_impression_total{feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH,feature_flag_result_variant=on}": 2,
		"feature_flag_flagd_impression_total{feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=DISABLED,feature_flag_result_variant=}":          1,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH}":                 2,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=DISABLED}":                        1,
		"feature_flag_flagd_result_reason_total{error_type=PARSE_ERROR,feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=ERROR}":                1,
		// unknown keys never become label values
		"feature_flag_flagd_result_reason_total{error_type=FLAG_NOT_FOUND,feature_flag_key=,feature_flag_provider_name=flagd,feature_flag_reason=ERROR}": 2,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSyncStreams(t *testing.T) {
	m, reg := newMetrics(t)
	end1 := m.SyncStreamStarted("flagSetId=a", "p1")
	end2 := m.SyncStreamStarted("flagSetId=a", "p1")
	if got := gather(t, reg)["feature_flag_flagd_sync_active_streams{provider_id=p1,selector=flagSetId=a}"]; got != 2 {
		t.Fatalf("active streams = %v, want 2", got)
	}
	end1("normal_close")
	end2("client_disconnect")
	want := map[string]float64{
		"feature_flag_flagd_sync_active_streams{provider_id=p1,selector=flagSetId=a}":                                   0,
		"feature_flag_flagd_sync_stream_duration_seconds{provider_id=p1,reason=normal_close,selector=flagSetId=a}":      1,
		"feature_flag_flagd_sync_stream_duration_seconds{provider_id=p1,reason=client_disconnect,selector=flagSetId=a}": 1,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestMiddleware serves real requests and checks that status codes are the ones sent
// (flagd always records 200), sizes are counted, methods are bounded and that Flush
// and http.ResponseController reach the underlying writer.
func TestMiddleware(t *testing.T) {
	m, reg := newMetrics(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }) // implicit 200
	mux.HandleFunc("/missing", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.WriteHeader(http.StatusInternalServerError) // superfluous: the first code counts
	})
	mux.HandleFunc("/empty", func(http.ResponseWriter, *http.Request) {}) // nothing written: 200
	mux.HandleFunc("/stream", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
		_, _ = io.WriteString(w, "bc")
	})
	route := func(r *http.Request) string { return r.URL.Path }
	srv := httptest.NewUnstartedServer(m.Middleware("flagd", route, mux))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the superfluous WriteHeader is logged
	srv.Start()
	defer srv.Close()

	for _, rq := range []struct{ method, path string }{
		{"GET", "/ok"}, {"POST", "/ok"}, {"GET", "/missing"}, {"GET", "/empty"}, {"GET", "/stream"}, {"BREW", "/ok"},
	} {
		req, err := http.NewRequest(rq.method, srv.URL+rq.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}

	got := gather(t, reg)
	want := map[string]float64{}
	for _, s := range []struct {
		method, route, code string
		n                   float64
	}{
		{"GET", "/ok", "200", 1}, {"POST", "/ok", "200", 1}, {"_OTHER", "/ok", "200", 1},
		{"GET", "/missing", "404", 1}, {"GET", "/empty", "200", 1}, {"GET", "/stream", "200", 1},
	} {
		labels := "http_request_method=" + s.method + ",http_response_status_code=" + s.code + ",http_route=" + s.route + ",service_name=flagd,url_scheme=http"
		want["http_server_request_duration_seconds{"+labels+"}"] = s.n
		want["http_server_response_body_size_bytes{"+labels+"}"] = s.n
		want["http_server_active_requests{http_request_method="+s.method+",http_route="+s.route+",service_name=flagd,url_scheme=http}"] = 0
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	// response sizes: "hello" and "abc"
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "http_server_response_body_size_bytes" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "http_route" {
					sizes[l.GetValue()] += mt.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	if diff := cmp.Diff(map[string]float64{"/ok": 15, "/missing": 0, "/empty": 0, "/stream": 3}, sizes); diff != "" {
		t.Errorf("response sizes (-want +got):\n%s", diff)
	}
}

// TestMiddlewareManyLabelSets: more label sets than the middleware keeps
// instruments for (20 routes × 2 status codes, concurrently, in rounds) are each
// counted exactly: a set that was evicted is looked up again, never confused with
// another.
func TestMiddlewareManyLabelSets(t *testing.T) {
	m, reg := newMetrics(t)
	h := m.Middleware("flagd", func(r *http.Request) string { return r.URL.Path }, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("fail") {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 5 {
				for i := range 20 {
					target := fmt.Sprintf("/r%02d", (i+g*5+round)%20)
					if (i+g)%2 == 0 {
						target += "?fail"
					}
					h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, target, nil))
				}
			}
		})
	}
	wg.Wait()
	got := map[string]float64{}
	for k, v := range gather(t, reg) {
		if strings.HasPrefix(k, "http_server_request_duration_seconds") {
			got[k] = v
		}
	}
	want := map[string]float64{}
	for g := range 4 {
		for round := range 5 {
			for i := range 20 {
				code := "200"
				if (i+g)%2 == 0 {
					code = "400"
				}
				want[fmt.Sprintf("http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=%s,http_route=/r%02d,service_name=flagd,url_scheme=http}", code, (i+g*5+round)%20)]++
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
