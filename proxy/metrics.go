package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	streams   prometheus.Gauge
	flags     prometheus.Gauge
	changes   prometheus.Counter
	messages  prometheus.Counter
	refused   *prometheus.CounterVec
	decisions *prometheus.CounterVec
}

// NewMetrics registers the proxy's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flagpole_flagd_proxy_streams",
			Help: "Open SyncFlags streams."}),
		flags: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flagpole_flagd_proxy_subscribed_featureflags",
			Help: "FeatureFlags at least one stream follows."}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{Name: "flagpole_flagd_proxy_changes_total",
			Help: "FeatureFlag changes encoded for their streams (once per change, however many streams follow the FeatureFlag)."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "flagpole_flagd_proxy_messages_total",
			Help: "Flag documents handed to streams."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flagpole_flagd_proxy_refused_total",
			Help: "RPCs refused, by gRPC code (InvalidArgument, PermissionDenied, NotFound, Unavailable, ResourceExhausted)."}, []string{"code"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flagpole_flagd_proxy_auth_decisions_total",
			Help: "Caller checks, by check (token: TokenReview, access: SubjectAccessReview), result (allowed, denied, error) and whether the cache (or a concurrent review) answered."},
			[]string{"check", "result", "cached"}),
	}
	for _, c := range []prometheus.Collector{m.streams, m.flags, m.changes, m.messages, m.refused, m.decisions} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) streamOpened(delta float64) {
	if m != nil {
		m.streams.Add(delta)
	}
}

func (m *Metrics) followed(delta float64) {
	if m != nil {
		m.flags.Add(delta)
	}
}

func (m *Metrics) changed(streams int) {
	if m != nil {
		m.changes.Inc()
		m.messages.Add(float64(streams))
	}
}

func (m *Metrics) refusedRPC(code string) {
	if m != nil {
		m.refused.WithLabelValues(code).Inc()
	}
}

func (m *Metrics) authDecision(check string, allowed bool, err error, cached bool) {
	if m == nil {
		return
	}
	result := "allowed"
	switch {
	case err != nil:
		result = "error"
	case !allowed:
		result = "denied"
	}
	c := "false"
	if cached {
		c = "true"
	}
	m.decisions.WithLabelValues(check, result, c).Inc()
}
