// Package file is the file flag source: it reads a JSON or YAML flag document and
// re-reads it when it changes, with fsnotify (inotify on Linux). It does not poll,
// except as a fallback (every 5 s) while inotify limits prevent watching.
//
// It watches directories, never the file itself: the file's directory, the directory
// of every symlink on the way to it (a Kubernetes ConfigMap mount's `flags.json ->
// ..data/flags.json` and `..data -> ..<timestamp>`), or, while the file's directory
// does not exist, its deepest existing ancestor. Events are filtered to the names
// that can change what the path reads; a name appearing (a rename over the file, a
// `..data` swap) is read at once, writes are debounced; and the watches are
// recomputed before every read, so atomic rename-over, truncate-and-write, delete
// and re-create, `..data` symlink swaps and a replaced directory are all followed.
// Path handling assumes Unix paths.
//
// What it sends: the whole document whenever its bytes change. A missing, empty or
// syntactically incomplete file seen right after a good one is treated as a save in
// progress: it is only reported if it is still so after Settle without any further
// event (a missing or empty file as an Update error, an incomplete one as data, which
// the store rejects with the parse problems). The store keeps serving the last good
// flags in both cases; the source re-sends the document after an error even if its
// bytes did not change, so that the store's error clears.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"sigs.k8s.io/yaml"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// Defaults of the options.
const (
	// DefaultDebounce is the quiet time after the last relevant event before the
	// file is re-read: it coalesces the burst of events one save produces (see
	// docs/performance.md "Flag propagation" for how it was chosen).
	DefaultDebounce = 2 * time.Millisecond
	// DefaultMaxDelay bounds the wait while events keep coming without a quiet gap.
	DefaultMaxDelay = 100 * time.Millisecond
	// DefaultSettle is how long a missing, empty or incomplete file must stay so,
	// after a good one, before it is reported: longer than a save takes even on a
	// busy node (flagd retries a removed file for about as long, #2001).
	DefaultSettle = time.Second
	// DefaultMaxSize is the largest document read (a ConfigMap holds at most 1 MiB).
	DefaultMaxSize = 64 << 20
	// retryInterval is how often the file is re-read and the watches retried while a
	// watch cannot be set up (inotify limits): a polling fallback until it works.
	retryInterval = 5 * time.Second
	// A read that fails for another reason than a missing or empty file (too many
	// open files, an I/O error, permissions, a file over the size limit) is retried
	// after minReadRetry, doubling up to maxReadRetry, until a read succeeds: no file
	// event may ever come to trigger another read.
	minReadRetry = 100 * time.Millisecond
	maxReadRetry = 10 * time.Second
)

// Source watches one file.
type Source struct {
	name     string // as configured: the source name
	log      zerolog.Logger
	debounce time.Duration
	maxDelay time.Duration
	settle   time.Duration
	maxSize  int64
	// onLoad, when set (tests), is called after each read with what was found
	// ("data", "unchanged", "missing", "empty", "incomplete", "error") and after any
	// update it caused was sent.
	onLoad func(kind string)
	// open opens the file (tests inject failures); os.Open when nil.
	open func(name string) (*os.File, error)
}

// Option configures a Source.
type Option func(*Source)

// WithLogger sets the logger (default: none). Errors reach the store as updates,
// which logs them; the source itself logs watch problems and, at debug level, events.
func WithLogger(log zerolog.Logger) Option { return func(s *Source) { s.log = log } }

// WithDebounce sets the quiet time after the last relevant event before re-reading.
func WithDebounce(d time.Duration) Option { return func(s *Source) { s.debounce = d } }

// WithSettle sets how long a missing, empty or incomplete file must stay so before it
// is reported.
func WithSettle(d time.Duration) Option { return func(s *Source) { s.settle = d } }

// WithMaxSize sets the largest document read, in bytes.
func WithMaxSize(n int64) Option { return func(s *Source) { s.maxSize = n } }

