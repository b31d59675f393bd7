package store

import (
	"runtime"
	"testing"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// liveHeap is the heap in use after garbage collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLiveMemoryOfALargeDocument: serving a flag document costs at most 5 times its
// size in live heap (it was about 20 times: the decoded JSON of every targeting rule
// kept for the sync API, the decoded variants next to the compiled ones, a map and
// six precomputed resolutions per flag, the flag-set metadata copied into every
// flag, a node per literal, every flag's sync JSON kept besides the payload). The
// document is generated with the load harness's mix of flag shapes (180 bytes a
// flag on average, the hardest case: the fixed cost per flag weighs most). Rendering
// the sync payload keeps the payload and nothing else.
func TestLiveMemoryOfALargeDocument(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a few hundred MB")
	}
	doc, err := flaggen.Generate(20000)
	if err != nil {
		t.Fatal(err)
	}
	before := liveHeap()
	s, err := New([]string{"big"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply("big", doc); err != nil {
		t.Fatal(err)
	}
	served := liveHeap()
	payload := s.Current().SyncPayload(Selector{})
	withSync := liveHeap()
	ratio := func(n uint64) float64 { return float64(n) / float64(len(doc)) }
	t.Logf("document %d bytes; live heap: flags served %.1fx, with the sync JSON %.1fx", len(doc), ratio(served-before), ratio(withSync-before))
	if r := ratio(served - before); r > 5 {
		t.Errorf("serving the document takes %.1f times its size in live heap, want at most 5", r)
	}
	// the sync JSON is kept once, as the payload (no copy per flag besides it)
	if extra := withSync - served; extra > uint64(len(payload))+uint64(len(payload))/5 {
		t.Errorf("rendering the sync payload (%d bytes) kept %d bytes, want about the payload alone", len(payload), extra)
	}
	runtime.KeepAlive(s)
	runtime.KeepAlive(payload)
}

// TestLargePayloadReturnsMemory: applying or rejecting a payload of reclaimAfter
// bytes or more, or replacing one, returns the freed memory to the OS right away
// (the garbage of a large document, or its flags once replaced, otherwise stay
// resident until the runtime gets to them, minutes); small payloads replacing small
// ones do not force a collection.
func TestLargePayloadReturnsMemory(t *testing.T) {
	s, err := New([]string{"src"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan struct{}, 10)
	s.reclaim = func() { calls <- struct{}{} }
	if err := s.Apply("src", []byte(`{"flags":{}}`)); err != nil {
		t.Fatal(err)
	}
	big, err := flaggen.Generate(30000)
	if err != nil {
		t.Fatal(err)
	}
	if len(big) < reclaimAfter {
		t.Fatalf("the large document has %d bytes, fewer than %d", len(big), reclaimAfter)
	}
	if err := s.Apply("src", big); err != nil {
		t.Fatal(err)
	}
	<-calls // bounded by the test's own timeout
	for s.reclaiming.Load() {
		runtime.Gosched()
	}
	if err := s.Apply("src", append(big[:len(big)-2:len(big)-2], ',')); err == nil {
		t.Fatal("a truncated document was applied")
	}
	<-calls
	for s.reclaiming.Load() {
		runtime.Gosched()
	}
	// a small payload replacing the large one: its flags are garbage now
	if err := s.Apply("src", []byte(`{"flags":{}}`)); err != nil {
		t.Fatal(err)
	}
	<-calls
	for s.reclaiming.Load() {
		runtime.Gosched()
	}
	if err := s.Apply("src", []byte(`{"flags":{}}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-calls:
		t.Error("memory was reclaimed for a small payload replacing a small one")
	default:
	}
}
