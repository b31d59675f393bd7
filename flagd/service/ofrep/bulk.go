package ofrep

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// A bulk answer evaluates every flag a selector sees, but most of it does not
// depend on the request: flags without targeting (and disabled flags) answer the
// same for every context, and every flag's key and metadata are the same in every
// answer. A plan, built once per snapshot and selector, holds those parts encoded
// and each flag's metrics counters looked up, so a request evaluates the targeted
// flags and copies bytes.
//
// The ETag is worked out from what the answer is a function of, not by hashing the
// answer: SHA-256 over the encoder's version, the selection (each flag's key and
// fingerprint, the hash of everything a client can observe of it, in order), the
// selector and the evaluation context (canonical: keys sorted, typed), so that a
// request carrying the current tag is answered 304 without evaluating anything.
// That holds because an answer is a function of exactly those, except when a flag
// reads the clock ($flagd.timestamp, or a `var` whose path is computed and might
// name it): a selection with such a flag tags the answer with the hash of its body,
// as before.

// Flags often share a rule: "internal users get it" on a hundred flags, the same
// $ref evaluators, or the same country switch. The plan groups the targeted flags
// whose rules are equal (the rule's JSON once $ref is inlined, keys sorted), and a
// request runs such a rule once and applies its decision to each flag of the group
// — unless the rule read the flag's key (fractional's default bucketing,
// $flagd.flagKey) or failed, which makes every flag's decision its own
// (eval.RuleGroups, eval.Decisions).

// etagVersion changes whenever the encoder's output for the same flags and context
// changes, so that a tag from an older flagpole never validates a newer answer.
const etagVersion = "flagpole-ofrep-bulk-1"

// maxPlans bounds the plans kept per snapshot (one per selector in use).
const maxPlans = 1024

// bulkPlan is the request-independent part of a selector's bulk answer in one
// snapshot.
type bulkPlan struct {
	items   []planItem
	digest  [sha256.Size]byte // of the selection: etagVersion, keys and fingerprints, selector
	clock   bool              // some flag may read the clock: tag the body instead
	refl    reflection
	groups  int          // the number of rules that several targeted flags share
	tail    []byte       // `],"metadata":{...}}`
	sizeEst atomic.Int64 // the last answer's size, to size the buffer
	// tally counts the plan's evaluations in shards (nil: each is counted on its
	// counters): slots [0, fixed flags) are the fixed answers in order, then each
	// targeted flag's variants' TARGETING_MATCH and DEFAULT
	tally *metrics.Tally
}

// planItem is one flag of a plan.
type planItem struct {
	entry *store.Entry
	// fixed is the flag's whole answer when it cannot depend on the context (no
	// targeting, or disabled), and res the resolution it encodes (for counting
	// without a tally)
	fixed []byte
	res   eval.Resolution
	// for targeted flags: the encoded key and success metadata, each variant's
	// pieces (by index); for every flag, the counters of the outcomes seen, for
	// plans that count without a tally (and outcomes no slot has: errors, code
	// defaults)
	key      []byte
	meta     []byte
	variants []variantOut // by index (eval.Flag.VariantAt)
	outcomes metrics.FlagCounters
	// group is the index of the flag's rule among the plan's shared rules, -1
	// when no other flag of the plan has an equal rule (eval.RuleGroups)
	group int32
}

// variantOut is what answering a variant of a targeted flag needs.
type variantOut struct {
	name      string
	value     []byte // encoded
	nameJSON  []byte // encoded; nil for the name ""
	matchSlot int    // the tally's slot of TARGETING_MATCH; DEFAULT's is the next
}

// planSet is the plans of one snapshot.
type planSet struct {
	gen     uint64
	mu      sync.Mutex
	plans   map[store.Selector]*planOnce
	tallies metrics.TallySet // of its plans, retired when a newer snapshot's set replaces it
}

type planOnce struct {
	once sync.Once
	plan *bulkPlan
}

// plans caches the plans of the newest snapshot a request saw.
type plans struct{ cur atomic.Pointer[planSet] }

// plan returns the plan of sel in snap, building it on first use.
func (s *Service) plan(snap *store.Snapshot, sel store.Selector) *bulkPlan {
	var set *planSet
	for {
		set = s.plans.cur.Load()
		if set != nil && set.gen >= snap.Generation {
			break
		}
		if s.plans.cur.CompareAndSwap(set, &planSet{gen: snap.Generation, plans: map[store.Selector]*planOnce{}}) {
			if set != nil {
				set.tallies.Retire()
			}
			set = s.plans.cur.Load()
			break
		}
	}
	var po *planOnce
	if set.gen == snap.Generation {
		set.mu.Lock()
		if po = set.plans[sel]; po == nil && len(set.plans) < maxPlans {
			po = &planOnce{}
			set.plans[sel] = po
		}
		set.mu.Unlock()
	}
	if po == nil { // an older snapshot, or too many selectors: not kept, counted directly
		po = &planOnce{}
		po.once.Do(func() { po.plan = s.buildPlan(snap, sel, false) })
		return po.plan
	}
	po.once.Do(func() {
		po.plan = s.buildPlan(snap, sel, true)
		set.tallies.Adopt(po.plan.tally)
	})
	return po.plan
}

