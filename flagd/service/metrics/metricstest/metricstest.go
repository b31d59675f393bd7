// Package metricstest reads the evaluation metrics back in tests: every counter of
// flagd's evaluation families by name and labels, so that two ways of counting the
// same evaluations can be compared series by series.
package metricstest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// EvaluationSeries returns every counter of reg's feature_flag_flagd_* families,
// keyed by the family's name and the series' labels ("name,label=value,...").
func EvaluationSeries(t testing.TB, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "feature_flag_flagd_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			var key strings.Builder
			key.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				key.WriteString("," + l.GetName() + "=" + l.GetValue())
			}
			out[key.String()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// SameEvaluations fails t unless got holds exactly the evaluation counters of
// reference (which must hold at least minSeries series, or the test covers too
// little to mean anything); what names got's way of counting in the diff.
func SameEvaluations(t testing.TB, reference, got prometheus.Gatherer, minSeries int, what string) {
	t.Helper()
	want := EvaluationSeries(t, reference)
	if len(want) < minSeries {
		t.Fatalf("only %d series: the flags do not cover the outcomes", len(want))
	}
	if diff := cmp.Diff(want, EvaluationSeries(t, got)); diff != "" {
		t.Errorf("(-each flag alone +%s):\n%s", what, diff)
	}
}
