// Package store holds the flags being served. Each configured source contributes a
// whole flag document; the store parses it (leniently, as flagd does), merges all
// sources by priority and publishes an immutable Snapshot through an atomic pointer,
// so request handlers read flags without locking. A payload that fails to parse is
// rejected and the source keeps serving its last good flags.
package store

import (
	"fmt"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// SourceStatus describes one source for readiness, logs and metrics.
type SourceStatus struct {
	Name      string
	Priority  int
	Ready     bool      // a payload of this source has been applied
	Flags     int       // flags currently served from this source
	Applied   uint64    // payloads applied
	Failures  uint64    // payloads rejected or source errors
	LastError string    // "" after a successful update
	LastApply time.Time // time of the last applied payload
	// FailingSince is when the source's current run of failures began (zero while
	// its last update succeeded): from then on it may serve flags older than its
	// origin.
	FailingSince time.Time
}

type source struct {
	status  SourceStatus
	entries []*Entry
	size    int // bytes of the payload its entries come from (0: parsed elsewhere)
}

// Store merges the payloads of a fixed, ordered list of sources.
type Store struct {
	log     zerolog.Logger
	mu      sync.Mutex // serialises updates; readers use current
	sources []*source
	byName  map[string]*source
	gen     uint64
	current atomic.Pointer[Snapshot]
	ready   atomic.Bool
	watch   map[chan struct{}]struct{}
	now     func() time.Time

	// reclaim returns freed memory to the OS (two collections, then
	// debug.FreeOSMemory; tests count the calls); reclaiming is set while it runs.
	reclaim    func()
	reclaiming atomic.Bool
}

// reclaimAfter is the payload size from which applying it (or rejecting it) is
// followed by returning the freed memory to the OS at once: decoding a document
// takes about ten times its size, all garbage once it is compiled (or rejected),
// and the previous snapshot's flags become garbage too. Left to the runtime, a 50 MB
// document's gigabyte stays resident for minutes; small payloads are not worth a
// forced collection.
const reclaimAfter = 4 << 20

// New creates a store for the named sources, in priority order (later sources win).
func New(sourceNames []string, log zerolog.Logger) (*Store, error) {
	s := &Store{log: log, byName: map[string]*source{}, watch: map[chan struct{}]struct{}{}, now: time.Now, reclaim: func() { runtime.GC(); debug.FreeOSMemory() }}
	for i, name := range sourceNames {
		if _, dup := s.byName[name]; dup {
			return nil, fmt.Errorf("source %q is configured twice", name)
		}
		src := &source{status: SourceStatus{Name: name, Priority: i}}
		s.sources = append(s.sources, src)
		s.byName[name] = src
	}
	s.current.Store(build(0, nil))
	s.ready.Store(len(sourceNames) == 0)
	return s, nil
}

// Current returns the snapshot being served.
func (s *Store) Current() *Snapshot { return s.current.Load() }

// Ready reports whether every source has had a payload applied, so that every
// configured flag is being served.
func (s *Store) Ready() bool { return s.ready.Load() }

// Apply parses a whole flag document from a source and, if it is valid, replaces
// that source's flags and publishes a new snapshot. An invalid document is rejected
// with an error listing every problem, and the source keeps its last good flags.
func (s *Store) Apply(sourceName string, data []byte) error {
	s.mu.Lock()
	replacesLarge := s.byName[sourceName] != nil && s.byName[sourceName].size >= reclaimAfter
	s.mu.Unlock()
	if len(data) >= reclaimAfter || replacesLarge {
		defer s.reclaimMemory() // the garbage of decoding it, or the flags it replaced
	}
	set, err := flags.Parse(data, flags.Lenient)
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		src, ok := s.byName[sourceName]
		if !ok {
			return fmt.Errorf("unknown source %q", sourceName)
		}
		src.status.Failures++
		s.logFailure(src, err, "rejected flag payload; keeping the last good flags")
		return fmt.Errorf("source %s: %w", Redact(sourceName), err)
	}
	for _, w := range set.Warnings {
		s.log.Warn().Str("source", Redact(sourceName)).Str("path", w.Path).Msg(w.Message)
	}
	if err := s.ApplyParsed(sourceName, set); err != nil {
		return err
	}
	s.mu.Lock()
	s.byName[sourceName].size = len(data)
	s.mu.Unlock()
	return nil
}

