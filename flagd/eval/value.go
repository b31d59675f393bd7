package eval

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// kind is the JSON type of a value.
type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	switch k {
	case kindBool:
		return "boolean"
	case kindNumber:
		return "number"
	case kindString:
		return "string"
	case kindArray:
		return "array"
	case kindObject:
		return "object"
	default:
		return "null"
	}
}

// value is a JSON value as the compiled rules see it. Scalars are held unboxed so
// that comparisons, arithmetic and string operators allocate nothing; arrays and
// objects keep the decoded []any / map[string]any of the context or the rule.
type value struct {
	k kind
	b bool
	n float64
	s string
	x any // []any for kindArray, map[string]any for kindObject
}

var null = value{}

func boolValue(b bool) value      { return value{k: kindBool, b: b} }
func numberValue(n float64) value { return value{k: kindNumber, n: n} }
func stringValue(s string) value  { return value{k: kindString, s: s} }
func arrayValue(a []any) value    { return value{k: kindArray, x: a} }

// fromAny converts a decoded JSON value (encoding/json, structpb.AsMap, YAML) to a value.
// Go integer types are accepted for contexts built in code.
func fromAny(v any) value {
	switch t := v.(type) {
	case nil:
		return null
	case bool:
		return value{k: kindBool, b: t}
	case float64:
		return value{k: kindNumber, n: t}
	case string:
		return value{k: kindString, s: t}
	case map[string]any:
		return value{k: kindObject, x: v}
	case []any:
		return value{k: kindArray, x: v} // v, not t: re-boxing the slice header would allocate
	case int:
		return value{k: kindNumber, n: float64(t)}
	case int64:
		return value{k: kindNumber, n: float64(t)}
	case int32:
		return value{k: kindNumber, n: float64(t)}
	case uint64:
		return value{k: kindNumber, n: float64(t)}
	case uint32:
		return value{k: kindNumber, n: float64(t)}
	case float32:
		return value{k: kindNumber, n: float64(t)}
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return null
		}
		return value{k: kindNumber, n: f}
	default:
		return null
	}
}

// toAny converts a value back to its decoded-JSON form. Numbers are boxed here, so
// callers on the hot path keep values unboxed as long as they can.
func (v value) toAny() any {
	switch v.k {
	case kindBool:
		return v.b
	case kindNumber:
		return v.n
	case kindString:
		return v.s
	case kindArray, kindObject:
		return v.x
	default:
		return nil
	}
}

func (v value) array() []any {
	a, _ := v.x.([]any)
	return a
}

func (v value) object() map[string]any {
	m, _ := v.x.(map[string]any)
	return m
}

// truthy follows the reference JsonLogic engine: false, 0, "", [] and {} are false.
// NaN is true there (unlike JavaScript): it only tests n != 0.
func (v value) truthy() bool {
	switch v.k {
	case kindBool:
		return v.b
	case kindNumber:
		return v.n != 0
	case kindString:
		return v.s != ""
	case kindArray:
		return len(v.array()) > 0
	case kindObject:
		return len(v.object()) > 0
	default:
		return false
	}
}

// toNumber is JavaScript's ToNumber as the reference engine has it, used by comparisons
// and equality: null is 0, booleans are 0/1, blank strings are 0, unparsable strings,
// strings out of float64's range ("1e999"), arrays and objects are NaN.
func (v value) toNumber() float64 {
	switch v.k {
	case kindNull:
		return 0
	case kindBool:
		if v.b {
			return 1
		}
		return 0
	case kindNumber:
		return v.n
	case kindString:
		if strings.TrimSpace(v.s) == "" {
			return 0
		}
		n, err := strconv.ParseFloat(v.s, 64)
		if err != nil {
			return math.NaN()
		}
		return n
	default:
		return math.NaN()
	}
}

// arith is the number coercion of the arithmetic operators. As in the reference
// engine, strings that do not parse count as 0 and strings out of range as ±Inf;
// null and booleans follow JavaScript (the reference engine fails the whole
// evaluation there).
func (v value) arith() float64 {
	if v.k == kindString {
		n, _ := strconv.ParseFloat(v.s, 64) // 0 when invalid, ±Inf when out of range
		return n
	}
	return v.toNumber()
}

// text is the string form used by cat, substr and in: numbers without exponent,
// null as "", arrays joined by commas as in JavaScript.
func (v value) text() string {
	switch v.k {
	case kindString:
		return v.s
	case kindNumber:
		return strconv.FormatFloat(v.n, 'f', -1, 64)
	case kindBool:
		if v.b {
			return "true"
		}
		return "false"
	case kindArray:
		a := v.array()
		parts := make([]string, len(a))
		for i, e := range a {
			parts[i] = fromAny(e).text()
		}
		return strings.Join(parts, ",")
	case kindObject:
		return "[object Object]"
	default:
		return ""
	}
}

// looseEquals is JsonLogic's "==": null equals only null, two strings compare as
// strings, anything else compares as numbers.
func looseEquals(a, b value) bool {
	if a.k == kindNull || b.k == kindNull {
		return a.k == b.k
	}
	if a.k == kindString && b.k == kindString {
		return a.s == b.s
	}
	return a.toNumber() == b.toNumber()
}

// strictEquals is "===": same JSON type, then loose equality (so two arrays or two
// objects are never equal, as in JavaScript).
func strictEquals(a, b value) bool {
	if a.k != b.k {
		return false
	}
	return looseEquals(a, b)
}

// less is JavaScript's "<": two strings compare by code points, anything else as numbers.
func less(a, b value) bool {
	if a.k == kindString && b.k == kindString {
		return a.s < b.s
	}
	return a.toNumber() < b.toNumber()
}

// sameElement is the element equality of "in" and contains_*: numbers by value,
// strings and booleans by value, null only with null.
func sameElement(a, b value) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kindNull:
		return true
	case kindBool:
		return a.b == b.b
	case kindNumber:
		return a.n == b.n
	case kindString:
		return a.s == b.s
	default:
		return false
	}
}

// variantName is the variant a targeting result selects: strings as they are,
// booleans as "true"/"false", numbers as encoding/json prints them. ok is false for
// arrays and objects, which never name a variant.
func (v value) variantName() (string, bool) {
	switch v.k {
	case kindString:
		return v.s, true
	case kindBool:
		if v.b {
			return "true", true
		}
		return "false", true
	case kindNumber:
		return formatJSONNumber(v.n), true
	default:
		return "", false
	}
}

// formatJSONNumber prints a float64 the way encoding/json does (ES6 number formatting).
func formatJSONNumber(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	s := strconv.FormatFloat(f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(s)
		if n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	}
	return s
}