// buildPlan encodes what does not depend on the request; tallied plans count in a
// metrics.Tally (the caller retires it).
func (s *Service) buildPlan(snap *store.Snapshot, sel store.Selector, tallied bool) *bulkPlan {
	list := snap.List(sel)
	p := &bulkPlan{items: make([]planItem, len(list)), refl: reflectionOf(sel)}
	h := sha256.New()
	h.Write([]byte(etagVersion))
	writeString(h, sel.String())
	enc := &encoder{}
	groups, n := eval.RuleGroups(list, func(e *store.Entry) *eval.Flag { return e.Flag })
	p.groups = n
	var fixedSlots, slots []metrics.TallySlot
	for i, e := range list {
		it := &p.items[i]
		it.entry, it.group = e, groups[i]
		f := e.Flag
		fp := e.Fingerprint()
		writeString(h, f.Key)
		h.Write(fp[:])
		if f.Disabled() || !f.HasTargeting() {
			res := f.EvaluateAs(eval.TypeAny, nil, nil)
			enc.buf = enc.buf[:0]
			enc.evaluation(f.Key, res, p.refl)
			it.fixed = slices.Clone(enc.buf)
			it.res = res
			fixedSlots = append(fixedSlots, metrics.TallySlot{Key: f.Key, Variant: res.Variant, Reason: res.Reason, ErrorCode: res.ErrorCode})
			continue
		}
		p.clock = p.clock || readsClock(f.Targeting)
		enc.buf = enc.buf[:0]
		enc.buf = jsonwire.AppendString(enc.buf, f.Key)
		it.key = slices.Clone(enc.buf)
		enc.buf = enc.buf[:0]
		enc.metadata(p.refl, f.Metadata)
		it.meta = slices.Clone(enc.buf)
		it.variants = make([]variantOut, f.NumVariants())
		for j := range it.variants {
			name, v := f.VariantAt(j)
			vo := &it.variants[j]
			vo.name = name
			enc.buf = enc.buf[:0]
			enc.value(v)
			vo.value = slices.Clone(enc.buf)
			if name != "" {
				vo.nameJSON = jsonwire.AppendString(nil, name)
			}
			// slots counted from the targeted flags' first; offset below
			vo.matchSlot = len(slots)
			slots = append(slots, metrics.TallySlot{Key: f.Key, Variant: name, Reason: eval.ReasonTargetingMatch},
				metrics.TallySlot{Key: f.Key, Variant: name, Reason: eval.ReasonDefault})
		}
	}
	if tallied {
		p.tally = s.opts.Metrics.NewTally(append(fixedSlots, slots...), len(fixedSlots))
		for i := range p.items {
			for j := range p.items[i].variants {
				p.items[i].variants[j].matchSlot += len(fixedSlots)
			}
		}
	}
	h.Sum(p.digest[:0])
	enc.buf = append(enc.buf[:0], `],"metadata":`...)
	enc.metadata(p.refl, nil)
	p.tail = append(slices.Clone(enc.buf), '}')
	return p
}

// writeString writes a length-prefixed string to h (so that concatenations cannot
// collide).
func writeString(h hash.Hash, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	h.Write(n[:])
	h.Write([]byte(s))
}

