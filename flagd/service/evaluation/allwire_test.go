package evaluation

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// allWireExtra adds to the shared rules and the counting test's flags every other
// kind of answer the pieces have: null, array and object variants, a flag without
// a default (untyped), a static one without a usable default type, a targeted one
// whose variants are of several types, boolean and number variant names, and
// metadata, and an untyped flag whose rule fails (schema.v1 counts it as answered
// and writes nothing).
const allWireExtra = `,
  "null-var":  {"state": "ENABLED", "variants": {"n": null, "v": "V"}, "defaultVariant": "v", "targeting": {"if": [{"var": "vip"}, "n", "v"]}},
  "array-def": {"state": "ENABLED", "variants": {"a": [1, 2], "b": "B"}, "defaultVariant": "a", "targeting": {"if": [{"var": "vip"}, "b", null]}},
  "array-st":  {"state": "ENABLED", "variants": {"a": [1, 2]}, "defaultVariant": "a"},
  "untyped":   {"state": "ENABLED", "variants": {"x": "X", "y": {"k": [true, null, 1.5]}}, "targeting": {"if": [{"var": "vip"}, "y", "x"]}},
  "objects":   {"state": "ENABLED", "variants": {"p": {"plan": "pro", "n": 3}, "f": {"plan": "free"}}, "defaultVariant": "f", "targeting": {"if": [{"var": "vip"}, "p", null]}, "metadata": {"owner": "team-a", "ticket": 7}},
  "mixed":     {"state": "ENABLED", "variants": {"s": "text", "b": true, "o": {"x": 1}}, "defaultVariant": "s", "targeting": {"if": [{"var": "vip"}, "b", {"ends_with": [{"var": "email"}, "@example.com"]}, "o", "s"]}},
  "bool-name": {"state": "ENABLED", "variants": {"true": "T", "false": "F"}, "defaultVariant": "false", "targeting": {"var": "vip"}},
  "num-name":  {"state": "ENABLED", "variants": {"1": 1, "2.5": 2.5}, "defaultVariant": "1", "targeting": {"if": [{"var": "vip"}, 2.5, 1]}},
  "no-def":    {"state": "ENABLED", "variants": {"a": "A"}},
  "no-def-bad": {"state": "ENABLED", "variants": {"a": "A"}, "targeting": {"$ref": "missing"}}
}}`

// TestResolveAllWireMatchesItems: the gRPC ResolveAll answer written from a list's
// pieces is, byte for byte, the answer the item path encodes for the same request,
// with the same number of flags answered, in v1 (with a selector's metadata) and
// schema.v1, for contexts that reach every outcome.
func TestResolveAllWireMatchesItems(t *testing.T) {
	doc := strings.TrimSuffix(strings.TrimSpace(sharedRulesDoc), "}}") + strings.TrimSuffix(allCountsExtra, "}}") + allWireExtra
	doc = strings.Replace(doc, `"flags": {`, `"metadata": {"flagSetId": "set-1", "version": "3"}, "flags": {`, 1)
	st := storeOf(t, "wire", []byte(doc))
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for _, c := range []struct {
		st        *store.Store
		selectors []string
	}{
		{st, []string{"", "flagSetId=set-1"}},
		// the differential tests' sources, without the special flags' set (whose
		// variant name that is not UTF-8 makes it unusable): floats, metadata
		{newDiffStore(t), []string{"source=src-plain", "source=src-a", "source=src-b", "flagSetId=set-a"}},
	} {
		svc := newService(Options{Store: c.st, Log: zerolog.Nop(), Metrics: m}, false)
		for _, selector := range c.selectors {
			listed += wireMatchesItems(t, svc, selector)
		}
	}
	if listed < 2*40*2*15 {
		t.Errorf("%d flags answered over every call: the documents no longer have the flags the test needs", listed)
	}
}

