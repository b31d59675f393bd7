package ofrep

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics/metricstest"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// planDoc has every kind of answer a bulk request holds, in two flag sets.
const planDoc = `{
  "metadata": {"flagSetId": "set-a", "version": "1"},
  "$evaluators": {"isExample": {"ends_with": [{"var": "email"}, "@example.com"]}},
  "flags": {
    "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"owner": "x", "weight": 2.5}},
    "static-str":  {"state": "ENABLED", "variants": {"html": "<b>&\"x\"</b>"}, "defaultVariant": "html"},
    "static-num":  {"state": "ENABLED", "variants": {"big": 1e21, "small": 1e-7}, "defaultVariant": "small"},
    "static-obj":  {"state": "ENABLED", "variants": {"o": {"z": 1, "a": [1, "two", null, true]}}, "defaultVariant": "o"},
    "targeted":    {"state": "ENABLED", "variants": {"yes": "yes", "no": "no"}, "defaultVariant": "no", "targeting": {"if": [{"$ref": "isExample"}, "yes", null]}},
    "rollout":     {"state": "ENABLED", "variants": {"a": {"k": "a"}, "b": {"k": "b"}}, "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}},
    "code-default-targeted": {"state": "ENABLED", "variants": {"on": true, "off": false}, "targeting": {"if": [{"var": "vip"}, "on", null]}},
    "number-targeted": {"state": "ENABLED", "variants": {"one": 1, "two": 2.5}, "defaultVariant": "one", "targeting": {"if": [{"var": "vip"}, "two", "one"]}},
    "disabled":    {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    "no-default":  {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "parse-error": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"$ref": "missing"}},
    "general-error": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": [true, "nope"]}},
    "null-variant": {"state": "ENABLED", "variants": {"n": null}, "defaultVariant": "n"},
    "null-targeted": {"state": "ENABLED", "variants": {"n": null, "v": "v"}, "defaultVariant": "v", "targeting": {"if": [{"var": "vip"}, "n", "v"]}},
    "targeted-inline": {"state": "ENABLED", "variants": {"yes": {"x": 1}, "no": "NO"}, "defaultVariant": "no", "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "yes", null]}},
    "rollout-2":   {"state": "ENABLED", "variants": {"a": {"k": "a"}, "b": {"k": "b"}}, "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}},
    "keyed-a":     {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "keyed-a"]}, "on", "off"]}},
    "keyed-b":     {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "keyed-a"]}, "on", "off"]}},
    "parse-error-2": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"$ref": "missing"}},
    "vip-string":  {"state": "ENABLED", "variants": {"on": "ON"}, "targeting": {"if": [{"var": "vip"}, "on", null]}}
  }
}`

const planDocB = `{"flags": [
  {"key": "static-bool", "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "metadata": {"flagSetId": "set-b"}},
  {"key": "b-targeted", "state": "ENABLED", "variants": {"x": "x", "y": "y"}, "defaultVariant": "x", "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "y", "x"]}, "metadata": {"flagSetId": "set-b"}}
]}`

func planStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.New([]string{"file:a.json", "file:b.json"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply("file:a.json", []byte(planDoc)); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply("file:b.json", []byte(planDocB)); err != nil {
		t.Fatal(err)
	}
	return st
}

// referenceBulk is the bulk body as the encoder writes it flag by flag, without
// a plan (the answer before plans existed).
func referenceBulk(st *store.Store, sel store.Selector, ctx map[string]any) string {
	enc := &encoder{}
	refl := reflectionOf(sel)
	enc.buf = append(enc.buf, `{"flags":[`...)
	for i, e := range st.Current().List(sel) {
		if i > 0 {
			enc.buf = append(enc.buf, ',')
		}
		enc.evaluation(e.Flag.Key, e.Flag.EvaluateAs(eval.TypeAny, ctx, nil), refl)
	}
	enc.buf = append(enc.buf, `],"metadata":`...)
	enc.metadata(refl, nil)
	return string(append(enc.buf, '}'))
}

func postBulk(t *testing.T, h http.Handler, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, BulkRoute, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestBulkPlanMatchesEncoder: answers assembled from plans are the bytes the
// encoder writes flag by flag, for every selector and a range of contexts, twice
// (the second time from the cached plan and counters).
func TestBulkPlanMatchesEncoder(t *testing.T) {
	st := planStore(t)
	svc := New(Options{Store: st, Log: zerolog.Nop(), Enricher: &service.Enricher{Static: map[string]string{"env": "prod"}}})
	contexts := []string{
		`{}`, `{"context":{}}`, `{"context":{"email":"a@example.com"}}`, `{"context":{"email":"a@other.org","targetingKey":"u-1"}}`,
		`{"context":{"vip":true,"tier":"gold","targetingKey":"u-2"}}`, `{"context":{"vip":1,"targetingKey":"u-3"}}`,
	}
	for _, selector := range []string{"", "flagSetId=set-a", "flagSetId=set-b", "source=file:b.json", "flagSetId=none"} {
		sel, err := store.ParseSelector(selector)
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range contexts {
			var req struct {
				Context map[string]any `json:"context"`
			}
			_ = json.Unmarshal([]byte(body), &req)
			want := referenceBulk(st, sel, svc.opts.Enricher.Merge(req.Context, nil))
			for round := range 2 {
				w := postBulk(t, svc.Handler(), body, map[string]string{"Flagd-Selector": selector})
				if w.Code != 200 {
					t.Fatalf("selector %q, %s: status %d", selector, body, w.Code)
				}
				if diff := cmp.Diff(want, w.Body.String()); diff != "" {
					t.Errorf("selector %q, %s, round %d (-reference +plan):\n%s", selector, body, round, diff)
				}
			}
		}
	}
}

// TestBulkETagOfContext: without clock-reading flags the tag is a function of the
// selection and the context: equal contexts written differently share it, a
// different context, selector or flag configuration changes it, and a request
// carrying it is answered 304 without evaluating anything (no evaluation counted).
func TestBulkETagOfContext(t *testing.T) {
	st := planStore(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Options{Store: st, Log: zerolog.Nop(), Metrics: m})
	h := svc.Handler()
	tag := func(body string, header map[string]string) string {
		w := postBulk(t, h, body, header)
		if w.Code != 200 {
			t.Fatalf("%s: status %d", body, w.Code)
		}
		return w.Header().Get("ETag")
	}
	a := tag(`{"context":{"email":"a@example.com","n":1,"list":[1,"x"]}}`, nil)
	if b := tag(`{ "context" : { "list":[1, "x"], "n": 1.0, "email":"a@example.com" } }`, nil); b != a {
		t.Errorf("the same context written differently: %s, %s", a, b)
	}
	for _, other := range []string{`{"context":{"email":"a@example.com","n":"1","list":[1,"x"]}}`, `{"context":{"email":"a@example.com","n":1,"list":["x",1]}}`, `{}`} {
		if b := tag(other, nil); b == a {
			t.Errorf("context %s shares the tag of another", other)
		}
	}
	if b := tag(`{"context":{"email":"a@example.com","n":1,"list":[1,"x"]}}`, map[string]string{"Flagd-Selector": "flagSetId=set-a"}); b == a {
		t.Error("another selector shares the tag")
	}
	impressions := func() float64 {
		return counterSum(t, reg, "feature_flag_flagd_impression_total")
	}
	before := impressions()
	w := postBulk(t, h, `{"context":{"email":"a@example.com","n":1,"list":[1,"x"]}}`, map[string]string{"If-None-Match": a})
	if w.Code != http.StatusNotModified || w.Header().Get("ETag") != a || w.Body.Len() != 0 {
		t.Fatalf("with its tag: %d %q %q, want 304 with the tag", w.Code, w.Header().Get("ETag"), w.Body.String())
	}
	if after := impressions(); after != before {
		t.Errorf("a 304 counted %v evaluations", after-before)
	}
	if err := st.Apply("file:a.json", []byte(strings.Replace(planDoc, `"<b>&\"x\"</b>"`, `"changed"`, 1))); err != nil {
		t.Fatal(err)
	}
	w = postBulk(t, h, `{"context":{"email":"a@example.com","n":1,"list":[1,"x"]}}`, map[string]string{"If-None-Match": a})
	if w.Code != 200 || w.Header().Get("ETag") == a || !strings.Contains(w.Body.String(), `"changed"`) {
		t.Fatalf("after a change: %d, tag %q (old %q)", w.Code, w.Header().Get("ETag"), a)
	}
}

// counterSum is the sum of a counter family's counters.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// TestBulkETagWithClock: a selection with a flag reading $flagd.timestamp is tagged
// by its body (its answer may change with the clock alone).
func TestBulkETagWithClock(t *testing.T) {
	st, err := store.New([]string{"s"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	doc := `{"flags": {"timed": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
	  "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "on", "off"]}}}}`
	if err := st.Apply("s", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	svc := New(Options{Store: st, Log: zerolog.Nop()})
	w := postBulk(t, svc.Handler(), `{}`, nil)
	if got, want := w.Header().Get("ETag"), etagOf(w.Body.Bytes()); w.Code != 200 || got != want {
		t.Fatalf("status %d, ETag %s, want the body's %s", w.Code, got, want)
	}
	if again := postBulk(t, svc.Handler(), `{}`, map[string]string{"If-None-Match": w.Header().Get("ETag")}); again.Code != http.StatusNotModified {
		t.Fatalf("with its tag: %d, want 304", again.Code)
	}
}

// TestReadsClock: which rules may read $flagd.timestamp.
func TestReadsClock(t *testing.T) {
	for _, c := range []struct {
		rule string
		want bool
	}{
		{`{"if": [{"var": "email"}, "on", "off"]}`, false},
		{`{"fractional": [["a", 50], ["b", 50]]}`, false},
		{`{"var": "$flagd.timestamp"}`, true},
		{`{"var": ["$flagd.timestamp", 0]}`, true},
		{`{"var": "$flagd"}`, true},
		{`{"==": [{"var": "$flagd.flagKey"}, "x"]}`, false}, // the key is no clock
		{`{"var": "$flagd.timestamp.x"}`, false},            // null: nothing under the timestamp
		{`{"if": [{">": [{"var": {"cat": ["$flagd.", "timestamp"]}}, 0]}, "on", null]}`, true},
		{`{"var": ["x", {"var": "$flagd.timestamp"}]}`, true},
		{`{"in": ["$flagd.timestamp", {"var": "names"}]}`, false},
		{`{"var": ""}`, false},
	} {
		if got := readsClock(json.RawMessage(c.rule)); got != c.want {
			t.Errorf("readsClock(%s) = %v, want %v", c.rule, got, c.want)
		}
		var decoded any
		_ = json.Unmarshal([]byte(c.rule), &decoded)
		if got := readsClock(decoded); got != c.want {
			t.Errorf("readsClock(decoded %s) = %v, want %v", c.rule, got, c.want)
		}
	}
}

// TestPlansPerSnapshot: a plan is built once per snapshot and selector.
func TestPlansPerSnapshot(t *testing.T) {
	st := planStore(t)
	svc := New(Options{Store: st, Log: zerolog.Nop()})
	snap := st.Current()
	all, _ := store.ParseSelector("")
	setA, _ := store.ParseSelector("flagSetId=set-a")
	if p1, p2 := svc.plan(snap, all), svc.plan(snap, all); p1 != p2 {
		t.Error("two plans of one snapshot and selector")
	}
	if svc.plan(snap, all) == svc.plan(snap, setA) {
		t.Error("one plan for two selectors")
	}
	if err := st.Apply("file:b.json", []byte(`{"flags": {}}`)); err != nil {
		t.Fatal(err)
	}
	if svc.plan(st.Current(), all) == svc.plan(snap, all) {
		t.Error("the plan survived a new snapshot")
	}
	if got := fmt.Sprint(len(svc.plan(st.Current(), all).items)); got != "20" {
		t.Errorf("%s flags planned, want 20", got)
	}
}

// TestBulkSharedRules: flags with equal rules (once $ref is inlined) form the plan's
// groups, and answers that share a group's decision are the bytes of evaluating
// each flag alone — also where the decision is each flag's own: rules that read
// the flag's key (fractional's default bucketing, $flagd.flagKey) or fail.
func TestBulkSharedRules(t *testing.T) {
	st := planStore(t)
	svc := New(Options{Store: st, Log: zerolog.Nop()})
	all, _ := store.ParseSelector("")
	p := svc.plan(st.Current(), all)
	groups := map[int32][]string{}
	for i := range p.items {
		if it := &p.items[i]; it.group >= 0 {
			groups[it.group] = append(groups[it.group], it.entry.Flag.Key)
		}
	}
	var got [][]string
	for _, keys := range groups {
		slices.Sort(keys)
		got = append(got, keys)
	}
	slices.SortFunc(got, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	want := [][]string{
		{"code-default-targeted", "vip-string"},
		{"keyed-a", "keyed-b"},
		{"parse-error", "parse-error-2"},
		{"rollout", "rollout-2"},
		{"targeted", "targeted-inline"},
	}
	if diff := cmp.Diff(want, got); diff != "" || p.groups != len(want) {
		t.Errorf("groups (-want +got), %d in the plan:\n%s", p.groups, diff)
	}
	rolloutsDiffer := false
	for i := range 40 {
		ctx := map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "email": fmt.Sprintf("u%d@example.com", i%3), "vip": i%2 == 0}
		body, err := json.Marshal(map[string]any{"context": ctx})
		if err != nil {
			t.Fatal(err)
		}
		w := postBulk(t, svc.Handler(), string(body), nil)
		if diff := cmp.Diff(referenceBulk(st, all, ctx), w.Body.String()); diff != "" {
			t.Fatalf("context %s (-each flag alone +shared decisions):\n%s", body, diff)
		}
		a, _ := st.Current().Get("rollout", all)
		b, _ := st.Current().Get("rollout-2", all)
		rolloutsDiffer = rolloutsDiffer || a.Flag.Evaluate(ctx).Variant != b.Flag.Evaluate(ctx).Variant
	}
	if !rolloutsDiffer {
		t.Error("rollout and rollout-2 agree for every targeting key: the test cannot tell a shared decision from their own")
	}
}

// TestBulkCountsEveryEvaluation: bulk answers on several goroutines, while the
// snapshot changes (each change retires the plans and their tallies) and the
// metrics are gathered, count exactly what evaluating every flag alone counts: per
// flag, variant, reason and error, whether counted in a plan's tally, directly on
// a retired plan, or for an outcome no variant has (errors, code defaults).
func TestBulkCountsEveryEvaluation(t *testing.T) {
	st := planStore(t)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	refReg := prometheus.NewRegistry()
	ref, err := metrics.New(refReg)
	if err != nil {
		t.Fatal(err)
	}
	h := New(Options{Store: st, Log: zerolog.Nop(), Metrics: m}).Handler()
	all, _ := store.ParseSelector("")
	contexts := make([]map[string]any, 12)
	bodies := make([]string, len(contexts))
	for i := range contexts {
		domain := []string{"example.com", "other.org", "example.org"}[i%3]
		contexts[i] = map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "email": "u@" + domain, "vip": i%2 == 0}
		b, err := json.Marshal(map[string]any{"context": contexts[i]})
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = string(b)
	}
	const workers, rounds = 4, 30
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				i := (w + r) % len(bodies)
				if code := postBulk(t, h, bodies[i], nil).Code; code != http.StatusOK {
					t.Errorf("status %d", code)
					return
				}
				for _, e := range st.Current().List(all) {
					ref.Evaluation(e.Flag.Key, true, e.Flag.EvaluateAs(eval.TypeAny, contexts[i], nil))
				}
			}
		})
	}
	// new snapshots with the same outcomes (another version in the metadata)
	wg.Go(func() {
		for v := range 10 {
			doc := strings.Replace(planDoc, `"version": "1"`, fmt.Sprintf(`"version": "%d"`, v+2), 1)
			if err := st.Apply("file:a.json", []byte(doc)); err != nil {
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
	metricstest.SameEvaluations(t, refReg, reg, 20, "bulk answers")
}
