package webhook

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts admissions by webhook and result and times them. A nil *Metrics
// records nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the admission metrics with reg:
// flagpole_admission_requests_total{webhook,result} (result: allowed, patched,
// denied, error) and flagpole_admission_duration_seconds{webhook}.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flagpole_admission_requests_total", Help: "Admission requests answered, by webhook and result (allowed, patched, denied, error).",
		}, []string{"webhook", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "flagpole_admission_duration_seconds", Help: "Time to answer an admission request, side effects included.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10},
		}, []string{"webhook"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records one answered admission.
func (m *Metrics) observe(webhook string, d Decision, took time.Duration) {
	if m == nil {
		return
	}
	result := "allowed"
	switch {
	case !d.Allowed && d.Code >= 500:
		result = "error"
	case !d.Allowed:
		result = "denied"
	case len(d.Patch) > 0:
		result = "patched"
	}
	m.requests.WithLabelValues(webhook, result).Inc()
	m.duration.WithLabelValues(webhook).Observe(took.Seconds())
}
