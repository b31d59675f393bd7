package flags

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxTreeDepth is the nesting encoding/json accepts; deeper documents take the slow
// path, which rejects them with encoding/json's error.
const maxTreeDepth = 10000

// decodeTree decodes a JSON document into the values encoding/json gives an `any`
// (map[string]any, []any, float64, string, bool, nil), in one pass over the bytes:
// compiling the flags of a sidecar's document is most of its start-up, and
// encoding/json scans every byte twice and builds every value through reflection.
// It accepts exactly the documents encoding/json accepts as one value; on anything
// else (a syntax error, a number out of float64's range, trailing data, nesting
// deeper than encoding/json's limit) it returns ok=false and the caller decodes with
// encoding/json, for its error messages. FuzzDecodeTree holds the two to the same
// results.
func decodeTree(data []byte) (v any, ok bool) {
	d := treeDecoder{data: data}
	d.space()
	v, ok = d.value(0)
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.pos == len(d.data)
}

// treeDecoder is the state of decodeTree.
type treeDecoder struct {
	data []byte
	pos  int
}

// space skips JSON whitespace.
func (d *treeDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value decodes the value at d.pos (whitespace already skipped).
func (d *treeDecoder) value(depth int) (any, bool) {
	if d.pos >= len(d.data) {
		return nil, false
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		return d.str()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return nil, false
}

// literal consumes word.
func (d *treeDecoder) literal(word string) bool {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return false
	}
	d.pos += len(word)
	return true
}

func (d *treeDecoder) object(depth int) (any, bool) {
	if depth > maxTreeDepth {
		return nil, false
	}
	d.pos++ // {
	m := map[string]any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		return m, true
	}
	for {
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, false
		}
		d.pos++
		d.space()
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		m[k.(string)] = v // a repeated key: the last wins, as in encoding/json
		d.space()
		if d.pos >= len(d.data) {
			return nil, false
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.space()
		case '}':
			d.pos++
			return m, true
		default:
			return nil, false
		}
	}
}

func (d *treeDecoder) array(depth int) (any, bool) {
	if depth > maxTreeDepth {
		return nil, false
	}
	d.pos++ // [
	a := []any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, true
	}
	for {
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		d.space()
		if d.pos >= len(d.data) {
			return nil, false
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
			d.space()
		case ']':
			d.pos++
			return a, true
		default:
			return nil, false
		}
	}
}

// number decodes a number of JSON's grammar as a float64.
func (d *treeDecoder) number() (any, bool) {
	start := d.pos
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.digits() == 0:
		return nil, false
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return nil, false
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return nil, false
		}
	}
	f, err := strconv.ParseFloat(string(d.data[start:d.pos]), 64)
	if err != nil { // out of range: encoding/json reports it
		return nil, false
	}
	return f, true
}

// digits consumes decimal digits and returns how many.
func (d *treeDecoder) digits() int {
	start := d.pos
	for d.pos < len(d.data) && d.data[d.pos] >= '0' && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos - start
}

// str decodes a string as encoding/json does: escapes resolved, invalid UTF-8 and
// unpaired surrogates replaced by U+FFFD, control characters rejected.
func (d *treeDecoder) str() (any, bool) {
	d.pos++ // "
	start := d.pos
	for d.pos < len(d.data) { // the common case: nothing to unescape
		c := d.data[d.pos]
		if c == '"' {
			s := string(d.data[start:d.pos])
			d.pos++
			return s, true
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	b := append(make([]byte, 0, d.pos-start+16), d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(b), true
		case c < 0x20:
			return nil, false
		case c == '\\':
			var ok bool
			if b, ok = d.escape(b); !ok {
				return nil, false
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, d.data[d.pos:d.pos+size]...)
			}
			d.pos += size
		}
	}
	return nil, false
}

// escape appends the character of the escape sequence at d.pos to b.
func (d *treeDecoder) escape(b []byte) ([]byte, bool) {
	d.pos++ // \
	if d.pos >= len(d.data) {
		return nil, false
	}
	e := d.data[d.pos]
	d.pos++
	switch e {
	case '"', '\\', '/':
		return append(b, e), true
	case 'b':
		return append(b, '\b'), true
	case 'f':
		return append(b, '\f'), true
	case 'n':
		return append(b, '\n'), true
	case 'r':
		return append(b, '\r'), true
	case 't':
		return append(b, '\t'), true
	case 'u':
	default:
		return nil, false
	}
	r, ok := d.hex4()
	if !ok {
		return nil, false
	}
	if utf16.IsSurrogate(r) {
		if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
			save := d.pos
			d.pos += 2
			r2, ok := d.hex4()
			if !ok {
				return nil, false
			}
			if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
				return utf8.AppendRune(b, dec), true
			}
			d.pos = save // not a pair: the second escape is read on its own
		}
		r = utf8.RuneError
	}
	return utf8.AppendRune(b, r), true
}

// hex4 decodes the four hex digits of a \u escape.
func (d *treeDecoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	d.pos += 4
	return r, true
}
