package evaluation

import (
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// structCache keeps the protobuf Structs of responses that depend only on immutable
// data: the metadata of a flag seen through a selector, and the value of an object
// variant. Entries are immutable and keyed by pointer, so a cached Struct is always
// right; the cache is dropped whenever the store publishes a new snapshot, which
// bounds it by (served flags × selectors that found them + object variants).
// Responses share the cached Structs: they are only ever marshalled, never modified.
type structCache struct {
	cur atomic.Pointer[cacheGeneration]
}

type cacheGeneration struct {
	gen uint64
	m   sync.Map // cacheKey -> *structpb.Struct
}

type cacheKey struct {
	entry   *store.Entry
	object  bool           // the value of variant, else the metadata seen through sel
	sel     store.Selector // metadata only
	variant string         // object only
}

func (c *structCache) generation(gen uint64) *cacheGeneration {
	for {
		g := c.cur.Load()
		if g != nil && g.gen >= gen {
			return g
		}
		ng := &cacheGeneration{gen: gen}
		if c.cur.CompareAndSwap(g, ng) {
			return ng
		}
	}
}

// metadata is the response metadata of a flag: the selector reflection with every
// non-nil value of the flag's merged metadata copied over it (flagd's store.Get).
func (c *structCache) metadata(gen uint64, e *store.Entry, sel store.Selector) *structpb.Struct {
	g := c.generation(gen)
	k := cacheKey{entry: e, sel: sel}
	if v, ok := g.m.Load(k); ok {
		return v.(*structpb.Struct)
	}
	v, _ := g.m.LoadOrStore(k, buildMetadata(sel, e.Flag.Metadata))
	return v.(*structpb.Struct)
}

// object is the Struct of an object variant value.
func (c *structCache) object(gen uint64, e *store.Entry, variant string, m map[string]any) (*structpb.Struct, error) {
	g := c.generation(gen)
	k := cacheKey{entry: e, object: true, variant: variant}
	if v, ok := g.m.Load(k); ok {
		return v.(*structpb.Struct), nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		return nil, err
	}
	v, _ := g.m.LoadOrStore(k, s)
	return v.(*structpb.Struct), nil
}

// buildMetadata merges the selector reflection and the flag metadata. A value that
// a Struct cannot hold is left out rather than failing the evaluation.
func buildMetadata(sel store.Selector, md map[string]any) *structpb.Struct {
	refl := sel.Reflection()
	fields := make(map[string]*structpb.Value, len(refl)+len(md))
	for k, v := range refl {
		if pv, err := structpb.NewValue(v); err == nil {
			fields[k] = pv
		}
	}
	for k, v := range md {
		if v == nil {
			continue
		}
		if pv, err := structpb.NewValue(v); err == nil {
			fields[k] = pv
		}
	}
	return &structpb.Struct{Fields: fields}
}

// selectorMetadata is the top-level metadata of bulk responses: the selector
// reflection only.
func selectorMetadata(sel store.Selector) *structpb.Struct {
	return buildMetadata(sel, nil)
}
