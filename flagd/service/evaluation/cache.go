package evaluation

import (
	"bytes"
	"encoding/json"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// structCache keeps the protobuf Structs of responses that depend only on immutable
// data, with their protojson encoding: the metadata of a flag seen through a
// selector, and the value of an object variant. Entries are immutable and keyed by
// pointer, so a cached Struct is always right; the cache is dropped whenever the
// store publishes a new snapshot, which bounds it by (served flags × selectors that
// found them + object variants). Responses share the cached Structs: they are only
// ever marshalled, never modified.
type structCache struct {
	cur     atomic.Pointer[cacheGeneration]
	metrics *metrics.Metrics // for the rule groups' tallies (nil: none)
}

type cacheGeneration struct {
	gen     uint64
	entries sync.Map         // *store.Entry -> *entryCache (a pointer key: no allocation to look up)
	rules   sync.Map         // store.Selector -> *ruleGroups, at most maxRuleGroups
	nRules  atomic.Int32     // the selectors in rules, and places reserved for them
	tallies metrics.TallySet // of its rule groups, retired when a newer generation replaces it
}

// maxRuleGroups bounds the selectors whose rule groups (and ResolveAll pieces) a
// snapshot's cache keeps: a selector is the caller's string, and every distinct one
// would stay until the next snapshot. Beyond it, a request's groups are its own
// (computed per call, counted directly, answered from items), as OFREP's plans.
const maxRuleGroups = 1024

// ruleGroups are the shared rules of a selector's list (eval.RuleGroups), by
// position in the list, and the list's entry caches (a ResolveAll of 1,000 flags
// looked each up in the generation's map on every call: an eighth of its CPU).
type ruleGroups struct {
	groups  []int32
	n       int
	entries []*entryCache
	// tally counts ResolveAll's evaluations of the list in shards (nil: on each
	// entry's counters); base[i] is list[i]'s first slot: DISABLED for a disabled
	// flag, else STATIC, TARGETING_MATCH and DEFAULT of each variant in turn
	tally *metrics.Tally
	base  []int32
	// wire is the list's gRPC ResolveAll pieces per API (allWire), built only for
	// cached groups (a request's own would encode them for one answer)
	wire   [apiSchemaV1 + 1]wireOnce
	cached bool
}

// slot returns the tally slot of the evaluation res of list[i] (flag f), or -1
// when it has none (failures, code defaults, other reasons).
func (rg *ruleGroups) slot(i int, f *eval.Flag, res eval.Resolution) int {
	if res.Failed() {
		return -1
	}
	base := int(rg.base[i])
	if f.Disabled() {
		if res.Reason == eval.ReasonDisabled {
			return base
		}
		return -1
	}
	var r int
	switch res.Reason {
	case eval.ReasonStatic:
		r = 0
	case eval.ReasonTargetingMatch:
		r = 1
	case eval.ReasonDefault:
		r = 2
	default:
		return -1
	}
	j := f.VariantIndex(res.Variant)
	if j < 0 {
		return -1
	}
	return base + 3*j + r
}

// tallySlots lays out the slots of list (ruleGroups.base) and returns them.
func tallySlots(list []*store.Entry, base []int32) []metrics.TallySlot {
	var slots []metrics.TallySlot
	for i, e := range list {
		f := e.Flag
		base[i] = int32(len(slots)) //nolint:gosec // G115: a slot count, far below 2^31
		if f.Disabled() {
			slots = append(slots, metrics.TallySlot{Key: f.Key, Reason: eval.ReasonDisabled})
			continue
		}
		for j := range f.NumVariants() {
			name, _ := f.VariantAt(j)
			slots = append(slots, metrics.TallySlot{Key: f.Key, Variant: name, Reason: eval.ReasonStatic},
				metrics.TallySlot{Key: f.Key, Variant: name, Reason: eval.ReasonTargetingMatch},
				metrics.TallySlot{Key: f.Key, Variant: name, Reason: eval.ReasonDefault})
		}
	}
	return slots
}

// ruleGroups returns the rule groups and entry caches of list, the flags sel sees
// in the snapshot of generation gen, computing them on first use.
func (c *structCache) ruleGroups(gen uint64, sel store.Selector, list []*store.Entry) *ruleGroups {
	g := c.generation(gen)
	if g.gen == gen {
		if v, ok := g.rules.Load(sel); ok {
			return v.(*ruleGroups)
		}
	}
	rg := &ruleGroups{entries: make([]*entryCache, len(list))}
	rg.groups, rg.n = eval.RuleGroups(list, entryFlag)
	for i, e := range list {
		rg.entries[i] = c.entry(gen, e)
	}
	if g.gen != gen || !g.reserveRules() { // a newer snapshot's cache (its groups are of another list), or full
		return rg
	}
	rg.cached = true
	if c.metrics != nil {
		rg.base = make([]int32, len(list))
		rg.tally = c.metrics.NewTally(tallySlots(list, rg.base), 0)
	}
	v, loaded := g.rules.LoadOrStore(sel, rg)
	switch {
	case loaded: // another call stored its groups first: its place and tally count
		g.nRules.Add(-1)
		if rg.tally != nil {
			rg.tally.Retire()
		}
	case rg.tally != nil:
		g.tallies.Adopt(rg.tally)
	}
	return v.(*ruleGroups)
}

func entryFlag(e *store.Entry) *eval.Flag { return e.Flag }

// entryCache is what is cached for one entry.
type entryCache struct {
	all     atomic.Pointer[cachedStruct] // metadata without a selector (the common case)
	bySel   sync.Map                     // store.Selector -> *cachedStruct: metadata through a selector
	objects sync.Map                     // variant name -> *cachedStruct: object variant values
	// counters are the metric counters of the outcomes seen so far, so that
	// counting an evaluation does not hash its label values every time
	counters metrics.FlagCounters
	// names is whether the flag's key and variant names are valid UTF-8: 0 not
	// known yet, 1 valid, 2 not (namesValid)
	names atomic.Int32
}

// namesValid reports whether the key and every variant name of f, the entry's
// flag, are valid UTF-8 (what protobuf requires of the strings ResolveAll sends;
// reasons are eval's constants), checked on first use.
func (ec *entryCache) namesValid(f *eval.Flag) bool {
	switch ec.names.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ok := utf8.ValidString(f.Key)
	for i := range f.NumVariants() {
		name, _ := f.VariantAt(i)
		ok = ok && utf8.ValidString(name)
	}
	if ok {
		ec.names.Store(1)
	} else {
		ec.names.Store(2)
	}
	return ok
}

// cachedStruct is a Struct and its protojson encoding, which the fast path splices
// into its responses.
type cachedStruct struct {
	msg   *structpb.Struct
	json  []byte // compact protojson; nil when err is set
	err   error  // protojson cannot write msg (a NaN or infinite number)
	pb    []byte // binary protobuf (deterministic); nil when pbErr is set
	pbErr error  // protobuf cannot write msg (invalid UTF-8)
}

// hasProto reports whether pb holds the binary encoding of msg, for a hand encoder
// to splice in. When it does not, the encoder reports its response inexact and
// its caller marshals the whole message with protobuf-go, which refuses it with
// the error that pbErr holds.
func (c *cachedStruct) hasProto() bool { return c.pbErr == nil }

func newCachedStruct(m *structpb.Struct) *cachedStruct {
	c := &cachedStruct{msg: m}
	c.pb, c.pbErr = proto.MarshalOptions{Deterministic: true}.Marshal(m)
	data, err := protojson.Marshal(m)
	if err != nil {
		c.err = err
		return c
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		c.err = err
		return c
	}
	c.json = b.Bytes()
	return c
}

// reserveRules takes one of the maxRuleGroups places, or reports that none is left.
func (g *cacheGeneration) reserveRules() bool {
	for {
		n := g.nRules.Load()
		if n >= maxRuleGroups {
			return false
		}
		if g.nRules.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *structCache) generation(gen uint64) *cacheGeneration {
	for {
		g := c.cur.Load()
		if g != nil && g.gen >= gen {
			return g
		}
		ng := &cacheGeneration{gen: gen}
		if c.cur.CompareAndSwap(g, ng) {
			if g != nil {
				g.tallies.Retire()
			}
			return ng
		}
	}
}

func (c *structCache) entry(gen uint64, e *store.Entry) *entryCache {
	g := c.generation(gen)
	if v, ok := g.entries.Load(e); ok {
		return v.(*entryCache)
	}
	v, _ := g.entries.LoadOrStore(e, &entryCache{})
	return v.(*entryCache)
}

// metadata is the response metadata of the entry's flag, whose merged metadata is
// md: the selector reflection with every non-nil value of md copied over it
// (flagd's store.Get).
func (ec *entryCache) metadata(sel store.Selector, md map[string]any) *cachedStruct {
	if sel.Kind == store.SelectAll {
		if v := ec.all.Load(); v != nil {
			return v
		}
		v := newCachedStruct(buildMetadata(sel, md))
		if ec.all.CompareAndSwap(nil, v) {
			return v
		}
		return ec.all.Load()
	}
	if v, ok := ec.bySel.Load(sel); ok {
		return v.(*cachedStruct)
	}
	v, _ := ec.bySel.LoadOrStore(sel, newCachedStruct(buildMetadata(sel, md)))
	return v.(*cachedStruct)
}

// object is the Struct of an object variant value.
func (c *structCache) object(gen uint64, e *store.Entry, variant string, m map[string]any) (*cachedStruct, error) {
	return c.entry(gen, e).object(variant, m)
}

// object is structCache.object of the entry's flag.
func (ec *entryCache) object(variant string, m map[string]any) (*cachedStruct, error) {
	if v, ok := ec.objects.Load(variant); ok {
		return v.(*cachedStruct), nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, err
	}
	v, _ := ec.objects.LoadOrStore(variant, newCachedStruct(s))
	return v.(*cachedStruct), nil
}

// buildMetadata merges the selector reflection and the flag metadata. A value that
// a Struct cannot hold is left out rather than failing the evaluation.
func buildMetadata(sel store.Selector, md map[string]any) *structpb.Struct {
	refl := sel.Reflection()
	fields := make(map[string]*structpb.Value, len(refl)+len(md))
	for k, v := range refl {
		if pv, err := structpb.NewValue(v); err == nil {
			fields[k] = pv
		}
	}
	for k, v := range md {
		if v == nil {
			continue
		}
		if pv, err := structpb.NewValue(v); err == nil {
			fields[k] = pv
		}
	}
	return &structpb.Struct{Fields: fields}
}

// selectorMetadata is the top-level metadata of bulk responses: the selector
// reflection only.
func selectorMetadata(sel store.Selector) *structpb.Struct {
	return buildMetadata(sel, nil)
}
