package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"sort"
	"sync"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// Entry is one flag as served: the compiled flag, the source it came from and that
// source's priority (its index in the configured source list; later sources win).
type Entry struct {
	Flag     *eval.Flag
	Source   string
	Priority int

	fingerprint sync.Once
	sum         [sha256.Size]byte

	seq int // position in (priority, document order); the higher wins a tie on key
}

// syncFlag is the sync API's JSON form of a flag (flagd's model.Flag without key).
type syncFlag struct {
	State          string         `json:"state"`
	DefaultVariant string         `json:"defaultVariant"`
	Variants       map[string]any `json:"variants"`
	Targeting      any            `json:"targeting,omitempty"`
	Source         string         `json:"source"`
	Metadata       map[string]any `json:"metadata,omitempty"`
}

func newEntry(f *eval.Flag, source string, priority int) *Entry {
	return &Entry{Flag: f, Source: source, Priority: priority}
}

// JSON is the flag as the sync API serves it: state, defaultVariant, variants,
// targeting ($ref inlined), source (redacted: Redact) and merged metadata. It is
// encoded when asked for and not kept: most deployments never serve the sync API,
// and those that do render a selection's payload once per snapshot (the sync
// server caches it), so keeping every flag's JSON as well would double the memory a
// document costs.
func (e *Entry) JSON() json.RawMessage {
	state := e.Flag.State
	if state == "" {
		state = "ENABLED"
	}
	b, err := json.Marshal(syncFlag{
		State:          state,
		DefaultVariant: e.Flag.DefaultVariant,
		Variants:       e.Flag.VariantValues(),
		Targeting:      e.Flag.Targeting,
		Source:         Redact(e.Source), // anyone who reaches the sync port reads it
		Metadata:       e.Flag.Metadata,
	})
	if err != nil { // values come from a JSON or YAML decoder: cannot happen
		return json.RawMessage(`{}`)
	}
	return b
}

// Fingerprint changes whenever anything a client can observe changes (it is the hash
// of JSON, computed on first use).
func (e *Entry) Fingerprint() [sha256.Size]byte {
	e.fingerprint.Do(func() { e.sum = sha256.Sum256(e.JSON()) })
	return e.sum
}

// view is the flags one selector sees: one entry per key, and the same sorted by key.
type view struct {
	byKey map[string]*Entry
	list  []*Entry
}

func newView() *view { return &view{byKey: map[string]*Entry{}} }

// put keeps e unless the view already holds the key from a higher-priority source,
// or from later in the same source.
func (v *view) put(e *Entry) {
	if old, ok := v.byKey[e.Flag.Key]; ok && old.seq > e.seq {
		return
	}
	v.byKey[e.Flag.Key] = e
}

func (v *view) seal() {
	v.list = make([]*Entry, 0, len(v.byKey))
	for _, e := range v.byKey {
		v.list = append(v.list, e)
	}
	sort.Slice(v.list, func(i, j int) bool { return v.list[i].Flag.Key < v.list[j].Flag.Key })
}

// Snapshot is an immutable view of every served flag. Readers get it from
// Store.Current without locking and may keep it as long as they like.
type Snapshot struct {
	// Generation increases with every published snapshot.
	Generation uint64
	all        *view
	sets       map[string]*view
	sources    map[string]*view
}

var emptyView = &view{byKey: map[string]*Entry{}}

