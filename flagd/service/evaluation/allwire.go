package evaluation

import (
	"sync"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// ResolveAll over gRPC from pieces encoded once: a flag whose answer cannot depend
// on the context (disabled, or without a rule) is one map entry, encoded when the
// list's pieces are built; a flag with a rule has an entry per variant and reason
// (TARGETING_MATCH, DEFAULT), and a request only decides each rule
// (eval.Decisions.Decide) and appends the entry of the outcome. Everything else (a
// failed rule, a variant of another type than the flag's default, a code default)
// takes the item path (allPass.itemOf) for that flag, as the whole list did before.
// The pieces are appendResolveAll's encoding of the items the item path builds for
// those outcomes, so both paths write the same bytes
// (TestResolveAllWireMatchesItems).

// wireKind says how a flag of the list is answered from the pieces.
type wireKind uint8

const (
	wireOmitted  wireKind = iota // not evaluated: v1 leaves a flag without a default type out
	wireFixed                    // one answer, whatever the context (disabled, or no rule)
	wireTargeted                 // an answer per outcome of its rule
	wireItem                     // the item path, every time (a failing static flag: it logs)
)

// wireOnce builds a list's pieces for one API on first use.
type wireOnce struct {
	once sync.Once
	w    *allWire
}

// allWire is a list's ResolveAll pieces for one API. usable is false when some
// piece cannot be written by hand (a name or string value that is not UTF-8, an
// object protobuf cannot encode): the list then takes the item path, which says why.
type allWire struct {
	usable bool
	flags  []wireFlag
}

// wireFlag is one flag's pieces.
type wireFlag struct {
	kind wireKind
	t    eval.Type // the type it is resolved as
	// wireFixed: the answer (its map entry; listed false: counted, left out)
	fixed wireOutcome
	// wireTargeted: by variant index (eval.Flag.VariantAt)
	variants []wireVariant
}

// wireOutcome is an answer: the resolution counted and its map entry.
type wireOutcome struct {
	res    eval.Resolution
	slot   int // its tally slot, -1: none
	listed bool
	entry  []byte
}

// wireVariant is a targeted flag's variant: usable false when it does not resolve
// as the flag's type (the item path reports the failure), else its answers with
// reason TARGETING_MATCH and DEFAULT.
type wireVariant struct {
	usable bool
	match  wireOutcome
	def    wireOutcome
}

// wire returns the pieces of p's list for p's API, building them on first use;
// nil when the list's rule groups are the request's own (not cached).
func (p *allPass) wire() *allWire {
	if !p.rules.cached {
		return nil
	}
	wo := &p.rules.wire[p.a]
	wo.once.Do(func() { wo.w = p.buildWire() })
	return wo.w
}

// buildWire encodes the pieces of p's list; they are unusable when one cannot be
// written by hand.
func (p *allPass) buildWire() *allWire {
	w := &allWire{usable: true, flags: make([]wireFlag, len(p.list))}
	for i := range p.list {
		var ok bool
		if w.flags[i], ok = p.wireFlag(i); !ok {
			return &allWire{}
		}
	}
	return w
}

// wireFlag encodes the pieces of list[i]; ok is false when one cannot be written by
// hand.
func (p *allPass) wireFlag(i int) (wf wireFlag, ok bool) {
	f := p.list[i].Flag
	if !p.rules.entries[i].namesValid(f) {
		return wf, false
	}
	t, evaluated := p.answerType(f)
	wf.t = t
	switch {
	case !evaluated:
		wf.kind = wireOmitted
	case f.Disabled() || !f.HasTargeting():
		res := f.EvaluateAs(t, nil, nil)
		if res.Failed() {
			wf.kind = wireItem
			return wf, true
		}
		wf.kind = wireFixed
		if wf.fixed, ok = p.outcome(i, t, res); !ok {
			return wf, false
		}
	default:
		wf.kind = wireTargeted
		wf.variants = make([]wireVariant, f.NumVariants())
		for j := range wf.variants {
			wv := &wf.variants[j]
			match := f.ResolveVariant(t, j, eval.ReasonTargetingMatch)
			if match.Failed() {
				continue
			}
			if m, isObject := match.Value.(map[string]any); isObject {
				if _, err := p.rules.entries[i].object(match.Variant, m); err != nil {
					continue // the item path logs it
				}
			}
			wv.usable = true
			if wv.match, ok = p.outcome(i, t, match); !ok {
				return wf, false
			}
			if wv.def, ok = p.outcome(i, t, f.ResolveVariant(t, j, eval.ReasonDefault)); !ok {
				return wf, false
			}
		}
	}
	return wf, true
}

// outcome encodes res, an evaluation of list[i] as type t, as the item path would
// answer it; ok is false when appendResolveAll cannot write it by hand.
func (p *allPass) outcome(i int, t eval.Type, res eval.Resolution) (o wireOutcome, ok bool) {
	o = wireOutcome{res: res, slot: -1}
	if p.rules.tally != nil {
		o.slot = p.rules.slot(i, p.list[i].Flag, res)
	}
	it, listed := p.build(i, t, res)
	if !listed {
		return o, true
	}
	o.listed = true
	o.entry, ok = appendResolveAll(nil, p.a, []bulkItem{it}, nil)
	return o, ok
}

// appendWire appends the answer of p's list from w's pieces and returns it with the
// number of flags answered (the item path's item count). ok is false when a flag
// on the item path cannot be written by hand, which w being usable rules out.
func (p *allPass) appendWire(b []byte, w *allWire) (out []byte, n int, ok bool) {
	for i, e := range p.list {
		wf := &w.flags[i]
		var (
			o      *wireOutcome
			it     bulkItem // the item path's, when o is nil
			listed bool
		)
		switch wf.kind {
		case wireOmitted:
			continue
		case wireFixed:
			o = &wf.fixed
		case wireTargeted:
			f := e.Flag
			dec := p.decisions.Decide(f, p.rules.groups[i], p.ctx, nil)
			if j, reason, decided := f.Outcome(dec); decided && wf.variants[j].usable {
				o = &wf.variants[j].match
				if reason == eval.ReasonDefault {
					o = &wf.variants[j].def
				}
			} else {
				it, listed = p.itemOf(i, wf.t, f.Apply(wf.t, dec))
			}
		case wireItem:
			it, listed = p.item(i)
		}
		if o == nil { // the item path, counted
			if listed {
				n++
				if b, ok = appendResolveAll(b, p.a, []bulkItem{it}, nil); !ok {
					return b, n, false
				}
			}
			continue
		}
		p.countAt(i, o.slot, e.Flag, o.res)
		if o.listed {
			n++
			b = append(b, o.entry...)
		}
	}
	return b, n, true
}
