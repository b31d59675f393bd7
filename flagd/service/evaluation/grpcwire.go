package evaluation

import (
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// resolveRequest is the request of a typed Resolve* method over gRPC, all of which
// are {string flag_key = 1; google.protobuf.Struct context = 2;}. decode reads the
// wire format straight into the evaluation context, as structpb's AsMap would give
// it; anything it is not sure about (a repeated or merged message field, a field
// with an unexpected wire type, groups, invalid UTF-8, nesting deeper than
// protolimit allows, malformed input) sets slow, and the handler decodes raw with
// protobuf-go into the generated message instead, which also produces the error
// connect-go would report.
type resolveRequest struct {
	key  string
	ctx  map[string]any // nil when the context is absent or empty
	slow bool
	raw  []byte // the message, when slow
}

// decode fills r from a request message (data is not retained).
func (r *resolveRequest) decode(data []byte) {
	key, ctx, ok := decodeResolve(data)
	if !ok {
		r.slow, r.raw = true, append([]byte(nil), data...)
		return
	}
	r.key, r.ctx = key, ctx
}

func decodeResolve(b []byte) (key string, ctx map[string]any, ok bool) {
	var seenKey, seenCtx bool
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || seenKey || !utf8.Valid(v) {
				return "", nil, false
			}
			key, seenKey, b = string(v), true, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || seenCtx {
				return "", nil, false
			}
			m, ok := decodeStruct(v, 1)
			if !ok {
				return "", nil, false
			}
			if len(m) > 0 {
				ctx = m
			}
			seenCtx, b = true, b[n:]
		case num == 1 || num == 2, typ == protowire.StartGroupType, typ == protowire.EndGroupType:
			return "", nil, false
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", nil, false
			}
			b = b[n:]
		}
	}
	return key, ctx, true
}

// skipField skips an unknown field other than a group; false if it cannot.
func skipField(num protowire.Number, typ protowire.Type, b []byte) (int, bool) {
	if typ == protowire.StartGroupType || typ == protowire.EndGroupType {
		return 0, false
	}
	n := protowire.ConsumeFieldValue(num, typ, b)
	return n, n >= 0
}

// decodeStruct decodes google.protobuf.Struct {map<string, Value> fields = 1;} at
// nesting level depth (the context is level 1).
func decodeStruct(b []byte, depth int) (map[string]any, bool) {
	if depth > protolimit.MaxContextDepth {
		return nil, false
	}
	m := map[string]any{}
	ok := eachField1(b, func(entry []byte) bool {
		k, v, ok := decodeEntry(entry, depth)
		if ok {
			m[k] = v // a repeated key: the last one wins, as in protobuf maps
		}
		return ok
	})
	return m, ok
}

// eachField1 calls fn with the payload of every field 1 of message b, which must be
// length-delimited (the repeated field of Struct and ListValue), skipping the
// fields it does not know; false when b is malformed or fn returns false.
func eachField1(b []byte, fn func(payload []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if num != 1 {
			n, ok := skipField(num, typ, b)
			if !ok {
				return false
			}
			b = b[n:]
			continue
		}
		if typ != protowire.BytesType {
			return false
		}
		payload, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if !fn(payload) {
			return false
		}
	}
	return true
}

// decodeEntry decodes a map entry {string key = 1; Value value = 2;}.
func decodeEntry(b []byte, depth int) (string, any, bool) {
	var key string
	var value any
	var seenKey, seenValue bool
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", nil, false
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || seenKey || !utf8.Valid(v) {
				return "", nil, false
			}
			key, seenKey, b = string(v), true, b[n:]
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || seenValue {
				return "", nil, false
			}
			var ok bool
			if value, ok = decodeValue(v, depth); !ok {
				return "", nil, false
			}
			seenValue, b = true, b[n:]
		case num == 1 || num == 2:
			return "", nil, false
		default:
			n, ok := skipField(num, typ, b)
			if !ok {
				return "", nil, false
			}
			b = b[n:]
		}
	}
	return key, value, true
}

