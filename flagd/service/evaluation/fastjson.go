package evaluation

import (
	"math"
	"math/bits"
	"strconv"
	"unicode/utf8"

	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// maxFastDepth bounds the nesting of the JSON the fast path decodes itself (the
// context is level 1); deeper documents go to connect-go, whose codec refuses them
// (InvalidArgument) without decoding them.
const maxFastDepth = protolimit.MaxContextDepth

// requestParser decodes the body of a typed Resolve* request,
// {"flagKey": "...", "context": {...}}, into the flag key and the evaluation context
// as Struct.AsMap would produce it (float64 numbers, nil for null, non-nil empty
// nested maps and slices).
//
// It accepts a subset of what protojson (with DiscardUnknown) accepts, with the same
// result: anything it is not sure about (a syntax error, invalid UTF-8, an invalid
// escape, a duplicate field or map key, a number out of range, an extension-style
// "[name]" field, a wrong field type, deep nesting, trailing data) makes it report
// false, and the request goes to connect-go, which answers with protojson's error.
type requestParser struct {
	jsonwire.Parser
}

// parse decodes the whole body. ctx is nil when the context is absent, null or {}
// (as the slow path skips AsMap for an empty Struct).
//
//nolint:gocognit // a single-pass scanner of the request object on the evaluation hot path: one loop over its members by design
func (p *requestParser) parse(body []byte) (key string, ctx map[string]any, ok bool) {
	p.MaxDepth = maxFastDepth
	p.Reset(body)
	p.WS()
	if !p.Consume('{') {
		return "", nil, false
	}
	p.WS()
	if !p.Consume('}') {
		var seenKey, seenCtx bool
		for {
			p.WS()
			name, ok := p.StringBytes()
			if !ok {
				return "", nil, false
			}
			p.WS()
			if !p.Consume(':') {
				return "", nil, false
			}
			p.WS()
			switch string(name) {
			case "flagKey", "flag_key": // protojson takes the JSON name and the proto name
				if seenKey {
					return "", nil, false
				}
				seenKey = true
				if p.Literal("null") {
					break
				}
				if key, ok = p.ReadString(); !ok {
					return "", nil, false
				}
			case "context":
				if seenCtx {
					return "", nil, false
				}
				seenCtx = true
				if p.Literal("null") {
					break
				}
				if p.Peek() != '{' {
					return "", nil, false
				}
				if ctx, ok = p.Object(1); !ok {
					return "", nil, false
				}
			default:
				if len(name) >= 2 && name[0] == '[' && name[len(name)-1] == ']' {
					return "", nil, false // an extension name: protojson resolves it
				}
				if !p.Skip(1) {
					return "", nil, false
				}
			}
			p.WS()
			if p.Consume(',') {
				continue
			}
			if p.Consume('}') {
				break
			}
			return "", nil, false
		}
	}
	p.WS()
	if !p.Done() {
		return "", nil, false
	}
	if len(ctx) == 0 {
		ctx = nil
	}
	return key, ctx, true
}

// appendProtoString quotes s as protojson does (", \ and control characters
// escaped, nothing else). It reports false when s is not valid UTF-8: protojson
// refuses to write it.
func appendProtoString(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		b = append(b, '\\')
		switch c {
		case '"', '\\':
			b = append(b, c)
		case '\b':
			b = append(b, 'b')
		case '\f':
			b = append(b, 'f')
		case '\n':
			b = append(b, 'n')
		case '\r':
			b = append(b, 'r')
		case '\t':
			b = append(b, 't')
		default:
			b = append(b, 'u')
			b = append(b, "0000"[1+(bits.Len32(uint32(c))-1)/4:]...)
			b = strconv.AppendUint(b, uint64(c), 16)
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

// appendProtoDouble writes a double as protojson does: "NaN", "Infinity" and
// "-Infinity" as strings, otherwise the shortest representation that round-trips,
// in exponent form below 1e-6 and from 1e21 on (encoding/json's rule).
func appendProtoDouble(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return jsonwire.AppendFloat(b, f)
}
