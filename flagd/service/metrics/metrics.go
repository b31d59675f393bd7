// Package metrics records flagd's metrics under flagd's names (HTTP server duration,
// size and active requests, evaluation impressions and reasons, sync streams), with
// real status codes and bounded label cardinality: flag keys appear only for flags
// that exist. Measurements are recorded once, in Prometheus instruments served on
// /metrics; OTelProducer hands the same data to an OTLP exporter under flagd's OTel
// names, units and attribute keys, so OTLP costs nothing per request.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

const providerName = "flagd"

// Metrics holds the instruments. The zero value is not usable; a nil *Metrics
// records nothing, so listeners can run without metrics in tests.
type Metrics struct {
	own         *prometheus.Registry // the instruments below only, for OTelProducer
	created     time.Time
	duration    *prometheus.HistogramVec
	size        *prometheus.HistogramVec
	active      *prometheus.GaugeVec
	impressions *prometheus.CounterVec
	reasons     *prometheus.CounterVec
	syncActive  *prometheus.GaugeVec
	syncStreams *prometheus.HistogramVec
	tallyMu     sync.Mutex          // guards tallies and their flushes
	tallies     map[*Tally]struct{} // live tallies (NewTally, Tally.Retire)
}

// syncBuckets are the bounds of the sync stream duration histogram (flagd's).
var syncBuckets = []float64{30, 60, 120, 300, 480, 600, 1200, 1800, 3600, 10800}

// New creates the instruments and registers them with reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	httpLabels := []string{"service_name", "http_route", "http_request_method", "http_response_status_code", "url_scheme"}
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_server_request_duration_seconds", Help: "Duration of HTTP server requests.",
			Buckets: prometheus.DefBuckets,
		}, httpLabels),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_server_response_body_size_bytes", Help: "Size of HTTP server response bodies.",
			Buckets: prometheus.ExponentialBuckets(100, 10, 8),
		}, httpLabels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "http_server_active_requests", Help: "Number of active HTTP server requests.",
		}, []string{"service_name", "http_route", "http_request_method", "url_scheme"}),
		impressions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feature_flag_flagd_impression_total", Help: "Successful flag evaluations.",
		}, []string{"feature_flag_key", "feature_flag_result_variant", "feature_flag_provider_name", "feature_flag_reason"}),
		reasons: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "feature_flag_flagd_result_reason_total", Help: "Flag evaluations by reason.",
		}, []string{"feature_flag_key", "feature_flag_provider_name", "feature_flag_reason", "error_type"}),
		syncActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "feature_flag_flagd_sync_active_streams", Help: "Open flag sync streams.",
		}, []string{"selector", "provider_id"}),
		syncStreams: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "feature_flag_flagd_sync_stream_duration_seconds", Help: "Duration of flag sync streams.",
			Buckets: syncBuckets,
		}, []string{"selector", "provider_id", "reason"}),
	}
	m.tallies = map[*Tally]struct{}{}
	cs := []prometheus.Collector{m.duration, m.size, m.active, flushingVec{m.impressions, m}, flushingVec{m.reasons, m}, m.syncActive, m.syncStreams}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	own, err := ownRegistry(cs)
	if err != nil {
		return nil, err
	}
	m.own, m.created = own, time.Now()
	return m, nil
}

// Evaluation records one flag evaluation. exists says whether the flag key is a
// served flag: unknown keys are recorded without their key, so callers cannot grow
// the label set.
func (m *Metrics) Evaluation(key string, exists bool, r eval.Resolution) {
	if m == nil {
		return
	}
	if !exists {
		key = ""
	}
	if r.Failed() {
		m.reasons.WithLabelValues(key, providerName, string(eval.ReasonError), string(r.ErrorCode)).Inc()
		return
	}
	m.reasons.WithLabelValues(key, providerName, string(r.Reason), "").Inc()
	m.impressions.WithLabelValues(key, r.Variant, providerName, string(r.Reason)).Inc()
}

// SyncStreamStarted records an open sync stream and returns the function to call when
// it ends, with the reason (normal_close, deadline_exceeded, client_disconnect, error).
func (m *Metrics) SyncStreamStarted(selector, providerID string) func(reason string) {
	if m == nil {
		return func(string) {}
	}
	start := time.Now()
	g := m.syncActive.WithLabelValues(selector, providerID)
	g.Inc()
	return func(reason string) {
		g.Dec()
		m.syncStreams.WithLabelValues(selector, providerID, reason).Observe(time.Since(start).Seconds())
	}
}

// Middleware records duration, response size and active requests of an HTTP
// listener. route names the request for the http_route label (keep it bounded: a
// route template or a fixed set of procedure names, never raw user input). The
// instruments of the label sets in use are kept per middleware, so that a request
// does not hash its label values.
func (m *Metrics) Middleware(service string, route func(*http.Request) string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	var actives labelCache[activeKey, prometheus.Gauge]
	var observers labelCache[observerKey, httpObservers]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ak := activeKey{route: route(r), method: MethodLabel(r.Method), tls: r.TLS != nil}
		active, ok := actives.get(ak)
		if !ok {
			active = m.active.WithLabelValues(service, ak.route, ak.method, ak.scheme())
			actives.put(ak, active)
		}
		active.Inc()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		active.Dec()
		obsKey := observerKey{activeKey: ak, code: rec.status}
		obs, ok := observers.get(obsKey)
		if !ok {
			code := strconv.Itoa(obsKey.code)
			obs = httpObservers{
				duration: m.duration.WithLabelValues(service, ak.route, ak.method, code, ak.scheme()),
				size:     m.size.WithLabelValues(service, ak.route, ak.method, code, ak.scheme()),
			}
			observers.put(obsKey, obs)
		}
		obs.duration.Observe(time.Since(start).Seconds())
		obs.size.Observe(float64(rec.bytes))
	})
}

// activeKey is the label set of the active requests gauge (the service is the
// middleware's).
type activeKey struct {
	route, method string
	tls           bool
}

func (k activeKey) scheme() string {
	if k.tls {
		return "https"
	}
	return "http"
}

// observerKey is the label set of the duration and size histograms.
type observerKey struct {
	activeKey
	code int
}

// httpObservers are the duration and size histograms of one label set.
type httpObservers struct{ duration, size prometheus.Observer }

// labelCache keeps the instruments of the last few label sets a middleware used
// (a listener uses a handful: its routes, POST, 200 and a few error codes), looked
// up by comparing keys, without hashing or allocating; a label set not among them
// is looked up in its vector and replaces the oldest.
type labelCache[K comparable, V any] struct {
	slots [8]atomic.Pointer[labelEntry[K, V]]
	next  atomic.Uint32
}

type labelEntry[K comparable, V any] struct {
	key K
	val V
}

// get returns the value kept for key.
func (c *labelCache[K, V]) get(key K) (v V, ok bool) {
	for i := range c.slots {
		if e := c.slots[i].Load(); e != nil && e.key == key {
			return e.val, true
		}
	}
	return v, false
}

// put keeps v for key in place of the oldest entry.
func (c *labelCache[K, V]) put(key K, v V) {
	c.slots[c.next.Add(1)%uint32(len(c.slots))].Store(&labelEntry[K, V]{key: key, val: v})
}

// MethodLabel bounds the http_request_method label (and http.request.method of
// spans): net/http accepts any token as a method, so unknown ones are recorded as
// "_OTHER" (OpenTelemetry semantic conventions).
func MethodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return method
	}
	return "_OTHER"
}

// statusRecorder captures the status code and body size; it forwards Flush and
// exposes the underlying writer for http.ResponseController (streams need both).
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Flush forwards to the underlying writer.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