// appendTargeted appends the answer of a targeted flag for its rule's decision dec,
// from the plan's pieces when dec selects one of its variants, and counts it.
func (s *Service) appendTargeted(enc *encoder, it *planItem, dec eval.Decision, refl reflection, sel store.Selector, sh *metrics.TallyShard) {
	f := it.entry.Flag
	i, reason, ok := f.Outcome(dec)
	if !ok {
		res := f.Apply(eval.TypeAny, dec)
		if res.Failed() {
			s.opts.Log.Debug().Str("flag", f.Key).Str("selector", sel.String()).Str("code", string(res.ErrorCode)).Msg(res.ErrorMessage)
		}
		it.outcomes.Count(s.opts.Metrics, f.Key, res)
		enc.evaluation(f.Key, res, refl)
		return
	}
	vo := &it.variants[i]
	if sh != nil {
		slot := vo.matchSlot
		if reason == eval.ReasonDefault {
			slot++
		}
		sh.Count(slot)
	} else {
		it.outcomes.Count(s.opts.Metrics, f.Key, eval.Resolution{Variant: vo.name, Reason: reason})
	}
	// as encoder.evaluation writes it: value, key, reason, variant (absent when
	// empty), metadata
	enc.buf = append(enc.buf, `{"value":`...)
	enc.buf = append(enc.buf, vo.value...)
	enc.buf = append(enc.buf, `,"key":`...)
	enc.buf = append(enc.buf, it.key...)
	if reason == eval.ReasonDefault {
		enc.buf = append(enc.buf, `,"reason":"DEFAULT"`...)
	} else {
		enc.buf = append(enc.buf, `,"reason":"TARGETING_MATCH"`...)
	}
	if vo.nameJSON != nil {
		enc.buf = append(enc.buf, `,"variant":`...)
		enc.buf = append(enc.buf, vo.nameJSON...)
	}
	enc.buf = append(enc.buf, `,"metadata":`...)
	enc.buf = append(enc.buf, it.meta...)
	enc.buf = append(enc.buf, '}')
}

// contextETag is the tag of an answer of plan p for the evaluation context ctx.
func contextETag(p *bulkPlan, ctx map[string]any) string {
	h := sha256.New()
	h.Write(p.digest[:])
	hashValue(h, ctx, 0)
	var sum [sha256.Size]byte
	return quoteTag(h.Sum(sum[:0]))
}

// quoteTag renders a digest as a strong entity tag: quoted, unpadded base64url.
func quoteTag(sum []byte) string {
	var b [2 + 43]byte // base64.RawURLEncoding.EncodedLen(sha256.Size) == 43
	b[0] = '"'
	base64.RawURLEncoding.Encode(b[1:44], sum)
	b[44] = '"'
	return string(b[:])
}

// hashValue writes a decoded JSON value canonically: typed, object keys sorted, so
// that contexts meaning the same hash the same and different ones differently.
// Nesting is bounded by the JSON decoder (and the request body limit).
func hashValue(h hash.Hash, v any, depth int) {
	var tag [9]byte
	switch t := v.(type) {
	case nil:
		h.Write([]byte{'n'})
	case bool:
		tag[0], tag[1] = 'b', 0
		if t {
			tag[1] = 1
		}
		h.Write(tag[:2])
	case float64:
		tag[0] = 'f'
		if t == 0 {
			t = 0 // -0 and 0 evaluate alike
		}
		binary.BigEndian.PutUint64(tag[1:], math.Float64bits(t))
		h.Write(tag[:9])
	case string:
		h.Write([]byte{'s'})
		writeString(h, t)
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		tag[0] = 'o'
		binary.BigEndian.PutUint64(tag[1:], uint64(len(keys)))
		h.Write(tag[:9])
		for _, k := range keys {
			writeString(h, k)
			hashValue(h, t[k], depth+1)
		}
	case []any:
		tag[0] = 'a'
		binary.BigEndian.PutUint64(tag[1:], uint64(len(t)))
		h.Write(tag[:9])
		for _, x := range t {
			hashValue(h, x, depth+1)
		}
	default:
		// not produced by the JSON decoder or the enricher; hash its JSON
		b, err := json.Marshal(t)
		if err != nil {
			b = []byte("?")
		}
		h.Write([]byte{'j'})
		writeString(h, string(b))
	}
}

// readsClock reports whether a targeting rule may read $flagd.timestamp: a `var`
// naming $flagd (or $flagd.timestamp), or one whose path is computed by a rule. The
// rule is the flag's Targeting (decoded, or its JSON).
func readsClock(targeting any) bool {
	if raw, ok := targeting.(json.RawMessage); ok {
		if !strings.Contains(string(raw), `"var"`) {
			return false
		}
		var decoded any
		if err := json.Unmarshal(raw, &decoded); err != nil {
			return true // cannot tell: assume it does
		}
		targeting = decoded
	}
	return walkClock(targeting)
}

func walkClock(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for op, arg := range t {
			if op == "var" && varReadsClock(arg) {
				return true
			}
			if walkClock(arg) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(t, walkClock)
	}
	return false
}

// varReadsClock reports whether a `var` argument may name $flagd.timestamp.
func varReadsClock(arg any) bool {
	if args, ok := arg.([]any); ok {
		if len(args) == 0 {
			return false
		}
		arg = args[0]
	}
	switch p := arg.(type) {
	case string: // the only paths that read it (flagdValue)
		return p == "$flagd" || p == "$flagd.timestamp"
	case map[string]any, []any:
		return true // a computed path
	}
	return false
}
