package metrics

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

var _ sdkmetric.Producer = (*Producer)(nil)

// newOTelMetrics returns Metrics and a manual OTel reader fed by its producer.
func newOTelMetrics(t *testing.T) (*Metrics, *prometheus.Registry, *sdkmetric.ManualReader) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(m.OTelProducer()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return m, reg, reader
}

// otelSeries is one collected OTel series: scope, unit, kind and its value (sum,
// or the sample count of a histogram).
type otelSeries struct {
	Scope, Unit, Kind string
	Value             float64
}

// collect returns "name{key=value,...}" → series for every data point, and the
// histogram data points by series key.
func collect(t *testing.T, reader *sdkmetric.ManualReader) (map[string]otelSeries, map[string]metricdata.HistogramDataPoint[float64]) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out, hists := map[string]otelSeries{}, map[string]metricdata.HistogramDataPoint[float64]{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			switch d := mt.Data.(type) {
			case metricdata.Sum[int64]:
				kind := "updowncounter"
				if d.IsMonotonic {
					kind = "counter"
				}
				if d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: temporality %v", mt.Name, d.Temporality)
				}
				for _, p := range d.DataPoints {
					if p.StartTime.IsZero() || p.Time.Before(p.StartTime) {
						t.Errorf("%s: start %v, time %v", mt.Name, p.StartTime, p.Time)
					}
					out[seriesKey(mt.Name, p.Attributes.ToSlice())] = otelSeries{sm.Scope.Name, mt.Unit, kind, float64(p.Value)}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					k := seriesKey(mt.Name, p.Attributes.ToSlice())
					out[k] = otelSeries{sm.Scope.Name, mt.Unit, "histogram", float64(p.Count)}
					hists[k] = p
				}
			default:
				t.Fatalf("%s: unexpected data %T", mt.Name, mt.Data)
			}
		}
	}
	return out, hists
}