// build merges the sources' entries (given in priority order, lowest first). For
// each flag set and key the highest-priority copy wins; a lower-priority copy is kept
// by its source and comes back if the higher one disappears. Without a selector a key
// resolves to the highest-priority copy across flag sets (ties within one source: the
// one defined last). Entries are shared between snapshots, so seq is reassigned on
// every build: build is only called under the store's lock.
func build(generation uint64, perSource [][]*Entry) *Snapshot {
	s := &Snapshot{Generation: generation, all: newView(), sets: map[string]*view{}, sources: map[string]*view{}}
	type setKey struct{ set, key string }
	merged := map[setKey]*Entry{}
	seq := 0
	for _, entries := range perSource {
		for _, e := range entries {
			seq++
			e.seq = seq
			src, ok := s.sources[e.Source]
			if !ok {
				src = newView()
				s.sources[e.Source] = src
			}
			src.put(e)
			merged[setKey{e.Flag.FlagSetID, e.Flag.Key}] = e // later (higher priority) wins
		}
	}
	for k, e := range merged {
		set, ok := s.sets[k.set]
		if !ok {
			set = newView()
			s.sets[k.set] = set
		}
		set.put(e)
		s.all.put(e)
	}
	s.all.seal()
	// A flag set or source holding every served flag (one source, one flag set: the
	// common case) shares the all-flags view instead of a copy of it.
	for _, views := range []map[string]*view{s.sets, s.sources} {
		for name, v := range views {
			if v.same(s.all) {
				views[name] = s.all
				continue
			}
			v.seal()
		}
	}
	return s
}

// same reports whether v holds exactly the entries of o (o sealed).
func (v *view) same(o *view) bool {
	if len(v.byKey) != len(o.byKey) {
		return false
	}
	for k, e := range v.byKey {
		if o.byKey[k] != e {
			return false
		}
	}
	return true
}

func (s *Snapshot) view(sel Selector) *view {
	var v *view
	switch sel.Kind {
	case SelectFlagSetID:
		v = s.sets[sel.Value]
	case SelectSource:
		v = s.sources[sel.Value]
	default:
		v = s.all
	}
	if v == nil {
		return emptyView
	}
	return v
}

// Get returns the flag a request with this selector resolves for key: without a
// selector the highest-priority flag of that key across all flag sets.
func (s *Snapshot) Get(key string, sel Selector) (*Entry, bool) {
	e, ok := s.view(sel).byKey[key]
	return e, ok
}

// List returns the flags a selector sees, one per key, sorted by key. The slice is
// shared: callers must not modify it.
func (s *Snapshot) List(sel Selector) []*Entry {
	return s.view(sel).list
}

// Len is the number of distinct flag keys served without a selector.
func (s *Snapshot) Len() int { return len(s.all.list) }

// Change is how a flag changed between two snapshots, in flagd's EventStream terms.
type Change string

// The change types of configuration_change events.
const (
	ChangeWrite  Change = "write"  // the flag is new
	ChangeUpdate Change = "update" // something observable changed
	ChangeDelete Change = "delete" // the flag is gone
)

// Changes lists, per flag key, how the selector's view changed from prev to s. A nil
// prev counts as empty.
func (s *Snapshot) Changes(prev *Snapshot, sel Selector) map[string]Change {
	out := map[string]Change{}
	now := s.view(sel).byKey
	var before map[string]*Entry
	if prev != nil {
		before = prev.view(sel).byKey
	}
	for k, e := range now {
		old, ok := before[k]
		switch {
		case !ok:
			out[k] = ChangeWrite
		case old.Fingerprint() != e.Fingerprint():
			out[k] = ChangeUpdate
		}
	}
	for k := range before {
		if _, ok := now[k]; !ok {
			out[k] = ChangeDelete
		}
	}
	return out
}

// SyncPayload renders the selector's flags as the sync API's flag_configuration:
// {"flags": {"<key>": {...}}}.
func (s *Snapshot) SyncPayload(sel Selector) []byte {
	list := s.List(sel)
	var b bytes.Buffer
	b.WriteString(`{"flags":{`)
	for i, e := range list {
		if i > 0 {
			b.WriteByte(',')
		}
		key, _ := json.Marshal(e.Flag.Key) //nolint:errchkjson // a string always encodes
		b.Write(key)
		b.WriteByte(':')
		b.Write(e.JSON())
	}
	b.WriteString(`}}`)
	if b.Cap() > b.Len()+b.Len()/8 { // the payload is cached: do not keep the growth slack
		return bytes.Clone(b.Bytes())
	}
	return b.Bytes()
}
