package evaluation

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// bulkItem is one flag of a ResolveAll response. value is bool, string, float64,
// *structpb.Struct, or nil for no value.
type bulkItem struct {
	key     string
	reason  string
	variant string
	value   any
	meta    *structpb.Struct
	// the cached encodings of an object value and of meta, for the hand encoder of
	// the gRPC response (appendResolveAll); nil when there is none
	objC, metaC *cachedStruct
	// utf8 says that key, reason and variant are valid UTF-8 (the flag's key and
	// variant names were checked once per snapshot: entryCache.namesValid)
	utf8 bool
}

// defaultType is the type flagd's ResolveAll resolves a flag as: the type of its
// default variant's value, or TypeAny when there is no default variant or its value
// is not a boolean, string, number or object.
func defaultType(f *eval.Flag) eval.Type {
	if f.DefaultVariant == "" {
		return eval.TypeAny
	}
	v, _ := f.VariantValue(f.DefaultVariant)
	switch v.(type) {
	case bool:
		return eval.TypeBoolean
	case string:
		return eval.TypeString
	case float64:
		return eval.TypeFloat
	case map[string]any:
		return eval.TypeObject
	}
	return eval.TypeAny
}

// zeroValue is what flagd's ResolveAll reports as the value of a failed evaluation.
func zeroValue(t eval.Type) any {
	switch t {
	case eval.TypeBoolean:
		return false
	case eval.TypeString:
		return ""
	case eval.TypeFloat:
		return 0.0
	case eval.TypeObject:
		return &structpb.Struct{}
	}
	return nil
}

// resolveAll evaluates every flag the request's selector sees, as flagd's
// ResolveAllValues does:
//   - v1: a flag whose default variant is missing, null or an array is left out
//     (quirk §10.7: v1 clients depend on it); a disabled flag is listed with reason
//     DISABLED and no value; a failed evaluation is listed with reason ERROR and
//     the zero value of the default variant's type.
//   - schema.v1: disabled flags are left out; a flag without a usable default type
//     is resolved untyped and listed only if its value is a boolean, string,
//     number or object.
//
// The caller gives the items back (s.items.put) once it has encoded them.
//
// With tracing, the RPC is one span (resolveAll, with feature_flag.count: the
// number of flags answered, as flagd), not one per flag.
func (s *Service) resolveAll(ctx context.Context, m reqMeta, reqCtx *structpb.Struct, a api) ([]bulkItem, store.Selector, error) {
	var items []bulkItem
	sel, err := s.resolveAllSpan(ctx, m, a, func(sel store.Selector) int {
		items = s.resolveAllIn(sel, m.header, reqCtx, a)
		return len(items)
	})
	return items, sel, err
}

// resolveAllSpan parses the request's selector and runs answer for it, which
// returns the number of flags answered: with tracing, in resolveAll's span.
func (s *Service) resolveAllSpan(ctx context.Context, m reqMeta, a api, answer func(store.Selector) int) (store.Selector, error) {
	span := s.startSpan(ctx, m, resolveSpanName(eval.TypeAny), a)
	if span != nil {
		defer span.End()
	}
	sel, err := store.ParseSelector(m.selector)
	if err != nil {
		if span != nil {
			tracing.Failed(span, tracing.ErrorType(eval.ErrorGeneral), "invalid selector")
		}
		return sel, connect.NewError(connect.CodeInvalidArgument, err)
	}
	n := answer(sel)
	if span != nil {
		span.SetAttributes(tracing.KeyFlagCount.Int(n))
	}
	return sel, nil
}

// resolveAllIn evaluates the flags of the selector for resolveAll. The caller gives
// the items back (s.items.put) once it has encoded them.
func (s *Service) resolveAllIn(sel store.Selector, header http.Header, reqCtx *structpb.Struct, a api) []bulkItem {
	p := s.newAllPass(sel, header, reqCtx, a)
	defer p.done()
	return p.items()
}

// items evaluates every flag of the list (the item path). The caller gives the
// items back (s.items.put) once it has encoded them.
func (p *allPass) items() []bulkItem {
	items := p.s.items.get(len(p.list))
	for i := range p.list {
		if it, listed := p.item(i); listed {
			items = append(items, it)
		}
	}
	return items
}