// wireMatchesItems compares both paths for selector over 40 contexts and both
// APIs, and returns the number of flags answered.
func wireMatchesItems(t *testing.T, svc *Service, selector string) int {
	t.Helper()
	sel, err := store.ParseSelector(selector)
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	for i := range 40 {
		ctx, err := structpb.NewStruct(map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "vip": i%3 == 0,
			"email": fmt.Sprintf("u%d@%s", i, []string{"example.com", "other.org", "b.c", "x.y"}[i%4])})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []api{apiV1, apiSchemaV1} {
			items := svc.resolveAllIn(sel, nil, ctx, a)
			want, exact := appendResolveAll(nil, a, items, nil)
			if !exact {
				t.Fatalf("selector %q: the item path cannot encode the answer by hand", selector)
			}
			p := svc.newAllPass(sel, nil, ctx, a)
			w := p.wire()
			if !w.usable {
				p.done()
				t.Fatalf("selector %q: the list's pieces are not usable", selector)
			}
			got, n, ok := p.appendWire(nil, w)
			p.done()
			if !ok || n != len(items) {
				t.Fatalf("selector %q, context %d, api %d: appendWire ok %v, %d flags answered; the item path answered %d", selector, i, a, ok, n, len(items))
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("selector %q, context %d, api %d: the pieces' answer differs from the items'\n got %q\nwant %q", selector, i, a, got, want)
			}
			listed += len(items)
			svc.items.put(items)
		}
	}
	return listed
}

// TestResolveAllWireUnusable: a flag whose answer cannot be written by hand (a
// variant name that is not UTF-8) makes the list's pieces unusable, so the request
// takes the item path (which hands the message to protobuf, which says why).
func TestResolveAllWireUnusable(t *testing.T) {
	svc := newService(Options{Store: newDiffStore(t), Log: zerolog.Nop()}, false)
	for selector, usable := range map[string]bool{"flagSetId=special": false, "": false, "source=src-a": true} {
		sel, err := store.ParseSelector(selector)
		if err != nil {
			t.Fatal(err)
		}
		p := svc.newAllPass(sel, nil, nil, apiV1)
		if got := p.wire().usable; got != usable {
			t.Errorf("selector %q: pieces usable %v, want %v", selector, got, usable)
		}
		p.done()
	}
}

// TestRuleGroupsBounded: a snapshot's cache keeps the rule groups (and ResolveAll
// pieces) of at most maxRuleGroups selectors, however many distinct selector
// strings callers send, on 4 goroutines at once; a selector beyond them is still
// answered, from its own groups and the item path, the same as with a fresh cache.
func TestRuleGroupsBounded(t *testing.T) {
	st := newDiffStore(t)
	svc := newService(Options{Store: st, Log: zerolog.Nop()}, false)
	var wg sync.WaitGroup
	for w := range 4 { // concurrently: the bound must hold for racing requests too
		wg.Go(func() {
			for i := range (maxRuleGroups + 500) / 4 {
				sel, err := store.ParseSelector(fmt.Sprintf("flagSetId=caller-chosen-%d-%d-%s", w, i, strings.Repeat("x", 100)))
				if err != nil {
					t.Error(err)
					return
				}
				svc.items.put(svc.resolveAllIn(sel, nil, nil, apiV1))
			}
		})
	}
	wg.Wait()
	g := svc.cache.generation(st.Current().Generation)
	stored := 0
	g.rules.Range(func(any, any) bool { stored++; return true })
	if stored != maxRuleGroups || int(g.nRules.Load()) != maxRuleGroups {
		t.Errorf("%d selectors' rule groups kept (counted %d), want %d", stored, g.nRules.Load(), maxRuleGroups)
	}
	sel, _ := store.ParseSelector("source=src-a")
	p := svc.newAllPass(sel, nil, nil, apiV1)
	if p.wire() != nil {
		t.Error("a selector beyond the bound got cached pieces")
	}
	p.done()
	ctx, err := structpb.NewStruct(map[string]any{"email": "u1@b.c", "vip": true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := appendResolveAll(nil, apiV1, svc.resolveAllIn(sel, nil, ctx, apiV1), nil)
	fresh := newService(Options{Store: st, Log: zerolog.Nop()}, false)
	want, _ := appendResolveAll(nil, apiV1, fresh.resolveAllIn(sel, nil, ctx, apiV1), nil)
	if len(want) == 0 || !bytes.Equal(got, want) {
		t.Errorf("a selector beyond the bound answered %d bytes, a fresh cache %d, or they differ", len(got), len(want))
	}
}