// ApplyParsed replaces a source's flags with an already parsed document (whose
// warnings the caller has reported) and publishes a new snapshot.
func (s *Store) ApplyParsed(sourceName string, set *flags.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, ok := s.byName[sourceName]
	if !ok {
		return fmt.Errorf("unknown source %q", sourceName)
	}
	entries := make([]*Entry, 0, len(set.Flags))
	for _, f := range set.Flags {
		entries = append(entries, newEntry(f, sourceName, src.status.Priority))
	}
	src.entries = entries
	src.size = 0 // Apply records the payload's size
	src.status.Ready = true
	src.status.Applied++
	src.status.Flags = len(entries)
	src.status.LastError = ""
	src.status.FailingSince = time.Time{}
	src.status.LastApply = s.now()
	s.publish()
	s.log.Info().Str("source", Redact(sourceName)).Int("flags", len(entries)).Uint64("generation", s.gen).Msg("applied flag payload")
	return nil
}

// reclaimMemory returns freed memory to the OS in the background, once at a time.
func (s *Store) reclaimMemory() {
	if !s.reclaiming.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer s.reclaiming.Store(false)
		s.reclaim()
	}()
}

// Fail records an error of a source that could not deliver a payload (for example a
// file that disappeared). Its last good flags stay.
func (s *Store) Fail(sourceName string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	src, ok := s.byName[sourceName]
	if !ok {
		s.log.Error().Str("source", Redact(sourceName)).Err(err).Msg("error from an unknown source")
		return
	}
	src.status.Failures++
	s.logFailure(src, err, "source error; keeping the last good flags")
}

// logFailure records err as the source's last error and logs it at error level when
// it is new; a source repeating the same error (a server down, polled every few
// seconds) is logged at debug level until the error changes. Called with mu held.
func (s *Store) logFailure(src *source, err error, msg string) {
	level := zerolog.ErrorLevel
	if err.Error() == src.status.LastError {
		level = zerolog.DebugLevel
	}
	if src.status.LastError == "" {
		src.status.FailingSince = s.now()
	}
	src.status.LastError = err.Error()
	s.log.WithLevel(level).Str("source", Redact(src.status.Name)).Err(err).Uint64("failures", src.status.Failures).Msg(msg)
}

// Redact is the one form in which a source name leaves the process outside the
// selectors that match it (logs, /readyz, metrics, errors): http(s) and grpc
// sources are named by their URL, which may carry credentials in its user info or
// query. User info becomes "redacted@", a query "?redacted", a fragment is dropped.
// A name that does not parse as a URL but looks like one is cut the same way by
// text, so a malformed URL cannot leak either.
func Redact(name string) string {
	u, err := url.Parse(name)
	if err != nil {
		return redactText(name)
	}
	if u.Scheme == "" || u.Host == "" {
		return name
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery, u.ForceQuery = "redacted", false
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}

// redactText redacts a name url.Parse rejects: everything after '?' or '#', and
// the user info between "://" and the last '@' before the path.
func redactText(name string) string {
	rest, query := name, ""
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		if rest[i] == '?' {
			query = "?redacted"
		}
		rest = rest[:i]
	}
	if scheme := strings.Index(rest, "://"); scheme >= 0 {
		authority := rest[scheme+3:]
		if slash := strings.IndexByte(authority, '/'); slash >= 0 {
			authority = authority[:slash]
		}
		if at := strings.LastIndexByte(authority, '@'); at >= 0 {
			rest = rest[:scheme+3] + "redacted" + rest[scheme+3+at:]
		}
	}
	return rest + query
}

// Status returns the state of every source, in priority order.
func (s *Store) Status() []SourceStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SourceStatus, len(s.sources))
	for i, src := range s.sources {
		out[i] = src.status
	}
	return out
}

// publish builds and swaps in a new snapshot, then wakes the watchers. Called with mu held.
func (s *Store) publish() {
	perSource := make([][]*Entry, len(s.sources))
	ready := true
	for i, src := range s.sources {
		perSource[i] = src.entries
		ready = ready && src.status.Ready
	}
	s.gen++
	s.current.Store(build(s.gen, perSource))
	s.ready.Store(ready)
	for ch := range s.watch {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending; the watcher will read the newest snapshot
		}
	}
}

// Watch returns a channel that receives a value after every new snapshot (wake-ups
// coalesce: read Current when woken), and a function that stops the watch.
func (s *Store) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	s.watch[ch] = struct{}{}
	s.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.watch, ch)
			s.mu.Unlock()
		})
	}
}