// decodeValue decodes google.protobuf.Value (a oneof) at nesting level depth (the
// level of the Struct or list holding it) as AsInterface gives it: nil for
// null_value or no kind, float64, string, bool, map[string]any or []any.
func decodeValue(b []byte, depth int) (any, bool) {
	var value any
	seen := false
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if num >= 1 && num <= 6 && seen {
			return nil, false // oneof set twice: merging rules, left to protobuf-go
		}
		switch {
		case num == 1 && typ == protowire.VarintType: // null_value
			_, n = protowire.ConsumeVarint(b)
			value = nil
		case num == 2 && typ == protowire.Fixed64Type: // number_value
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			value = math.Float64frombits(v)
		case num == 3 && typ == protowire.BytesType: // string_value
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n >= 0 && !utf8.Valid(v) {
				return nil, false
			}
			value = string(v)
		case num == 4 && typ == protowire.VarintType: // bool_value
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			value = v != 0
		case num == 5 && typ == protowire.BytesType: // struct_value
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return nil, false
			}
			m, ok := decodeStruct(v, depth+1)
			if !ok {
				return nil, false
			}
			value = m
		case num == 6 && typ == protowire.BytesType: // list_value
			var v []byte
			if v, n = protowire.ConsumeBytes(b); n < 0 {
				return nil, false
			}
			l, ok := decodeList(v, depth+1)
			if !ok {
				return nil, false
			}
			value = l
		case num >= 1 && num <= 6:
			return nil, false
		default:
			var ok bool
			if n, ok = skipField(num, typ, b); !ok {
				return nil, false
			}
			b = b[n:]
			continue
		}
		if n < 0 {
			return nil, false
		}
		seen, b = true, b[n:]
	}
	return value, true
}

// decodeList decodes google.protobuf.ListValue {repeated Value values = 1;}.
func decodeList(b []byte, depth int) ([]any, bool) {
	if depth > protolimit.MaxContextDepth {
		return nil, false
	}
	l := []any{}
	ok := eachField1(b, func(v []byte) bool {
		value, ok := decodeValue(v, depth)
		l = append(l, value)
		return ok
	})
	return l, ok
}

// appendProtoResponse appends the binary encoding of the response of a typed
// Resolve* method, as proto.Marshal encodes the message responseMessage builds
// (fields in number order: value, reason, variant, metadata). exact is false when
// proto.Marshal would refuse it (invalid UTF-8 in a string field); the caller then
// marshals the message.
func (s *Service) appendProtoResponse(b []byte, p fastProcedure, r result) (out []byte, exact bool, err error) {
	var obj *cachedStruct
	if p.typ == eval.TypeObject {
		if obj, err = s.objectValue(r); err != nil {
			return b, false, err
		}
		if obj != nil && !obj.hasProto() {
			return b, false, nil // inexact: the caller falls back to proto.Marshal
		}
	}
	if !r.meta.hasProto() {
		return b, false, nil // the same
	}
	hasValue := hasTypedValue(p.typ, r.res.Value, obj)
	// v1 and schema.v1 write a plain proto3 field (absent when zero); v2's value is
	// optional (present whenever there is a value, zero or not), and so is its
	// variant, which it leaves out without a value
	v2 := p.api == apiV2
	reason, variant := string(r.res.Reason), r.res.Variant
	if v2 && !hasValue {
		variant = ""
	}
	if !utf8.ValidString(reason) || !utf8.ValidString(variant) {
		return b, false, nil
	}
	if b == nil {
		n := 16 + len(reason) + len(variant) + len(r.meta.pb)
		if obj != nil {
			n += len(obj.pb)
		}
		b = make([]byte, 0, n)
	}
	switch p.typ {
	case eval.TypeBoolean:
		if v, _ := r.res.Value.(bool); v || (v2 && hasValue) {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, protowire.EncodeBool(v))
		}
	case eval.TypeString:
		if v, _ := r.res.Value.(string); v != "" || (v2 && hasValue) {
			if !utf8.ValidString(v) {
				return b, false, nil
			}
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendString(b, v)
		}
	case eval.TypeInteger:
		if v, _ := r.res.Value.(int64); v != 0 || (v2 && hasValue) {
			b = protowire.AppendTag(b, 1, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(v)) //nolint:gosec // int64 fields are two's complement varints
		}
	case eval.TypeFloat:
		if v, _ := r.res.Value.(float64); math.Float64bits(v) != 0 || (v2 && hasValue) {
			b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(v))
		}
	case eval.TypeObject:
		// v1 and schema.v1 always carry a Struct ({} for a code default)
		if obj != nil {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendBytes(b, obj.pb)
		} else if !v2 {
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendVarint(b, 0)
		}
	}
	if reason != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, reason)
	}
	if variant != "" {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, variant)
	}
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, r.meta.pb)
	return b, true, nil
}