// New returns a source for path (as given: it is also the source's name).
func New(path string, opts ...Option) *Source {
	s := &Source{name: path, log: zerolog.Nop(), debounce: DefaultDebounce, maxDelay: DefaultMaxDelay,
		settle: DefaultSettle, maxSize: DefaultMaxSize}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Name is the path as configured.
func (s *Source) Name() string { return s.name }

// Run sends the file's content now and after every change, until ctx ends. It
// returns an error only for a path it cannot make absolute; a missing file or
// directory is reported as an update and waited for.
func (s *Source) Run(ctx context.Context, out chan<- flagsync.Update) error {
	abs, err := filepath.Abs(s.name)
	if err != nil {
		return fmt.Errorf("file source %s: %w", s.name, err)
	}
	r := &runner{Source: s, ctx: ctx, out: out, path: filepath.Clean(abs),
		log:  s.log.With().Str("source", s.name).Logger(),
		wake: stoppedTimer(), settleT: stoppedTimer(), retry: stoppedTimer(), readRetry: stoppedTimer()}
	defer r.close()
	r.refresh(false)
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		if r.w != nil {
			events, errs = r.w.Events, r.w.Errors
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				r.dropWatcher("the watcher closed")
				continue
			}
			if r.plan.relevant(ev.Name) {
				r.log.Debug().Str("event", ev.String()).Msg("file event")
				// A name appearing (a rename over the file, a `..data` swap) usually
				// completes a change: read at once. Writes come in bursts: debounce.
				r.schedule(!ev.Has(fsnotify.Create))
			}
		case err, ok := <-errs:
			if !ok {
				r.dropWatcher("the watcher closed")
				continue
			}
			// Typically an event queue overflow: events were lost, so re-read.
			r.log.Warn().Err(err).Msg("file watch error; re-reading")
			r.schedule(true)
		case <-r.wake.C:
			r.refresh(false)
		case <-r.settleT.C:
			r.settling = false
			r.refresh(true)
		case <-r.retry.C:
			r.refresh(false)
		case <-r.readRetry.C:
			r.refresh(false)
		}
	}
}

// runner is the state of one Run; only Run's goroutine touches it.
type runner struct {
	*Source
	ctx  context.Context
	out  chan<- flagsync.Update
	path string // absolute, clean
	log  zerolog.Logger

	w        *fsnotify.Watcher // nil while it cannot be created
	plan     watchPlan
	watchErr string // the watch problem last logged ("" when watching)

	wake       *time.Timer // debounce
	burstStart time.Time   // first event of the pending burst
	pending    bool
	settleT    *time.Timer
	settling   bool
	retry      *time.Timer
	readRetry  *time.Timer   // a failed read (see minReadRetry)
	readDelay  time.Duration // the next readRetry delay; 0 while reads succeed
	readErr    string        // the failing read's error, for the recovery log

	committed bool // something (data or an error) has been sent
	dataSent  bool // the last thing sent was data
	lastSum   [sha256.Size]byte
	lastErr   string
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

func (r *runner) close() {
	r.wake.Stop()
	r.settleT.Stop()
	r.retry.Stop()
	r.readRetry.Stop()
	if r.w != nil {
		_ = r.w.Close()
	}
}

// schedule re-reads, after the debounce quiet time if debounce is set, at once
// otherwise; at most maxDelay after the first event of a burst. A read that finds a
// half-done save is not reported before Settle (see refresh), so reading early is
// safe; debouncing only saves reads.
func (r *runner) schedule(debounce bool) {
	now := time.Now()
	if !r.pending {
		r.pending, r.burstStart = true, now
	}
	delay := time.Duration(0)
	if debounce {
		delay = r.debounce
	}
	if left := r.maxDelay - now.Sub(r.burstStart); left < delay {
		delay = max(left, 0)
	}
	r.wake.Reset(delay)
}

// refresh updates the watches, then reads the file (in this order, so that a change
// made in between is either read now or seen as an event) and sends what changed.
// confirm is set when a settle period ended: whatever is read is reported.
func (r *runner) refresh(confirm bool) {
	r.pending = false
	r.wake.Stop()
	r.syncWatches()
	res := r.load()
	if res.transient && r.committed && !confirm {
		if !r.settling {
			r.settling = true
			r.settleT.Reset(r.settle)
		}
		r.loaded(res.kind)
		return
	}
	r.settling = false
	r.settleT.Stop()
	r.retryFailedRead(res) // first: the recovery is logged before the flags it read are sent
	kind := r.commit(res)
	r.loaded(kind)
}

// retryFailedRead schedules the next read after a read error, with backoff, and logs
// the failure (once per distinct error) and the recovery: until then the store
// serves flags older than the file.
func (r *runner) retryFailedRead(res result) {
	if res.kind != "error" {
		r.readRetry.Stop()
		if r.readDelay > 0 {
			r.log.Info().Str("was", r.readErr).Msg("file source recovered: the file is read again")
			r.readDelay, r.readErr = 0, ""
		}
		return
	}
	if r.readDelay == 0 {
		r.readDelay = minReadRetry
	} else {
		r.readDelay = min(2*r.readDelay, maxReadRetry)
	}
	if msg := res.err.Error(); msg != r.readErr {
		r.log.Warn().Err(res.err).Dur("retrying_in", r.readDelay).Dur("retrying_at_most_every", maxReadRetry).
			Msg("file source cannot read the file; serving the last flags read until a retry succeeds")
		r.readErr = msg
	}
	r.readRetry.Reset(r.readDelay)
}

func (r *runner) loaded(kind string) {
	if r.onLoad != nil {
		r.onLoad(kind)
	}
}

// syncWatches makes the watched directories those of the current plan. It resolves
// again after adding a watch, since a directory may have appeared meanwhile.
func (r *runner) syncWatches() {
	if r.w == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			r.watchFailed(fmt.Sprintf("cannot create a file watcher: %v", err))
			r.plan = resolve(r.path)
			return
		}
		r.w = w
	}
	for range 8 {
		r.plan = resolve(r.path)
		watched := map[string]bool{}
		for _, d := range r.w.WatchList() {
			watched[d] = true
		}
		want := map[string]bool{}
		added, failed := false, ""
		for _, d := range r.plan.dirs {
			want[d] = true
			if watched[d] {
				continue
			}
			err := r.w.Add(d)
			switch {
			case err == nil:
				added = true
				r.log.Debug().Str("dir", d).Msg("watching directory")
			case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
				added = true // gone meanwhile: resolve again
			default:
				failed = fmt.Sprintf("cannot watch %s: %v", d, err)
			}
		}
		for d := range watched {
			if !want[d] {
				_ = r.w.Remove(d) // may already be gone with its directory
			}
		}
		if failed != "" {
			r.watchFailed(failed)
			return
		}
		if !added {
			break
		}
	}
	if r.watchErr != "" {
		r.log.Info().Msg("file watch restored")
		r.watchErr = ""
		r.retry.Stop()
	}
}

