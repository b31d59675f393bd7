package eval

import (
	"encoding/json"
	"time"
)

// RuleGroups groups the flags of a list whose targeting rules are equal: their JSON
// once $ref is inlined, keys sorted (what flags.Parse keeps of a compiled rule),
// so that a request evaluating the whole list can run each shared rule once
// (Decisions). groups[i] is the group of list[i], -1 for a flag whose rule no other
// flag of the list has (or without a rule); n is the number of groups.
func RuleGroups[E any](list []E, flag func(E) *Flag) (groups []int32, n int) {
	groups = make([]int32, len(list))
	byRule := map[string][]int{}
	for i, e := range list {
		groups[i] = -1
		f := flag(e)
		if f.rule == nil || f.Disabled() {
			continue
		}
		if rule, ok := f.Targeting.(json.RawMessage); ok {
			byRule[string(rule)] = append(byRule[string(rule)], i)
		}
	}
	for _, idx := range byRule {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			groups[i] = int32(n)
		}
		n++
	}
	return groups, n
}

// Decisions are one request's decisions of the shared rules of a list (RuleGroups),
// by group. They may point into the request's context: Clear them before reusing
// the memory for another request.
type Decisions struct {
	ds []sharedDecision
	e  *env // Decide's evaluation state, one for all its calls (wiped after each)
}

// sharedDecision is a request's decision of a shared rule.
type sharedDecision struct {
	state decisionState
	d     Decision
}

type decisionState uint8

const (
	decisionUnknown decisionState = iota // not run yet in this request
	decisionShared                       // d applies to every flag of the group
	decisionOwn                          // each flag's decision is its own (Flag.Decide)
)

// Reset prepares d for a request over a list with n groups.
func (d *Decisions) Reset(n int) {
	clear(d.ds)
	if cap(d.ds) < n {
		d.ds = make([]sharedDecision, n)
	}
	d.ds = d.ds[:n]
}

// Clear wipes the decisions (they may hold parts of the context).
func (d *Decisions) Clear() { clear(d.ds) }

// Decide returns f's decision for ctx (f has a rule and is enabled: RuleGroups put
// it in group, or -1), the group's when its rule's decision is shared, as EvaluateAs
// would apply it. With Flag.Outcome and Flag.Apply, it lets a caller that prepared
// an answer per variant skip building a Resolution.
func (d *Decisions) Decide(f *Flag, group int32, ctx map[string]any, clock func() time.Time) Decision {
	if d.e == nil {
		d.e = new(env)
	}
	if group < 0 {
		dec, _ := f.decideIn(d.e, ctx, clock)
		return dec
	}
	sd := &d.ds[group]
	switch sd.state {
	case decisionShared:
		return sd.d
	case decisionOwn:
		dec, _ := f.decideIn(d.e, ctx, clock)
		return dec
	}
	dec, own := f.decideIn(d.e, ctx, clock)
	if own {
		sd.state = decisionOwn
	} else {
		sd.state, sd.d = decisionShared, dec
	}
	return dec
}

// EvaluateAs resolves f, whose group is group (RuleGroups over the same list), as
// type t for ctx: as f.EvaluateAs does, running the group's rule once per request
// unless its decision is each flag's own.
func (d *Decisions) EvaluateAs(f *Flag, group int32, t Type, ctx map[string]any, clock func() time.Time) Resolution {
	// alone, without a rule, disabled, or a group whose decisions are each flag's
	// own: the flag's own evaluation (with its inlined common outcome)
	if group < 0 || d.ds[group].state == decisionOwn {
		return f.EvaluateAs(t, ctx, clock)
	}
	return f.Apply(t, d.Decide(f, group, ctx, clock))
}