func seriesKey(name string, kvs []attribute.KeyValue) string {
	parts := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		parts = append(parts, string(kv.Key)+"="+kv.Value.String())
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// TestOTelEvaluation: one call feeds both exports; the OTel series carry flagd's
// names, units and keys, and unknown flag keys never become attribute values.
func TestOTelEvaluation(t *testing.T) {
	m, reg, reader := newOTelMetrics(t)
	m.Evaluation("f", true, eval.Resolution{Value: true, Variant: "on", Reason: eval.ReasonTargetingMatch})
	m.Evaluation("f", true, eval.Resolution{Value: true, Variant: "on", Reason: eval.ReasonTargetingMatch})
	m.Evaluation("f", true, eval.Resolution{Reason: eval.ReasonDisabled})
	m.Evaluation("f", true, eval.Resolution{Reason: eval.ReasonError, ErrorCode: eval.ErrorParse})
	m.Evaluation("user-controlled-key", false, eval.NotFound("user-controlled-key"))
	m.Evaluation("another-unknown", false, eval.NotFound("another-unknown"))

	got, _ := collect(t, reader)
	imp := func(v float64) otelSeries { return otelSeries{"flagd", "{impression}", "counter", v} }
	rsn := func(v float64) otelSeries { return otelSeries{"flagd", "{reason}", "counter", v} }
	want := map[string]otelSeries{
		"feature_flag.flagd.impression{feature_flag.key=f,feature_flag.provider.name=flagd,feature_flag.reason=TARGETING_MATCH,feature_flag.result.variant=on}": imp(2),
		"feature_flag.flagd.impression{feature_flag.key=f,feature_flag.provider.name=flagd,feature_flag.reason=DISABLED}":                                       imp(1),
		"feature_flag.flagd.result.reason{feature_flag.key=f,feature_flag.provider.name=flagd,feature_flag.reason=TARGETING_MATCH}":                             rsn(2),
		"feature_flag.flagd.result.reason{feature_flag.key=f,feature_flag.provider.name=flagd,feature_flag.reason=DISABLED}":                                    rsn(1),
		"feature_flag.flagd.result.reason{error.type=PARSE_ERROR,feature_flag.key=f,feature_flag.provider.name=flagd,feature_flag.reason=ERROR}":                rsn(1),
		"feature_flag.flagd.result.reason{error.type=FLAG_NOT_FOUND,feature_flag.provider.name=flagd,feature_flag.reason=ERROR}":                                rsn(2),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("OTel (-want +got):\n%s", diff)
	}
	// Prometheus records as before, and the Go and process collectors of the served
	// registry are not exported over OTLP
	reg.MustRegister(collectors.NewGoCollector())
	if n := gather(t, reg)["feature_flag_flagd_impression_total{feature_flag_key=f,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH,feature_flag_result_variant=on}"]; n != 2 {
		t.Errorf("Prometheus impressions = %v, want 2", n)
	}
	got, _ = collect(t, reader)
	for k := range got {
		if strings.HasPrefix(k, "go_") {
			t.Errorf("exported over OTLP: %s", k)
		}
	}
}

func TestOTelSyncStreams(t *testing.T) {
	m, _, reader := newOTelMetrics(t)
	end1 := m.SyncStreamStarted("flagSetId=a", "p1")
	end2 := m.SyncStreamStarted("flagSetId=a", "p1")
	got, _ := collect(t, reader)
	if s := got["feature_flag.flagd.sync.active_streams{provider_id=p1,selector=flagSetId=a}"]; s != (otelSeries{"flagd", "{stream}", "updowncounter", 2}) {
		t.Fatalf("active streams = %+v, want 2 {stream}", s)
	}
	end1("normal_close")
	end2("client_disconnect")
	got, hists := collect(t, reader)
	want := map[string]otelSeries{
		"feature_flag.flagd.sync.active_streams{provider_id=p1,selector=flagSetId=a}":                           {"flagd", "{stream}", "updowncounter", 0},
		"feature_flag.flagd.sync.stream.duration{provider_id=p1,reason=normal_close,selector=flagSetId=a}":      {"flagd", "s", "histogram", 1},
		"feature_flag.flagd.sync.stream.duration{provider_id=p1,reason=client_disconnect,selector=flagSetId=a}": {"flagd", "s", "histogram", 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	p := hists["feature_flag.flagd.sync.stream.duration{provider_id=p1,reason=normal_close,selector=flagSetId=a}"]
	if diff := cmp.Diff(syncBuckets, p.Bounds); diff != "" {
		t.Errorf("sync buckets (-want +got):\n%s", diff)
	}
	// a stream of well under 30 s is in the first bucket
	if diff := cmp.Diff([]uint64{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, p.BucketCounts); diff != "" {
		t.Errorf("bucket counts (-want +got):\n%s", diff)
	}
}

func TestOTelMiddleware(t *testing.T) {
	m, _, reader := newOTelMetrics(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(make([]byte, 5000)) })
	mux.HandleFunc("/missing", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) })
	srv := httptest.NewServer(m.Middleware("flagd", func(r *http.Request) string { return r.URL.Path }, mux))
	defer srv.Close()
	for _, path := range []string{"/ok", "/ok", "/big", "/missing"} {
		res, err := srv.Client().Post(srv.URL+path, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	got, hists := collect(t, reader)
	attrs := func(route, code string) string {
		return "{http.request.method=POST,http.response.status_code=" + code + ",http.route=" + route + ",service.name=flagd,url.scheme=http}"
	}
	active := func(route string) string {
		return "http.server.active_requests{http.request.method=POST,http.route=" + route + ",service.name=flagd,url.scheme=http}"
	}
	want := map[string]otelSeries{
		"http.server.request.duration" + attrs("/ok", "200"):        {"flagd", "s", "histogram", 2},
		"http.server.response.body.size" + attrs("/ok", "200"):      {"flagd", "By", "histogram", 2},
		"http.server.request.duration" + attrs("/big", "200"):       {"flagd", "s", "histogram", 1},
		"http.server.response.body.size" + attrs("/big", "200"):     {"flagd", "By", "histogram", 1},
		"http.server.request.duration" + attrs("/missing", "404"):   {"flagd", "s", "histogram", 1},
		"http.server.response.body.size" + attrs("/missing", "404"): {"flagd", "By", "histogram", 1},
		active("/ok"):      {"flagd", "{request}", "updowncounter", 0},
		active("/big"):     {"flagd", "{request}", "updowncounter", 0},
		active("/missing"): {"flagd", "{request}", "updowncounter", 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	d := hists["http.server.request.duration"+attrs("/ok", "200")]
	if diff := cmp.Diff(prometheus.DefBuckets, d.Bounds); diff != "" {
		t.Errorf("duration buckets (-want +got):\n%s", diff)
	}
	// sizes 5 and 5 in (-inf, 100], 5000 in (1000, 10000]
	sizeOK := hists["http.server.response.body.size"+attrs("/ok", "200")]
	sizeBig := hists["http.server.response.body.size"+attrs("/big", "200")]
	if diff := cmp.Diff(prometheus.ExponentialBuckets(100, 10, 8), sizeOK.Bounds); diff != "" {
		t.Errorf("size buckets (-want +got):\n%s", diff)
	}
	type counts struct {
		OK, Big []uint64
		Sums    []float64
	}
	if diff := cmp.Diff(counts{
		OK:   []uint64{2, 0, 0, 0, 0, 0, 0, 0, 0},
		Big:  []uint64{0, 0, 1, 0, 0, 0, 0, 0, 0},
		Sums: []float64{10, 5000},
	}, counts{sizeOK.BucketCounts, sizeBig.BucketCounts, []float64{sizeOK.Sum, sizeBig.Sum}}); diff != "" {
		t.Errorf("size histograms (-want +got):\n%s", diff)
	}
}

func TestNilMetricsProduceNothing(t *testing.T) {
	var m *Metrics
	got, err := m.OTelProducer().Produce(context.Background())
	if err != nil || got != nil {
		t.Fatalf("Produce = %v, %v; want nothing", got, err)
	}
}
