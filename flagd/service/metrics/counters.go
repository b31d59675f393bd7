package metrics

import (
	"sync/atomic"

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

// FlagCounters keeps the EvaluationCounters of the outcomes of one flag seen so far
// (copied on write: a flag has a few), so that counting an evaluation compares
// three strings instead of hashing four label values. The zero value is empty;
// it is safe for concurrent use.
type FlagCounters struct {
	cur atomic.Pointer[[]outcomeCounters]
}

// outcomeCounters are the counters of one outcome of a flag.
type outcomeCounters struct {
	variant  string
	reason   eval.Reason
	code     eval.ErrorCode
	counters EvaluationCounters
}

// Count records an evaluation res of the flag key (which exists) in m, as
// m.Evaluation(key, true, res) does.
func (fc *FlagCounters) Count(m *Metrics, key string, res eval.Resolution) {
	for {
		cur := fc.cur.Load()
		if cur != nil {
			for i := range *cur {
				if oc := &(*cur)[i]; oc.variant == res.Variant && oc.reason == res.Reason && oc.code == res.ErrorCode {
					oc.counters.Inc()
					return
				}
			}
		}
		var next []outcomeCounters
		if cur != nil {
			next = append(next, *cur...)
		}
		next = append(next, outcomeCounters{variant: res.Variant, reason: res.Reason, code: res.ErrorCode, counters: m.EvaluationCounters(key, true, res)})
		if fc.cur.CompareAndSwap(cur, &next) {
			next[len(next)-1].counters.Inc()
			return
		}
	}
}
