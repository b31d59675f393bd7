package evaluation

import (
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
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
	b       []byte
	i       int
	scratch []byte // unescaped strings; valid until the next string
}

// parse decodes the whole body. ctx is nil when the context is absent, null or {}
// (as the slow path skips AsMap for an empty Struct).
//
//nolint:gocognit // a single-pass scanner of the request object on the evaluation hot path: one loop over its members by design
func (p *requestParser) parse(body []byte) (key string, ctx map[string]any, ok bool) {
	p.b, p.i = body, 0
	p.ws()
	if !p.consume('{') {
		return "", nil, false
	}
	p.ws()
	if !p.consume('}') {
		var seenKey, seenCtx bool
		for {
			p.ws()
			name, ok := p.stringBytes()
			if !ok {
				return "", nil, false
			}
			p.ws()
			if !p.consume(':') {
				return "", nil, false
			}
			p.ws()
			switch string(name) {
			case "flagKey", "flag_key": // protojson takes the JSON name and the proto name
				if seenKey {
					return "", nil, false
				}
				seenKey = true
				if p.literal("null") {
					break
				}
				if key, ok = p.string(); !ok {
					return "", nil, false
				}
			case "context":
				if seenCtx {
					return "", nil, false
				}
				seenCtx = true
				if p.literal("null") {
					break
				}
				if p.peek() != '{' {
					return "", nil, false
				}
				if ctx, ok = p.object(1); !ok {
					return "", nil, false
				}
			default:
				if len(name) >= 2 && name[0] == '[' && name[len(name)-1] == ']' {
					return "", nil, false // an extension name: protojson resolves it
				}
				if !p.skip(1) {
					return "", nil, false
				}
			}
			p.ws()
			if p.consume(',') {
				continue
			}
			if p.consume('}') {
				break
			}
			return "", nil, false
		}
	}
	p.ws()
	if p.i != len(p.b) {
		return "", nil, false
	}
	if len(ctx) == 0 {
		ctx = nil
	}
	return key, ctx, true
}

func (p *requestParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *requestParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *requestParser) consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// literal consumes lit (true, false, null) when it is next and followed by a
// delimiter, as protojson's tokenizer requires.
func (p *requestParser) literal(lit string) bool {
	end := p.i + len(lit)
	if end > len(p.b) || string(p.b[p.i:end]) != lit {
		return false
	}
	if end < len(p.b) && notDelim(p.b[end]) {
		return false
	}
	p.i = end
	return true
}

// notDelim is protojson's isNotDelim: a byte that may not directly follow a literal.
func notDelim(c byte) bool {
	return c == '-' || c == '+' || c == '.' || c == '_' ||
		('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9')
}

// object decodes an object whose '{' is next. An empty object gives a nil map: the
// caller decides whether that means "no context" (top level) or {} (nested).
func (p *requestParser) object(depth int) (map[string]any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	p.i++ // '{'
	p.ws()
	if p.consume('}') {
		return nil, true
	}
	m := make(map[string]any, 4)
	for {
		p.ws()
		k, ok := p.string()
		if !ok {
			return nil, false
		}
		p.ws()
		if !p.consume(':') {
			return nil, false
		}
		p.ws()
		if _, dup := m[k]; dup {
			return nil, false // protojson: duplicate map key
		}
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		p.ws()
		if p.consume(',') {
			continue
		}
		if p.consume('}') {
			return m, true
		}
		return nil, false
	}
}

// value decodes any JSON value into what structpb's AsInterface returns.
func (p *requestParser) value(depth int) (any, bool) {
	switch c := p.peek(); c {
	case '{':
		m, ok := p.object(depth + 1)
		if ok && m == nil {
			m = map[string]any{}
		}
		return m, ok
	case '[':
		if depth+1 > maxFastDepth {
			return nil, false
		}
		p.i++
		p.ws()
		list := make([]any, 0) // AsSlice never returns nil
		if p.consume(']') {
			return list, true
		}
		for {
			p.ws()
			v, ok := p.value(depth + 1)
			if !ok {
				return nil, false
			}
			list = append(list, v)
			p.ws()
			if p.consume(',') {
				continue
			}
			if p.consume(']') {
				return list, true
			}
			return nil, false
		}
	case '"':
		return p.string()
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		start := p.i
		if !p.number() {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(p.b[start:p.i]), 64)
		if err != nil {
			return nil, false // protojson: invalid google.protobuf.Value
		}
		return f, true
	}
}

// skip validates and skips a value, as protojson skips an unknown field (numbers
// are checked for syntax only).
func (p *requestParser) skip(depth int) bool {
	switch c := p.peek(); c {
	case '{', '[':
		if depth > maxFastDepth {
			return false
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.ws()
		if p.consume(closer) {
			return true
		}
		for {
			p.ws()
			if c == '{' {
				if _, ok := p.stringBytes(); !ok {
					return false
				}
				p.ws()
				if !p.consume(':') {
					return false
				}
				p.ws()
			}
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			if p.consume(',') {
				continue
			}
			return p.consume(closer)
		}
	case '"':
		_, ok := p.stringBytes()
		return ok
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	}
	return p.number()
}

// number consumes a number with JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *requestParser) number() bool {
	b, i := p.b, p.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digits(b, i+1)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(b, i+1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(b, i)
		if j == i {
			return false
		}
		i = j
	}
	if i < len(b) && notDelim(b[i]) {
		return false
	}
	p.i = i
	return true
}

func digits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// string decodes a string into a new Go string.
func (p *requestParser) string() (string, bool) {
	s, ok := p.stringBytes()
	if !ok {
		return "", false
	}
	return string(s), true
}

// stringBytes decodes a string whose '"' is next. The result aliases the input, or
// p.scratch when the string has escapes; it is valid until the next call. Like
// protojson it refuses control characters, invalid UTF-8, unknown escapes and
// unpaired surrogates.
func (p *requestParser) stringBytes() ([]byte, bool) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '"' {
		return nil, false
	}
	start := p.i + 1
	i := start
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			p.i = i + 1
			return b[start:i], true
		case c == '\\':
			return p.unescape(start, i)
		case c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false
			}
			i += n
		}
	}
	return nil, false
}

// unescape continues stringBytes at the first backslash (index i).
func (p *requestParser) unescape(start, i int) ([]byte, bool) {
	b := p.b
	out := append(p.scratch[:0], b[start:i]...) //nolint:gocritic // appendAssign: reuses the scratch array in a local; stored back by the defer
	defer func() { p.scratch = out[:0] }()
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			p.i = i + 1
			return out, true
		case c < 0x20:
			return nil, false
		case c == '\\':
			if i+1 >= len(b) {
				return nil, false
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(b, i+2)
				if !ok {
					return nil, false
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if i+1 >= len(b) || b[i] != '\\' || b[i+1] != 'u' {
						return nil, false
					}
					r2, ok := hex4(b, i+2)
					if !ok {
						return nil, false
					}
					if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
						return nil, false
					}
					i += 6
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return nil, false
			}
			i += 2
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false
			}
			out = append(out, b[i:i+n]...)
			i += n
		}
	}
	return nil, false
}

// hex4 reads the four hex digits of a \u escape at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
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
