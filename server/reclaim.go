package server

import (
	"context"
	"runtime"
	"runtime/debug"
	"time"
)

// Reclaim settings of ReclaimAfterBursts in flagd mode.
const (
	// ReclaimEvery is how often the goroutine count is sampled.
	ReclaimEvery = 5 * time.Second
	// ReclaimMinDrop is the smallest burst worth a forced collection: a thousand
	// goroutines of streams or connections hold 20 MB or more.
	ReclaimMinDrop = 1000
)

// ReclaimAfterBursts returns memory to the OS once a burst of connections, streams
// or requests has ended. Each holds a goroutine whose stack and buffers go back to
// the Go heap when it ends, but not to the OS: net/http and connect-go keep the
// buffers of closed connections and streams in sync.Pools, which release them only
// after two collections, and an idle process collects every two minutes, so 2,000
// closed EventStreams kept 70 MB resident for minutes (20 MB of it in the pools'
// buffers). Every interval it samples the number of goroutines; when that number
// has fallen by at least minDrop from the highest seen since the last reclaim, and
// to less than half of it, it runs two collections and returns the freed memory
// (Reclaim). It runs until ctx ends.
func ReclaimAfterBursts(ctx context.Context, every time.Duration, minDrop int) {
	b := burst{minDrop: minDrop}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if b.ended(runtime.NumGoroutine()) {
				Reclaim()
			}
		}
	}
}

// burst tracks the goroutine count between reclaims.
type burst struct {
	minDrop int
	peak    int
}

// ended records a sample and reports whether a burst has just ended (and resets).
func (b *burst) ended(n int) bool {
	if n > b.peak {
		b.peak = n
	}
	if b.peak-n >= b.minDrop && n < b.peak/2 {
		b.peak = n
		return true
	}
	return false
}

// Reclaim empties the sync.Pools (two collections: a pool keeps its items through
// one) and returns every free page to the OS (debug.FreeOSMemory). It blocks for the
// time of the collections, a few milliseconds for a small heap.
func Reclaim() {
	runtime.GC()
	debug.FreeOSMemory()
}
