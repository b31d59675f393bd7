package evaluation

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
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
	span := s.startSpan(ctx, m, resolveSpanName(eval.TypeAny), a)
	if span != nil {
		defer span.End()
	}
	sel, err := store.ParseSelector(m.selector)
	if err != nil {
		if span != nil {
			tracing.Failed(span, tracing.ErrorType(eval.ErrorGeneral), "invalid selector")
		}
		return nil, sel, connect.NewError(connect.CodeInvalidArgument, err)
	}
	items := s.resolveAllIn(sel, m.header, reqCtx, a)
	if span != nil {
		span.SetAttributes(tracing.KeyFlagCount.Int(len(items)))
	}
	return items, sel, nil
}

// resolveAllIn evaluates the flags of the selector for resolveAll. The caller gives
// the items back (s.items.put) once it has encoded them.
func (s *Service) resolveAllIn(sel store.Selector, header http.Header, reqCtx *structpb.Struct, a api) []bulkItem {
	snap := s.st.Current()
	ctx := s.evalContext(structMap(reqCtx), header, a)
	list := snap.List(sel)
	items := s.items.get(len(list)) // the caller puts it back
	// flags with equal rules share one decision per request (eval.Decisions)
	rules := s.cache.ruleGroups(snap.Generation, sel, list)
	var decisions eval.Decisions
	decisions.Reset(rules.n)
	sh := rules.tally.Acquire() // nil: count on each entry's counters
	defer rules.tally.Release(sh)
	count := func(i int, ec *entryCache, f *eval.Flag, res eval.Resolution) {
		if sh != nil {
			if slot := rules.slot(i, f, res); slot >= 0 {
				sh.Count(slot)
				return
			}
		}
		ec.counters.Count(s.metrics, f.Key, res)
	}
	for i, e := range list {
		f := e.Flag
		ec := rules.entries[i]
		if f.Disabled() {
			res := f.EvaluateAs(eval.TypeAny, ctx, nil)
			count(i, ec, f, res)
			if a == apiV1 {
				mc := ec.metadata(sel, f.Metadata)
				items = append(items, bulkItem{key: f.Key, reason: string(res.Reason), meta: mc.msg, metaC: mc, utf8: ec.namesValid(f)})
			}
			continue
		}
		t := defaultType(f)
		if t == eval.TypeAny && a == apiV1 {
			continue
		}
		res := decisions.EvaluateAs(f, rules.groups[i], t, ctx, nil)
		count(i, ec, f, res)
		it := bulkItem{key: f.Key, reason: string(res.Reason), variant: res.Variant, utf8: ec.namesValid(f)}
		if res.Failed() {
			s.logFailure(f.Key, sel, res)
			it.variant, it.value = "", zeroValue(t)
		} else {
			switch v := res.Value.(type) {
			case bool, string, float64:
				it.value = v
			case map[string]any:
				o, err := ec.object(res.Variant, v)
				if err != nil {
					s.log.Error().Str("flag", f.Key).Str("variant", res.Variant).Err(err).Msg("object variant cannot be represented as a protobuf Struct")
					continue
				}
				it.value, it.objC = o.msg, o
			default:
				continue // code default, or an array resolved untyped
			}
		}
		if a == apiV1 {
			it.metaC = ec.metadata(sel, f.Metadata)
			it.meta = it.metaC.msg
		}
		items = append(items, it)
	}
	return items
}
