package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// EvaluationCounters are the counters one outcome of one flag's evaluation
// increments (what Evaluation records), looked up once: callers that evaluate the
// same flags over and over (OFREP bulk, 1,000 flags a request) keep them per flag
// and outcome instead of hashing four label values twice per flag and request. The
// zero value counts nothing.
type EvaluationCounters struct {
	reasons, impressions prometheus.Counter
}

// EvaluationCounters returns the counters Evaluation(key, exists, r) increments.
func (m *Metrics) EvaluationCounters(key string, exists bool, r eval.Resolution) EvaluationCounters {
	if m == nil {
		return EvaluationCounters{}
	}
	if !exists {
		key = ""
	}
	if r.Failed() {
		return EvaluationCounters{reasons: m.reasons.WithLabelValues(key, providerName, string(eval.ReasonError), string(r.ErrorCode))}
	}
	return EvaluationCounters{
		reasons:     m.reasons.WithLabelValues(key, providerName, string(r.Reason), ""),
		impressions: m.impressions.WithLabelValues(key, r.Variant, providerName, string(r.Reason)),
	}
}

// Inc records one evaluation.
func (c EvaluationCounters) Inc() {
	if c.reasons != nil {
		c.reasons.Inc()
	}
	if c.impressions != nil {
		c.impressions.Inc()
	}
}
