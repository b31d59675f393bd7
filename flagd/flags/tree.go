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
	return (&treeDecoder{data: data}).whole()
}

// rawFlag is the JSON of one flag of a document decoded by decodeDocument: checked
// for syntax, decoded by the goroutine that compiles the flag.
type rawFlag []byte

// decodeDocument is decodeTree for a whole flag document, except that the flags of
// its top-level "flags" member (an object or an array) are left as rawFlag values,
// checked but not decoded: each is decoded where it is compiled, on every core, and
// is garbage as soon as it is compiled. Its results are those of decodeTree, flag
// values aside: decodeTree of a rawFlag can still fail on what only decoding sees
// (a number out of float64's range), and the caller then decodes the whole document
// with encoding/json.
func decodeDocument(data []byte) (v any, ok bool) {
	return (&treeDecoder{data: data, lazyFlags: true}).whole()
}

// whole decodes d.data as one JSON value with nothing but whitespace around it.
func (d *treeDecoder) whole() (any, bool) {
	d.space()
	v, ok := d.value(0)
	if !ok {
		return nil, false
	}
	d.space()
	return v, d.pos == len(d.data)
}

// treeDecoder is the state of decodeTree.
type treeDecoder struct {
	data      []byte
	pos       int
	lazyFlags bool // decodeDocument: the top-level "flags" member's flags stay raw
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
	m := map[string]any{}
	if d.open('}') {
		return m, true
	}
	for {
		k, ok := d.key()
		if !ok {
			return nil, false
		}
		var v any
		if depth == 1 && d.lazyFlags && k == "flags" {
			v, ok = d.flags(depth)
		} else {
			v, ok = d.value(depth)
		}
		if !ok {
			return nil, false
		}
		m[k] = v // a repeated key: the last wins, as in encoding/json
		if more, ok := d.next('}'); !more {
			return m, ok
		}
	}
}

func (d *treeDecoder) array(depth int) (any, bool) {
	if depth > maxTreeDepth {
		return nil, false
	}
	a := []any{}
	if d.open(']') {
		return a, true
	}
	for {
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if more, ok := d.next(']'); !more {
			return a, ok
		}
	}
}

// open moves past the opening byte of an object or array and reports whether it is
// empty (then also past its closing byte).
func (d *treeDecoder) open(closing byte) (empty bool) {
	d.pos++
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == closing {
		d.pos++
		return true
	}
	return false
}

// key decodes an object member's name and moves past the ':' after it.
func (d *treeDecoder) key() (string, bool) {
	if d.pos >= len(d.data) || d.data[d.pos] != '"' {
		return "", false
	}
	k, ok := d.str()
	if !ok || !d.colon() {
		return "", false
	}
	return k.(string), true
}

// colon moves past the ':' after a member's name.
func (d *treeDecoder) colon() bool {
	d.space()
	if d.pos >= len(d.data) || d.data[d.pos] != ':' {
		return false
	}
	d.pos++
	d.space()
	return true
}

// next moves past the ',' after a member or element (more) or the closing byte (the
// end, ok); anything else is a syntax error.
func (d *treeDecoder) next(closing byte) (more, ok bool) {
	d.space()
	if d.pos >= len(d.data) {
		return false, false
	}
	switch d.data[d.pos] {
	case ',':
		d.pos++
		d.space()
		return true, true
	case closing:
		d.pos++
		return false, true
	}
	return false, false
}

// number decodes a number of JSON's grammar as a float64.
func (d *treeDecoder) number() (any, bool) {
	start := d.pos
	if !d.numberSyntax() {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(d.data[start:d.pos]), 64)
	if err != nil { // out of range: encoding/json reports it
		return nil, false
	}
	return f, true
}

// numberSyntax moves past a number of JSON's grammar.
func (d *treeDecoder) numberSyntax() bool {
	if d.data[d.pos] == '-' {
		d.pos++
	}
	switch {
	case d.pos < len(d.data) && d.data[d.pos] == '0':
		d.pos++
	case d.digits() == 0:
		return false
	}
	if d.pos < len(d.data) && d.data[d.pos] == '.' {
		d.pos++
		if d.digits() == 0 {
			return false
		}
	}
	if d.pos < len(d.data) && (d.data[d.pos] == 'e' || d.data[d.pos] == 'E') {
		d.pos++
		if d.pos < len(d.data) && (d.data[d.pos] == '+' || d.data[d.pos] == '-') {
			d.pos++
		}
		if d.digits() == 0 {
			return false
		}
	}
	return true
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

// flags decodes the top-level "flags" member with its flags left as rawFlag values.
func (d *treeDecoder) flags(depth int) (any, bool) {
	if d.pos >= len(d.data) || (d.data[d.pos] != '{' && d.data[d.pos] != '[') {
		return d.value(depth) // not a container of flags: the parser says what is wrong
	}
	object := d.data[d.pos] == '{'
	closing := byte(']')
	if object {
		closing = '}'
	}
	if depth++; depth > maxTreeDepth {
		return nil, false
	}
	m, a := map[string]any{}, []any{}
	result := func() any {
		if object {
			return m
		}
		return a
	}
	if d.open(closing) {
		return result(), true
	}
	for {
		var key string
		if object {
			var ok bool
			if key, ok = d.key(); !ok {
				return nil, false
			}
		}
		start := d.pos
		if !d.skip(depth) {
			return nil, false
		}
		if object {
			m[key] = rawFlag(d.data[start:d.pos])
		} else {
			a = append(a, rawFlag(d.data[start:d.pos]))
		}
		if more, ok := d.next(closing); !more {
			return result(), ok
		}
	}
}

// skip checks the syntax of the value at d.pos and moves past it, building nothing.
func (d *treeDecoder) skip(depth int) bool {
	if d.pos >= len(d.data) {
		return false
	}
	switch c := d.data[d.pos]; {
	case c == '{' || c == '[':
		closing := c + 2 // '}' is '{'+2, ']' is '['+2
		if depth+1 > maxTreeDepth {
			return false
		}
		if d.open(closing) {
			return true
		}
		for {
			if c == '{' && (d.pos >= len(d.data) || d.data[d.pos] != '"' || !d.skipString() || !d.colon()) {
				return false
			}
			if !d.skip(depth + 1) {
				return false
			}
			if more, ok := d.next(closing); !more {
				return ok
			}
		}
	case c == '"':
		return d.skipString()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.numberSyntax() // the range is checked where the flag is decoded
	}
	return false
}

// skipString checks a string's syntax (escapes, no control characters) and moves
// past it; invalid UTF-8 is accepted, as decoding replaces it.
func (d *treeDecoder) skipString() bool {
	d.pos++ // "
	for d.pos < len(d.data) {
		switch c := d.data[d.pos]; {
		case c == '"':
			d.pos++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return false
			}
			switch d.data[d.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.pos += 2
			case 'u':
				d.pos += 2
				if _, ok := d.hex4(); !ok {
					return false
				}
			default:
				return false
			}
		default:
			d.pos++
		}
	}
	return false
}
