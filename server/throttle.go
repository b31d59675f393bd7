package server

import (
	"sync/atomic"
	"time"
)

// DefaultLogEvery is how often a throttled warning is logged at most.
const DefaultLogEvery = 10 * time.Second

// LogThrottle lets a warning that a client can trigger at will (a refused stream,
// a refused connection) through at most once per interval, so that a flood of
// refusals does not become a flood of log lines; the line it lets through carries
// how many occurrences were not logged since the previous one. The zero value logs
// at most every DefaultLogEvery. It is safe for concurrent use.
type LogThrottle struct {
	// Every is the shortest interval between two logged occurrences; 0 means
	// DefaultLogEvery.
	Every time.Duration

	// Now is the clock (tests); nil is time.Now. Set it before the first Allow.
	Now func() time.Time

	last       atomic.Int64 // unix nanos of the last logged occurrence; 0: none yet
	suppressed atomic.Int64
}

// Allow records an occurrence and reports whether to log it, and how many
// occurrences were not logged before it (reset when it returns true).
func (t *LogThrottle) Allow() (log bool, suppressed int64) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	every := t.Every
	if every <= 0 {
		every = DefaultLogEvery
	}
	n := now().UnixNano()
	last := t.last.Load()
	if (last == 0 || n-last >= int64(every)) && t.last.CompareAndSwap(last, n) {
		return true, t.suppressed.Swap(0)
	}
	t.suppressed.Add(1)
	return false, 0
}