// consumeTag is protowire.ConsumeTag refusing field numbers protobuf-go refuses.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return num, typ, n
}

// appendResolveAll appends the binary encoding of the ResolveAll response of v1
// (with the selector metadata) or schema.v1, as proto.Marshal encodes the message
// v1AllResponse or schemaAllResponse builds from the same items: a map entry
// {key = 1; AnyFlag value = 2} per flag, AnyFlag {reason = 1; variant = 2; oneof
// value {bool_value = 3; string_value = 4; double_value = 5; object_value = 6};
// metadata = 7 (v1)} in protobuf-go's order (the oneof last), splicing in the cached encodings of object values and
// metadata. The entries are in item order (the store's, sorted by key): what
// deterministic marshalling writes. exact is false when proto.Marshal would refuse
// the message (invalid UTF-8); the caller then marshals the message.
func appendResolveAll(b []byte, a api, items []bulkItem, selMeta []byte) (out []byte, exact bool) {
	var flag []byte
	for _, it := range items {
		if a == apiSchemaV1 {
			switch it.value.(type) {
			case bool, string, float64, *structpb.Struct:
			default:
				continue // as schemaAllResponse: no way to say "no value"
			}
		}
		if !it.utf8 && (!utf8.ValidString(it.key) || !utf8.ValidString(it.reason) || !utf8.ValidString(it.variant)) {
			return b, false
		}
		flag = flag[:0]
		if it.reason != "" {
			flag = protowire.AppendTag(flag, 1, protowire.BytesType)
			flag = protowire.AppendString(flag, it.reason)
		}
		if it.variant != "" {
			flag = protowire.AppendTag(flag, 2, protowire.BytesType)
			flag = protowire.AppendString(flag, it.variant)
		}
		// protobuf-go writes the oneof after the other fields
		if a == apiV1 && it.metaC != nil {
			if !it.metaC.hasProto() {
				return b, false
			}
			flag = protowire.AppendTag(flag, 7, protowire.BytesType)
			flag = protowire.AppendBytes(flag, it.metaC.pb)
		}
		switch v := it.value.(type) {
		case bool:
			flag = protowire.AppendTag(flag, 3, protowire.VarintType)
			flag = protowire.AppendVarint(flag, protowire.EncodeBool(v))
		case string:
			if !utf8.ValidString(v) {
				return b, false
			}
			flag = protowire.AppendTag(flag, 4, protowire.BytesType)
			flag = protowire.AppendString(flag, v)
		case float64:
			flag = protowire.AppendTag(flag, 5, protowire.Fixed64Type)
			flag = protowire.AppendFixed64(flag, math.Float64bits(v))
		case *structpb.Struct:
			var pb []byte
			switch {
			case it.objC != nil && it.objC.hasProto():
				pb = it.objC.pb
			case it.objC == nil && len(v.GetFields()) == 0: // the zero value of a failed evaluation
			default:
				return b, false
			}
			flag = protowire.AppendTag(flag, 6, protowire.BytesType)
			flag = protowire.AppendBytes(flag, pb)
		}
		entryLen := protowire.SizeTag(1) + protowire.SizeBytes(len(it.key)) + protowire.SizeTag(2) + protowire.SizeBytes(len(flag))
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(entryLen)) //nolint:gosec // a length
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, it.key)
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, flag)
	}
	if a == apiV1 && selMeta != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, selMeta)
	}
	return b, true
}
