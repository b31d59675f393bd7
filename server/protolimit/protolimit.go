// Package protolimit bounds what decoding a protobuf message costs, for every
// listener and client that decodes protobuf (binary or JSON): the flagd evaluation
// and management listeners (connect-go codecs), the sync listener and the grpc flag
// source (grpc-go codecs).
//
// protobuf-go decodes nested messages recursively and allows 10,000 levels by
// default (protojson and binary alike, and unknown groups through protowire), so a
// 20 KB request nesting a google.protobuf.Struct 10,000 levels deep grows the
// decoding goroutine's stack to 64 MB. Here a request may nest at most
// MaxMessageDepth messages, which is a context of MaxContextDepth levels of objects
// and arrays. The check runs before protobuf-go sees the data and does not recurse
// (a JSON scan, and a walk of the wire format guided by the message's descriptor,
// with an explicit stack), so input nested deeper than the limit costs no stack at
// all; protobuf-go's own RecursionLimit is set to the same bound as a backstop.
package protolimit

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MaxContextDepth is how deeply an evaluation context (or any other
// google.protobuf.Struct in a message) may nest objects and arrays, the context
// itself being level 1: {"user":{"address":{"country":"ch"}}} has depth 3. Real
// contexts are flat or a few levels deep (targeting reads them with dotted `var`
// paths); 16 leaves room for any of them while keeping the decoder's stack under
// 64 KiB per request, so 100 concurrent requests at the limit cost a few MB, not GBs.
const MaxContextDepth = 16

// MaxMessageDepth is the deepest nesting of binary protobuf messages CheckBinary
// accepts: the request (1), its Struct (2), then a Value and a Struct or ListValue
// per further level of the context, and the innermost Value. Map entries do not
// count.
const MaxMessageDepth = 2*MaxContextDepth + 1

// protobuf-go's own RecursionLimit, a backstop behind the checks. The binary decoder
// also counts each map entry (one per Struct level); protojson counts one per level
// of JSON (a Value's Struct or ListValue is decoded inline), plus the request and the
// innermost Value. So a message the checks accept never reaches these.
const (
	binaryRecursionLimit = MaxMessageDepth + MaxContextDepth
	jsonRecursionLimit   = MaxContextDepth + 2
)

// MaxJSONDepth is the deepest nesting of JSON objects and arrays in a request body:
// the request object plus a context of MaxContextDepth levels.
const MaxJSONDepth = MaxContextDepth + 1

// ErrTooDeep is the error (wrapped, with the position) for input nested deeper than
// the limits.
var ErrTooDeep = fmt.Errorf("nested too deeply: a context may nest objects and arrays at most %d levels", MaxContextDepth)

// CheckJSON reports an error when data nests JSON objects and arrays more than
// MaxJSONDepth levels. It does not validate the rest of the syntax (the decoder
// does), and it runs in constant stack space.
func CheckJSON(data []byte) error {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; i < len(data) && data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > MaxJSONDepth {
				return fmt.Errorf("JSON %w (more than %d at byte %d)", ErrTooDeep, MaxJSONDepth, i)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// CheckBinary reports an error when the binary protobuf data, decoded as a message
// of type md, would nest more than MaxMessageDepth messages (every message and
// group, known or not, but not map entries), so that a context is accepted or
// refused alike whether it comes as JSON or binary. Malformed data is left to the
// decoder to report. It runs in constant stack space.
func CheckBinary(data []byte, md protoreflect.MessageDescriptor) error {
	type frame struct {
		md    protoreflect.MessageDescriptor // nil: an unknown group
		end   int                            // end of a length-delimited message
		group protowire.Number               // a group: its field number
		depth int                            // message depth (map entries add none)
	}
	var buf [16]frame // no allocation for requests nesting up to 16 messages
	stack := append(buf[:0], frame{md: md, end: len(data), depth: 1})
	i := 0
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if i >= top.end {
			if top.group != 0 || i > top.end {
				return nil // an unterminated group, or a length past its parent: malformed
			}
			stack = stack[:len(stack)-1]
			continue
		}
		num, typ, n := protowire.ConsumeTag(data[i:top.end])
		if n < 0 {
			return nil
		}
		i += n
		var fd protoreflect.FieldDescriptor
		if top.md != nil {
			fd = top.md.Fields().ByNumber(num)
		}
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(data[i:top.end])
			if n < 0 {
				return nil
			}
			start := i + n - len(v)
			i += n
			if fd == nil || (fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind) {
				continue
			}
			depth := top.depth + 1
			if fd.IsMap() {
				depth = top.depth
			}
			if depth > MaxMessageDepth {
				return fmt.Errorf("protobuf message %w (more than %d messages at byte %d)", ErrTooDeep, MaxMessageDepth, start)
			}
			stack = append(stack, frame{md: fd.Message(), end: i, depth: depth})
			i = start
		case protowire.StartGroupType:
			var gmd protoreflect.MessageDescriptor
			if fd != nil && fd.Kind() == protoreflect.GroupKind {
				gmd = fd.Message()
			}
			if top.depth+1 > MaxMessageDepth {
				return fmt.Errorf("protobuf message %w (more than %d messages at byte %d)", ErrTooDeep, MaxMessageDepth, i)
			}
			stack = append(stack, frame{md: gmd, end: top.end, group: num, depth: top.depth + 1})
		case protowire.EndGroupType:
			if top.group != num {
				return nil
			}
			stack = stack[:len(stack)-1]
		default:
			n := protowire.ConsumeFieldValue(num, typ, data[i:top.end])
			if n < 0 {
				return nil
			}
			i += n
		}
	}
	return nil
}

// UnmarshalBinary decodes binary protobuf into m after CheckBinary.
func UnmarshalBinary(data []byte, m proto.Message) error {
	if err := CheckBinary(data, m.ProtoReflect().Descriptor()); err != nil {
		return err
	}
	return proto.UnmarshalOptions{RecursionLimit: binaryRecursionLimit}.Unmarshal(data, m)
}

// UnmarshalJSON decodes protojson into m after CheckJSON, ignoring unknown fields
// (as flagd's connect handlers do).
func UnmarshalJSON(data []byte, m proto.Message) error {
	if err := CheckJSON(data); err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: true, RecursionLimit: jsonRecursionLimit}.Unmarshal(data, m)
}
