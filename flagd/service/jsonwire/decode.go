package jsonwire

import (
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// AppendBody reads the whole of body after buf (a request body, to be parsed).
// declared is its declared length (-1 unknown): below maxPrealloc it sizes the
// buffer at once.
func AppendBody(buf []byte, body io.Reader, declared int64, maxPrealloc int) ([]byte, error) {
	if declared >= 0 && declared < int64(maxPrealloc) && int64(cap(buf)-len(buf)) < declared+1 {
		buf = append(make([]byte, 0, int64(len(buf))+declared+1), buf...) // +1: the read that sees EOF needs room
	}
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Parser decodes JSON into what encoding/json (into any) and structpb's AsMap both
// produce: map[string]any, []any, float64, string, bool and nil, with non-nil empty
// nested maps and slices. It accepts a strict subset of what both accept, with the
// same result: anything it is not sure about (a syntax error, invalid UTF-8, an
// invalid escape or an unpaired surrogate, a duplicate object key, a number out of
// range, a literal or number followed by a letter or digit, nesting deeper than
// MaxDepth) makes it report false, and the caller hands the input to the decoder it
// stands in for, which answers with its own result or error. The request decoders
// of the Connect JSON fast path and of OFREP build on it.
type Parser struct {
	// MaxDepth bounds the nesting of objects and arrays (the outermost value read
	// with Object or Value at depth 1 is level 1).
	MaxDepth int
	b        []byte
	i        int
	scratch  []byte // unescaped strings; valid until the next string
}

// Reset starts parsing b.
func (p *Parser) Reset(b []byte) { p.b, p.i = b, 0 }

// Done reports whether the whole input has been consumed.
func (p *Parser) Done() bool { return p.i == len(p.b) }

// Retained returns what the parser holds between uses: its input (nil once
// wiped) and its scratch buffer, whole up to its capacity (for tests that check
// that pooled parsers keep nothing of a request).
func (p *Parser) Retained() (input, scratch []byte) { return p.b, p.scratch[:cap(p.scratch)] }

// Wipe clears what the parser kept of its input — at most n bytes of unescaped
// strings (never longer than the input they came from) — and drops the input, so
// that a pooled Parser holds nothing of a request. It reports the scratch
// buffer's capacity, for the caller's pooling limit.
func (p *Parser) Wipe(n int) int {
	clear(p.scratch[:min(n, cap(p.scratch))])
	p.b, p.i = nil, 0
	return cap(p.scratch)
}

// WS skips whitespace.
func (p *Parser) WS() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// Peek returns the next byte, 0 at the end.
func (p *Parser) Peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

// Consume consumes c when it is next.
func (p *Parser) Consume(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// Literal consumes lit (true, false, null) when it is next and followed by a
// delimiter, as protojson's tokenizer requires.
func (p *Parser) Literal(lit string) bool {
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

// Object decodes an object whose '{' is next, at nesting level depth. An empty object gives a nil map: the
// caller decides whether that means "no context" (top level) or {} (nested).
func (p *Parser) Object(depth int) (map[string]any, bool) {
	if depth > p.MaxDepth {
		return nil, false
	}
	p.i++ // '{'
	p.WS()
	if p.Consume('}') {
		return nil, true
	}
	m := make(map[string]any, 4)
	for {
		p.WS()
		k, ok := p.ReadString()
		if !ok {
			return nil, false
		}
		p.WS()
		if !p.Consume(':') {
			return nil, false
		}
		p.WS()
		if _, dup := m[k]; dup {
			return nil, false // protojson: duplicate map key
		}
		v, ok := p.Value(depth)
		if !ok {
			return nil, false
		}
		m[k] = v
		p.WS()
		if p.Consume(',') {
			continue
		}
		if p.Consume('}') {
			return m, true
		}
		return nil, false
	}
}

// Value decodes any JSON value into what structpb's AsInterface returns.
func (p *Parser) Value(depth int) (any, bool) {
	switch c := p.Peek(); c {
	case '{':
		m, ok := p.Object(depth + 1)
		if ok && m == nil {
			m = map[string]any{}
		}
		return m, ok
	case '[':
		if depth+1 > p.MaxDepth {
			return nil, false
		}
		p.i++
		p.WS()
		list := make([]any, 0) // AsSlice never returns nil
		if p.Consume(']') {
			return list, true
		}
		for {
			p.WS()
			v, ok := p.Value(depth + 1)
			if !ok {
				return nil, false
			}
			list = append(list, v)
			p.WS()
			if p.Consume(',') {
				continue
			}
			if p.Consume(']') {
				return list, true
			}
			return nil, false
		}
	case '"':
		return p.ReadString()
	case 't':
		return true, p.Literal("true")
	case 'f':
		return false, p.Literal("false")
	case 'n':
		return nil, p.Literal("null")
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

// Skip validates and skips a value, as protojson skips an unknown field (numbers
// are checked for syntax only).
func (p *Parser) Skip(depth int) bool {
	switch c := p.Peek(); c {
	case '{', '[':
		if depth > p.MaxDepth {
			return false
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		p.i++
		p.WS()
		if p.Consume(closer) {
			return true
		}
		for {
			p.WS()
			if c == '{' {
				if _, ok := p.StringBytes(); !ok {
					return false
				}
				p.WS()
				if !p.Consume(':') {
					return false
				}
				p.WS()
			}
			if !p.Skip(depth + 1) {
				return false
			}
			p.WS()
			if p.Consume(',') {
				continue
			}
			return p.Consume(closer)
		}
	case '"':
		_, ok := p.StringBytes()
		return ok
	case 't':
		return p.Literal("true")
	case 'f':
		return p.Literal("false")
	case 'n':
		return p.Literal("null")
	}
	return p.number()
}

// number consumes a number with JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *Parser) number() bool {
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

// ReadString decodes a string whose '"' is next into a new Go string.
func (p *Parser) ReadString() (string, bool) {
	s, ok := p.StringBytes()
	if !ok {
		return "", false
	}
	return string(s), true
}

// StringBytes decodes a string whose '"' is next. The result aliases the input, or
// p.scratch when the string has escapes; it is valid until the next call. Like
// protojson it refuses control characters, invalid UTF-8, unknown escapes and
// unpaired surrogates.
func (p *Parser) StringBytes() ([]byte, bool) {
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

// unescape continues StringBytes at the first backslash (index i).
func (p *Parser) unescape(start, i int) ([]byte, bool) {
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
