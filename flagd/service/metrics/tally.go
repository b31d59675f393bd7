package metrics

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// An OFREP bulk answer evaluates every flag of a selection, 1,000 in the load
// harness, and each evaluation increments two Prometheus counters: 2,000 atomic
// additions per request on counters that every request on every core increments,
// whose cache lines then travel between the cores. Under load that cost about a
// quarter of the server's CPU per answer. A Tally counts the outcomes a bulk plan
// can have (its slots) in shards instead: a request takes a shard no other request
// holds, counts with plain additions, and gives it back; the answers of flags
// without targeting are counted once per answer. The counts reach the Prometheus
// counters when the metrics are gathered (scrape, OTLP export) and when the tally
// is retired, so a scrape always sees every evaluation answered before it.

// shardsPerCore bounds a tally's shards (GOMAXPROCS of them are in use at a time,
// more when a request is preempted while it holds one): each holds a counter per
// slot, 17 KiB for the 1,000 flags of the load harness.
const shardsPerCore = 4

// TallySlot is an outcome a Tally counts: an evaluation of the flag Key to Variant
// with Reason, or failing with ErrorCode.
type TallySlot struct {
	Key       string
	Variant   string
	Reason    eval.Reason
	ErrorCode eval.ErrorCode
}

// Tally counts evaluations of known outcomes in per-request shards, added to the
// evaluation counters when the metrics are gathered and when it is retired. Slots
// [0, fixed) are counted once per Answer. A nil *Tally counts nothing (Acquire
// returns nil, and the caller counts directly).
type Tally struct {
	m        *Metrics
	slots    []TallySlot
	counters []EvaluationCounters // per slot, looked up on its first count (under m.tallyMu)
	fixed    int
	retired  atomic.Bool
	mu       sync.Mutex // guards shards
	shards   []*TallyShard
	max      int       // shards at most: beyond, callers count directly
	free     sync.Pool // *TallyShard: one a core recently used, usually free
}

// TallyShard is a Tally's counts held by one request at a time (Tally.Acquire).
type TallyShard struct {
	busy    atomic.Bool
	answers uint64
	counts  []uint64
}

// Count records one evaluation with the outcome of slot i.
func (sh *TallyShard) Count(i int) { sh.counts[i]++ }

// Answer records one answer: one evaluation of every fixed slot.
func (sh *TallyShard) Answer() { sh.answers++ }

// NewTally returns a live Tally of slots, the first fixed of which are counted per
// answer, or nil when m is nil. The caller must Retire it once no request uses it,
// or it is kept (and flushed at every gathering) for the life of m.
func (m *Metrics) NewTally(slots []TallySlot, fixed int) *Tally {
	if m == nil {
		return nil
	}
	t := &Tally{m: m, slots: slots, counters: make([]EvaluationCounters, len(slots)), fixed: fixed, max: shardsPerCore * runtime.GOMAXPROCS(0)}
	m.tallyMu.Lock()
	m.tallies[t] = struct{}{}
	m.tallyMu.Unlock()
	return t
}

// Acquire returns a shard for the caller alone, or nil when t is nil or retired, or
// all its shards are in use: the caller then counts with EvaluationCounters.
// Release gives it back.
func (t *Tally) Acquire() *TallyShard {
	if t == nil || t.retired.Load() {
		return nil
	}
	sh, _ := t.free.Get().(*TallyShard)
	if sh == nil || !sh.busy.CompareAndSwap(false, true) {
		if sh = t.anyFree(); sh == nil {
			return nil
		}
	}
	// retired after the first check: Retire may have flushed this shard already
	if t.retired.Load() {
		sh.busy.Store(false)
		return nil
	}
	return sh
}

// anyFree returns a free shard, made busy, or a new one, or nil when t has its
// maximum of shards and all are in use: the pool drops its shards at garbage
// collections, and the shards stay in t.shards, so a shard is only made when every
// other is in use.
func (t *Tally) anyFree() *TallyShard {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, sh := range t.shards {
		if sh.busy.CompareAndSwap(false, true) {
			return sh
		}
	}
	if len(t.shards) >= t.max {
		return nil
	}
	sh := &TallyShard{counts: make([]uint64, len(t.slots))}
	sh.busy.Store(true)
	t.shards = append(t.shards, sh)
	return sh
}

// Release gives back a shard from Acquire (nil is ignored).
func (t *Tally) Release(sh *TallyShard) {
	if sh == nil {
		return
	}
	sh.busy.Store(false)
	t.free.Put(sh)
}

// Retire adds t's counts to the counters for the last time and stops counting in
// shards: a request still holding t afterwards gets nil from Acquire.
func (t *Tally) Retire() {
	if t == nil {
		return
	}
	t.m.tallyMu.Lock()
	defer t.m.tallyMu.Unlock()
	t.retired.Store(true)
	t.flushLocked()
	delete(t.m.tallies, t)
}

// flushLocked adds every shard's counts to the counters and zeroes them, waiting
// for shards in use (a request holds one while it encodes an answer). The caller
// holds m.tallyMu.
func (t *Tally) flushLocked() {
	t.mu.Lock()
	shards := t.shards
	t.mu.Unlock()
	for _, sh := range shards {
		for !sh.busy.CompareAndSwap(false, true) {
			runtime.Gosched()
		}
		if n := sh.answers; n > 0 {
			sh.answers = 0
			for i := range t.fixed {
				t.add(i, n)
			}
		}
		for i, n := range sh.counts {
			if n > 0 {
				sh.counts[i] = 0
				t.add(i, n)
			}
		}
		sh.busy.Store(false)
	}
}

// add adds n evaluations of slot i to its counters.
func (t *Tally) add(i int, n uint64) {
	c := &t.counters[i]
	if c.reasons == nil {
		s := t.slots[i]
		*c = t.m.EvaluationCounters(s.Key, true, eval.Resolution{Variant: s.Variant, Reason: s.Reason, ErrorCode: s.ErrorCode})
	}
	c.reasons.Add(float64(n))
	if c.impressions != nil {
		c.impressions.Add(float64(n))
	}
}

// TallySet holds the tallies of a set of caches that is replaced as a whole (the
// plans or rule groups of one snapshot), to retire them together. The zero value
// is an empty set.
type TallySet struct {
	mu      sync.Mutex
	tallies []*Tally
	retired bool
}

// Adopt adds t to the set, to be retired with it; a retired set retires t at once.
// A nil t is ignored.
func (s *TallySet) Adopt(t *Tally) {
	if t == nil {
		return
	}
	s.mu.Lock()
	if s.retired {
		s.mu.Unlock()
		t.Retire()
		return
	}
	s.tallies = append(s.tallies, t)
	s.mu.Unlock()
}

// Retire retires every tally of the set and those adopted later: their counts go
// to the counters, and requests still counting with them count directly.
func (s *TallySet) Retire() {
	s.mu.Lock()
	s.retired = true
	ts := s.tallies
	s.tallies = nil
	s.mu.Unlock()
	for _, t := range ts {
		t.Retire()
	}
}

// flushTallies adds the counts of every live tally to the counters.
func (m *Metrics) flushTallies() {
	m.tallyMu.Lock()
	defer m.tallyMu.Unlock()
	for t := range m.tallies {
		t.flushLocked()
	}
}

// flushingVec is an evaluation counter family that adds the tallies' counts before
// it is collected.
type flushingVec struct {
	*prometheus.CounterVec
	m *Metrics
}

// Collect flushes the tallies, then collects the counters.
func (v flushingVec) Collect(ch chan<- prometheus.Metric) {
	v.m.flushTallies()
	v.CounterVec.Collect(ch)
}
