// Package jsonwire appends JSON strings and numbers to a byte slice exactly as
// encoding/json writes them, for the listeners' hand-written response encoders
// (OFREP, the Connect JSON fast path), which must match encoding/json and protojson
// byte for byte without their reflection and allocations; and decodes request
// bodies (Parser) into what those decoders would produce, handing back whatever it
// is not sure of.
package jsonwire

import (
	"math"
	"strconv"
	"unicode/utf8"
)

const hexDigits = "0123456789abcdef"

// AppendString quotes s as encoding/json does with HTML escaping (its default):
// <, > and & as \u003c \u003e \u0026, control characters escaped, U+2028 and U+2029
// escaped, each invalid UTF-8 byte replaced by U+FFFD (escaped as \ufffd by Go 1.26's
// encoding/json, written as is by Go 1.27's, which encoding/json/v2 implements:
// invalidUTF8 follows the toolchain's).
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, invalidUTF8...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendFloat writes a finite float64 as encoding/json (and protojson) do: the
// shortest representation that round-trips, in exponent form below 1e-6 and from
// 1e21 on, with a two-digit-free exponent (1e-7, not 1e-07). NaN and ±Inf are the
// caller's decision (protojson quotes them; encoding/json refuses them).
func AppendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
