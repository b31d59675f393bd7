package proxy

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// decisionCache keeps decisions (token reviews, access reviews) until they expire,
// at most max of them (the least recently used go first), and computes a missing
// one once however many callers ask for it at the same time.
type decisionCache[K comparable, V any] struct {
	max int
	now func() time.Time

	mu       sync.Mutex
	entries  map[K]*list.Element
	order    *list.List // front: least recently used
	inflight map[K]*pending[V]
}

type entry[K comparable, V any] struct {
	key     K
	value   V
	expires time.Time
}

type pending[V any] struct {
	done  chan struct{}
	value V
	ttl   time.Duration
	err   error
}

func newDecisionCache[K comparable, V any](size int, now func() time.Time) *decisionCache[K, V] {
	return &decisionCache[K, V]{max: size, now: now, entries: map[K]*list.Element{}, order: list.New(), inflight: map[K]*pending[V]{}}
}

// get returns the value of key, computing it with compute when it is not cached or
// has expired. compute returns the value and how long it may be kept (0: not kept);
// an error is returned to every caller waiting for that computation and not kept.
// cached says whether the value came from the cache.
func (c *decisionCache[K, V]) get(ctx context.Context, key K, compute func() (V, time.Duration, error)) (value V, cached bool, err error) {
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*entry[K, V])
		if c.now().Before(e.expires) {
			c.order.MoveToBack(el)
			c.mu.Unlock()
			return e.value, true, nil
		}
		c.order.Remove(el)
		delete(c.entries, key)
	}
	if p, ok := c.inflight[key]; ok { // someone is computing it: wait for their answer
		c.mu.Unlock()
		select {
		case <-p.done:
			return p.value, true, p.err
		case <-ctx.Done():
			var zero V
			return zero, false, ctx.Err()
		}
	}
	p := &pending[V]{done: make(chan struct{})}
	c.inflight[key] = p
	c.mu.Unlock()

	p.value, p.ttl, p.err = compute()
	c.mu.Lock()
	delete(c.inflight, key)
	if p.err == nil && p.ttl > 0 {
		c.put(key, p.value, c.now().Add(p.ttl))
	}
	c.mu.Unlock()
	close(p.done)
	return p.value, false, p.err
}

// put stores a value (c.mu held), evicting the least recently used entry when full.
func (c *decisionCache[K, V]) put(key K, value V, expires time.Time) {
	if el, ok := c.entries[key]; ok {
		c.order.Remove(el)
	}
	for len(c.entries) >= c.max && c.order.Len() > 0 {
		oldest := c.order.Front()
		c.order.Remove(oldest)
		delete(c.entries, oldest.Value.(*entry[K, V]).key)
	}
	c.entries[key] = c.order.PushBack(&entry[K, V]{key: key, value: value, expires: expires})
}

// len is the number of entries kept (tests, metrics).
func (c *decisionCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
