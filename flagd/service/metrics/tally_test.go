package metrics

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// TestTallyCountsExactly runs answers on many goroutines while the metrics are
// gathered and the tally is retired halfway: every evaluation reaches the counters
// once, those counted in shards and those counted directly after the retirement,
// and slots that never counted create no series.
func TestTallyCountsExactly(t *testing.T) {
	m, reg := newMetrics(t)
	slots := []TallySlot{
		{Key: "static", Variant: "on", Reason: eval.ReasonStatic},
		{Key: "off", Reason: eval.ReasonDisabled},
		{Key: "rule", Variant: "a", Reason: eval.ReasonTargetingMatch},
		{Key: "rule", Variant: "a", Reason: eval.ReasonDefault},
		{Key: "rule", Variant: "b", Reason: eval.ReasonTargetingMatch},
		{Key: "rule", Variant: "b", Reason: eval.ReasonDefault}, // never counted
	}
	tally := m.NewTally(slots, 2)
	const workers, answers = 8, 500
	var direct atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range answers {
				if w == 0 && i == answers/2 {
					tally.Retire()
				}
				slot := 2 + (i % 3) // rule: a match, a default, b match
				sh := tally.Acquire()
				if sh == nil {
					direct.Add(1)
					for _, s := range []int{0, 1, slot} {
						res := eval.Resolution{Variant: slots[s].Variant, Reason: slots[s].Reason}
						m.EvaluationCounters(slots[s].Key, true, res).Inc()
					}
					continue
				}
				sh.Count(slot)
				sh.Answer()
				tally.Release(sh)
			}
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			gather(t, reg)
		}
	}()
	wg.Wait()
	<-done
	if direct.Load() == 0 {
		t.Fatal("no answer was counted after the retirement: the test does not reach the direct path")
	}
	const total = workers * answers
	per := func(r int) float64 { // answers of a rule slot: i%3 == r
		n := 0
		for i := range answers {
			if i%3 == r {
				n++
			}
		}
		return float64(workers * n)
	}
	want := map[string]float64{
		"feature_flag_flagd_impression_total{feature_flag_key=static,feature_flag_provider_name=flagd,feature_flag_reason=STATIC,feature_flag_result_variant=on}":       total,
		"feature_flag_flagd_impression_total{feature_flag_key=off,feature_flag_provider_name=flagd,feature_flag_reason=DISABLED,feature_flag_result_variant=}":          total,
		"feature_flag_flagd_impression_total{feature_flag_key=rule,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH,feature_flag_result_variant=a}": per(0),
		"feature_flag_flagd_impression_total{feature_flag_key=rule,feature_flag_provider_name=flagd,feature_flag_reason=DEFAULT,feature_flag_result_variant=a}":         per(1),
		"feature_flag_flagd_impression_total{feature_flag_key=rule,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH,feature_flag_result_variant=b}": per(2),
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=static,feature_flag_provider_name=flagd,feature_flag_reason=STATIC}":                       total,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=off,feature_flag_provider_name=flagd,feature_flag_reason=DISABLED}":                        total,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=rule,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH}":                per(0) + per(2),
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=rule,feature_flag_provider_name=flagd,feature_flag_reason=DEFAULT}":                        per(1),
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if sh := tally.Acquire(); sh != nil {
		t.Error("a retired tally handed out a shard")
	}
	m.tallyMu.Lock()
	live := len(m.tallies)
	m.tallyMu.Unlock()
	if live != 0 {
		t.Errorf("%d tallies still flushed at every gathering after their retirement", live)
	}
}

// TestTallyFailedSlot counts a fixed failure (a disabled flag's or a broken
// default's answer) on the reason counter alone, as Evaluation does.
func TestTallyFailedSlot(t *testing.T) {
	m, reg := newMetrics(t)
	tally := m.NewTally([]TallySlot{{Key: "broken", Reason: eval.ReasonError, ErrorCode: eval.ErrorGeneral}}, 1)
	for range 3 {
		sh := tally.Acquire()
		sh.Answer()
		tally.Release(sh)
	}
	want := map[string]float64{
		"feature_flag_flagd_result_reason_total{error_type=GENERAL,feature_flag_key=broken,feature_flag_provider_name=flagd,feature_flag_reason=ERROR}": 3,
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	var nilTally *Tally
	if sh := nilTally.Acquire(); sh != nil {
		t.Error("a nil tally handed out a shard")
	}
	nilTally.Release(nil)
	nilTally.Retire()
	var nilMetrics *Metrics
	if nilMetrics.NewTally(nil, 0) != nil {
		t.Error("nil metrics made a tally")
	}
}

// TestTallyShardsBounded: a tally makes at most shardsPerCore shards a core; when
// all are held, Acquire says so (nil) and the caller counts directly.
func TestTallyShardsBounded(t *testing.T) {
	m, _ := newMetrics(t)
	tally := m.NewTally([]TallySlot{{Key: "f", Variant: "on", Reason: eval.ReasonStatic}}, 1)
	var held []*TallyShard
	for {
		sh := tally.Acquire()
		if sh == nil {
			break
		}
		held = append(held, sh)
		if len(held) > tally.max {
			t.Fatalf("%d shards handed out, at most %d", len(held), tally.max)
		}
	}
	if len(held) != tally.max {
		t.Errorf("%d shards before Acquire declined, want %d", len(held), tally.max)
	}
	tally.Release(held[0])
	if sh := tally.Acquire(); sh != held[0] {
		t.Error("a released shard was not handed out again")
	}
}