// watchFailed logs a watch problem (once per distinct problem) and falls back to
// re-reading every retryInterval until the watch can be set up.
func (r *runner) watchFailed(msg string) {
	if msg != r.watchErr {
		r.log.Error().Str("problem", msg).Dur("reread_every", retryInterval).
			Msg("file source cannot watch for changes; re-reading periodically (check fs.inotify.max_user_watches / max_user_instances)")
		r.watchErr = msg
	}
	r.retry.Reset(retryInterval)
}

// dropWatcher forgets a watcher that stopped; the next refresh creates another.
func (r *runner) dropWatcher(why string) {
	if r.w != nil {
		_ = r.w.Close()
		r.w = nil
	}
	r.watchFailed(why)
}

// result is one read of the file.
type result struct {
	data      []byte
	err       error
	kind      string // what was found, for onLoad
	transient bool   // maybe a save in progress: missing, empty or incomplete
}

func (r *runner) load() result {
	open := os.Open
	if r.open != nil {
		open = r.open
	}
	f, err := open(r.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if r.plan.missingDir != "" {
				return result{kind: "missing", transient: true, err: fmt.Errorf(
					"directory %s does not exist (watching %s until it is created)", r.plan.missingDir, strings.Join(r.plan.dirs, ", "))}
			}
			return result{kind: "missing", transient: true, err: errors.New("the file does not exist (waiting for it to be created)")}
		}
		return result{kind: "error", err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, r.maxSize+1))
	switch {
	case err != nil:
		return result{kind: "error", err: err}
	case int64(len(data)) > r.maxSize:
		return result{kind: "error", err: fmt.Errorf("the file is larger than %d bytes", r.maxSize)}
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return result{kind: "empty", transient: true, err: errors.New("the file is empty (waiting for it to be written)")}
	}
	if !complete(trimmed) {
		return result{kind: "incomplete", transient: true, data: data}
	}
	return result{kind: "data", data: data}
}

// complete reports whether a document is syntactically whole, decided as flags.Parse
// decides the format: JSON when it starts with '{' or '[', YAML otherwise. A truncated
// JSON document is never whole; a truncated YAML one may be (save YAML atomically).
func complete(doc []byte) bool {
	if doc[0] == '{' || doc[0] == '[' {
		return json.Valid(doc)
	}
	_, err := yaml.YAMLToJSON(doc)
	return err == nil
}

// commit sends what a read found, if it differs from what was last sent, and returns
// the kind of read for onLoad.
func (r *runner) commit(res result) string {
	r.committed = true
	if res.err != nil {
		msg := fmt.Sprintf("file source %s: %v", r.name, res.err)
		if r.dataSent || msg != r.lastErr {
			r.send(flagsync.Update{Source: r.name, Err: errors.New(msg)})
		}
		r.lastErr, r.dataSent = msg, false
		return res.kind
	}
	sum := sha256.Sum256(res.data)
	if r.dataSent && sum == r.lastSum {
		return "unchanged"
	}
	r.send(flagsync.Update{Source: r.name, Data: res.data})
	r.lastSum, r.dataSent, r.lastErr = sum, true, ""
	return res.kind
}

func (r *runner) send(u flagsync.Update) {
	select {
	case r.out <- u:
	case <-r.ctx.Done():
	}
}
