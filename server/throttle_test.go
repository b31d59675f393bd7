package server

import (
	"sync"
	"testing"
	"time"
)

// TestLogThrottle: at most one occurrence per interval is let through, even from
// many goroutines at once, and it reports how many were held back since the last.
func TestLogThrottle(t *testing.T) {
	clock := time.Unix(1000, 0)
	var mu sync.Mutex
	th := &LogThrottle{Every: 10 * time.Second, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }}
	var wg sync.WaitGroup
	var logged, held sync.Map
	for i := range 1000 {
		wg.Go(func() {
			if ok, n := th.Allow(); ok {
				logged.Store(i, n)
			} else {
				held.Store(i, true)
			}
		})
	}
	wg.Wait()
	count := func(m *sync.Map) (n int) {
		m.Range(func(any, any) bool { n++; return true })
		return n
	}
	if got := count(&logged); got != 1 {
		t.Fatalf("%d of 1000 simultaneous occurrences logged, want 1", got)
	}
	mu.Lock()
	clock = clock.Add(9 * time.Second)
	mu.Unlock()
	if ok, _ := th.Allow(); ok {
		t.Error("logged again within the interval")
	}
	mu.Lock()
	clock = clock.Add(time.Second)
	mu.Unlock()
	ok, n := th.Allow()
	if !ok || n != 1000 {
		t.Errorf("after the interval: log %v with %d held back, want true with 1000", ok, n)
	}
	if ok, _ := th.Allow(); ok {
		t.Error("logged twice in a row")
	}
}
