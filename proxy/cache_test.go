package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestDecisionCacheExpiresAndIsBounded(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := newDecisionCache[string, int](2, clk.now)
	calls := 0
	compute := func(v int, ttl time.Duration) func() (int, time.Duration, error) {
		return func() (int, time.Duration, error) { calls++; return v, ttl, nil }
	}
	ctx := context.Background()
	use := func(key string, v int) {
		if _, _, err := c.get(ctx, key, compute(v, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if v, cached, _ := c.get(ctx, "a", compute(1, time.Minute)); v != 1 || cached {
		t.Fatalf("first get = %d cached %v", v, cached)
	}
	if v, cached, _ := c.get(ctx, "a", compute(2, time.Minute)); v != 1 || !cached {
		t.Fatalf("second get = %d cached %v, want the cached 1", v, cached)
	}
	clk.advance(time.Minute)
	if v, cached, _ := c.get(ctx, "a", compute(3, time.Minute)); v != 3 || cached {
		t.Fatalf("after expiry = %d cached %v, want a new 3", v, cached)
	}
	use("b", 4)
	use("a", 0) // a is now the most recently used
	use("c", 5) // evicts b
	if n := c.len(); n != 2 {
		t.Fatalf("%d entries, want at most 2", n)
	}
	before := calls
	use("a", 0)
	use("b", 6)
	if calls != before+1 {
		t.Errorf("a should have stayed and b been evicted: %d computations, want 1", calls-before)
	}
	if v, _, _ := c.get(ctx, "z", compute(7, 0)); v != 7 {
		t.Fatal(v)
	}
	if _, cached, _ := c.get(ctx, "z", compute(8, 0)); cached {
		t.Error("a value with ttl 0 was kept")
	}
}

func TestDecisionCacheComputesOnceForConcurrentCallers(t *testing.T) {
	c := newDecisionCache[string, int](10, time.Now)
	var calls atomic.Int32
	release := make(chan struct{})
	var wg sync.WaitGroup
	results := make([]int, 50)
	for i := range results {
		wg.Go(func() {
			v, _, err := c.get(context.Background(), "k", func() (int, time.Duration, error) {
				calls.Add(1)
				<-release
				return 42, time.Minute, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = v
		})
	}
	time.Sleep(50 * time.Millisecond) // most queue behind the first; a late one finds the cached value
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d computations for 50 concurrent callers, want 1", n)
	}
	for _, v := range results {
		if v != 42 {
			t.Fatalf("results %v", results)
		}
	}
}

func TestDecisionCacheDoesNotKeepErrors(t *testing.T) {
	c := newDecisionCache[string, int](10, time.Now)
	boom := errors.New("api server away")
	if _, _, err := c.get(context.Background(), "k", func() (int, time.Duration, error) { return 0, time.Minute, boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if v, cached, err := c.get(context.Background(), "k", func() (int, time.Duration, error) { return 1, time.Minute, nil }); err != nil || cached || v != 1 {
		t.Fatalf("after an error: %d cached %v err %v", v, cached, err)
	}
	// a waiter whose context ends stops waiting
	block, started := make(chan struct{}), make(chan struct{})
	go func() {
		_, _, _ = c.get(context.Background(), "slow", func() (int, time.Duration, error) { close(started); <-block; return 1, time.Minute, nil })
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := c.get(ctx, "slow", func() (int, time.Duration, error) { return 2, time.Minute, nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("waiter with an ended context: %v", err)
	}
	close(block)
}