// allPass is one ResolveAll evaluation of a selector's list: the request's context,
// the decisions its flags share (eval.Decisions) and the tally shard it counts in.
type allPass struct {
	s         *Service
	sel       store.Selector
	a         api
	ctx       map[string]any
	list      []*store.Entry
	rules     *ruleGroups
	decisions eval.Decisions
	sh        *metrics.TallyShard // nil: count on each entry's counters
}

// newAllPass starts a pass over the flags sel sees in the current snapshot; done
// ends it.
func (s *Service) newAllPass(sel store.Selector, header http.Header, reqCtx *structpb.Struct, a api) *allPass {
	snap := s.st.Current()
	p := &allPass{s: s, sel: sel, a: a, ctx: s.evalContext(structMap(reqCtx), header, a), list: snap.List(sel)}
	// flags with equal rules share one decision per request (eval.Decisions)
	p.rules = s.cache.ruleGroups(snap.Generation, sel, p.list)
	p.decisions.Reset(p.rules.n)
	p.sh = p.rules.tally.Acquire()
	return p
}

// done gives the tally shard back.
func (p *allPass) done() { p.rules.tally.Release(p.sh) }

// count counts res, the evaluation of list[i].
func (p *allPass) count(i int, f *eval.Flag, res eval.Resolution) {
	slot := -1
	if p.sh != nil {
		slot = p.rules.slot(i, f, res)
	}
	p.countAt(i, slot, f, res)
}

// countAt counts res, the evaluation of list[i] whose tally slot is slot (-1:
// none): in the request's shard, else on the entry's counters.
func (p *allPass) countAt(i, slot int, f *eval.Flag, res eval.Resolution) {
	if slot >= 0 && p.sh != nil {
		p.sh.Count(slot)
		return
	}
	p.rules.entries[i].counters.Count(p.s.metrics, f.Key, res)
}

// answerType is the type f is resolved as, and false when the answer leaves f out
// without evaluating it (resolveAll says which).
func (p *allPass) answerType(f *eval.Flag) (eval.Type, bool) {
	if f.Disabled() {
		return eval.TypeAny, true
	}
	t := defaultType(f)
	return t, t != eval.TypeAny || p.a != apiV1
}

// item evaluates list[i] and returns its item, or listed false when the answer
// leaves it out.
func (p *allPass) item(i int) (bulkItem, bool) {
	f := p.list[i].Flag
	t, evaluated := p.answerType(f)
	if !evaluated {
		return bulkItem{}, false
	}
	return p.itemOf(i, t, p.decisions.EvaluateAs(f, p.rules.groups[i], t, p.ctx, nil))
}

// itemOf counts res, list[i]'s evaluation as type t, and returns its item (listed
// false when the answer leaves it out).
func (p *allPass) itemOf(i int, t eval.Type, res eval.Resolution) (bulkItem, bool) {
	f := p.list[i].Flag
	p.count(i, f, res)
	if res.Failed() && !f.Disabled() {
		p.s.logFailure(f.Key, p.sel, res)
	}
	return p.build(i, t, res)
}

// build returns the item of res, list[i]'s evaluation as type t (listed false
// when the answer leaves it out).
func (p *allPass) build(i int, t eval.Type, res eval.Resolution) (bulkItem, bool) {
	f := p.list[i].Flag
	ec := p.rules.entries[i]
	if f.Disabled() {
		if p.a != apiV1 {
			return bulkItem{}, false
		}
		mc := ec.metadata(p.sel, f.Metadata)
		return bulkItem{key: f.Key, reason: string(res.Reason), meta: mc.msg, metaC: mc, utf8: ec.namesValid(f)}, true
	}
	it := bulkItem{key: f.Key, reason: string(res.Reason), variant: res.Variant, utf8: ec.namesValid(f)}
	if res.Failed() {
		it.variant, it.value = "", zeroValue(t)
	} else {
		switch v := res.Value.(type) {
		case bool, string, float64:
			it.value = v
		case map[string]any:
			o, err := ec.object(res.Variant, v)
			if err != nil {
				p.s.log.Error().Str("flag", f.Key).Str("variant", res.Variant).Err(err).Msg("object variant cannot be represented as a protobuf Struct")
				return bulkItem{}, false
			}
			it.value, it.objC = o.msg, o
		default:
			return bulkItem{}, false // code default, or an array resolved untyped
		}
	}
	if p.a == apiV1 {
		it.metaC = ec.metadata(p.sel, f.Metadata)
		it.meta = it.metaC.msg
	}
	return it, true
}
