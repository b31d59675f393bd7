package evaluation

import (
	"sync"
)

// A ResolveAll of 1,000 flags built a 90 KB slice of items and a 100 KB response
// per call, both garbage once the response is written: at a thousand calls a
// second, a quarter of the server's CPU went to the garbage collector. Both are
// pooled: the items until the response is encoded, the gRPC response until grpc-go
// has written it (mem.NewBuffer hands it back through replyPool.Put). Neither holds
// an evaluation context: items carry flag keys, variants, values and metadata,
// responses are answers.

// maxPooledItems keeps one huge selection from pinning its items in the pool.
const maxPooledItems = 1 << 14

// maxPooledReply keeps one huge response from pinning memory in the pool.
const maxPooledReply = 1 << 20

// itemPool recycles ResolveAll's item slices.
type itemPool struct{ p sync.Pool } // *[]bulkItem

// get returns an empty slice with room for n items.
func (ip *itemPool) get(n int) []bulkItem {
	if p, ok := ip.p.Get().(*[]bulkItem); ok && cap(*p) >= n {
		return (*p)[:0]
	}
	return make([]bulkItem, 0, n)
}

// put returns items (cleared) to the pool; the caller no longer uses them. nil is
// ignored.
func (ip *itemPool) put(items []bulkItem) {
	if items == nil || cap(items) > maxPooledItems { // nil: none taken (gRPC's pieces answered)
		return
	}
	items = items[:cap(items)]
	clear(items)
	items = items[:0]
	ip.p.Put(&items)
}

// replyPool recycles encoded gRPC responses; it is the mem.BufferPool grpc-go
// returns them to once written.
type replyPool struct{ p sync.Pool } // *[]byte

// Get returns a buffer of length n (mem.BufferPool).
func (rp *replyPool) Get(n int) *[]byte {
	if b, ok := rp.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n)
	return &b
}

// Put takes a buffer back (mem.BufferPool); oversized ones are dropped.
func (rp *replyPool) Put(b *[]byte) {
	if cap(*b) > maxPooledReply {
		return
	}
	rp.p.Put(b)
}
