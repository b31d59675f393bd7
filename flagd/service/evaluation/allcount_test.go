package evaluation

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics/metricstest"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// allCountsExtra adds to sharedRulesDoc (which has a disabled flag) a static one, a
// type mismatch and a code default, so that ResolveAll counts every kind of outcome.
const allCountsExtra = `,
  "static":   {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a"},
  "mismatch": {"state": "ENABLED", "variants": {"s": "text", "n": 1}, "defaultVariant": "s", "targeting": {"if": [{"var": "vip"}, "n", "s"]}},
  "code-def": {"state": "ENABLED", "variants": {"on": true, "off": false}, "targeting": {"if": [{"var": "vip"}, "on", null]}}
}}`

// TestResolveAllCountsEveryEvaluation: ResolveAll calls on several goroutines, in
// both services, through the item path and from the list's pieces (gRPC), while snapshots replace the rule groups (and retire their
// tallies) and the metrics are gathered, count exactly what evaluating each flag
// alone as ResolveAll does counts: per flag, variant, reason and error.
func TestResolveAllCountsEveryEvaluation(t *testing.T) {
	doc := strings.TrimSuffix(strings.TrimSpace(sharedRulesDoc), "}}") + allCountsExtra
	st := storeOf(t, "shared", []byte(doc))
	reg, refReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := metrics.New(refReg)
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(Options{Store: st, Log: zerolog.Nop(), Metrics: m}, false)
	all, _ := store.ParseSelector("")
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for r := range 30 {
				i := w*30 + r
				ctx, err := structpb.NewStruct(map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "vip": i%3 == 0,
					"email": fmt.Sprintf("u%d@%s", i, []string{"example.com", "other.org"}[i%2])})
				if err != nil {
					t.Error(err)
					return
				}
				a := []api{apiV1, apiSchemaV1}[i%2]
				snap := st.Current()
				if i%4 < 2 { // the item path
					svc.items.put(svc.resolveAllIn(all, nil, ctx, a))
				} else { // gRPC's answer from the list's pieces
					p := svc.newAllPass(all, nil, ctx, a)
					if _, _, ok := p.appendWire(nil, p.wire()); !ok {
						t.Error("appendWire failed")
					}
					p.done()
				}
				countAlone(ref, snap.List(all), ctx.AsMap(), a) // a snapshot with the same outcomes
			}
		})
	}
	wg.Go(func() {
		for v := range 10 {
			// the same outcomes under another flag-set metadata: a new snapshot
			if err := st.Apply("shared", []byte(strings.Replace(doc, `"flags": {`, fmt.Sprintf(`"metadata": {"version": "%d"}, "flags": {`, v), 1))); err != nil {
				t.Error(err)
				return
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	metricstest.SameEvaluations(t, refReg, reg, 15, "ResolveAll")
	// a newer snapshot retires the rule groups' tallies of the one before
	snap := st.Current()
	old := svc.cache.ruleGroups(snap.Generation, all, snap.List(all))
	if sh := old.tally.Acquire(); sh == nil {
		t.Fatal("the current rule groups do not tally")
	} else {
		old.tally.Release(sh)
	}
	if err := st.Apply("shared", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	svc.items.put(svc.resolveAllIn(all, nil, nil, apiV1))
	if sh := old.tally.Acquire(); sh != nil {
		t.Error("the tally of a replaced snapshot's rule groups was not retired")
	}
}

// countAlone counts in m what resolveAllIn counts for list, flag by flag.
func countAlone(m *metrics.Metrics, list []*store.Entry, ctx map[string]any, a api) {
	for _, e := range list {
		f := e.Flag
		if f.Disabled() {
			m.Evaluation(f.Key, true, f.EvaluateAs(eval.TypeAny, ctx, nil))
			continue
		}
		if t := defaultType(f); t != eval.TypeAny || a != apiV1 {
			m.Evaluation(f.Key, true, f.EvaluateAs(t, ctx, nil))
		}
	}
}
