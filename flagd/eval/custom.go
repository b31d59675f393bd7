package eval

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// flagd's custom operators. Each returns null (not false) on bad input, so an
// enclosing "if" takes its else branch and a bare operator yields DEFAULT.

// compileAffix compiles starts_with / ends_with: exactly two string arguments.
func compileAffix(prefix bool) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		for i, a := range args {
			if _, isString := a.(string); !isString && isLiteral(a) {
				// flagd's schema: a string or a rule.
				c.problemf(Index(path, i), "must be a string or a rule, not %s: the operator would always return null", describe(a))
			}
		}
		nodes := c.compileAll(args, path)
		return func(e *env) value {
			if len(nodes) != 2 {
				return null
			}
			s, affix := nodes[0](e), nodes[1](e)
			if s.k != kindString || affix.k != kindString {
				return null
			}
			if prefix {
				return boolValue(strings.HasPrefix(s.s, affix.s))
			}
			return boolValue(strings.HasSuffix(s.s, affix.s))
		}
	}
}

// semverOperators are the comparison operators of sem_ver.
var semverOperators = map[string]bool{"=": true, "!=": true, "<": true, "<=": true, ">": true, ">=": true, "~": true, "^": true}

// strictSemver is the version pattern of flagd's targeting schema (semver.org's
// regular expression, with an optional v prefix).
var strictSemver = regexp.MustCompile(`^[vV]?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// semverArg parses a sem_ver argument: strings as they are, numbers formatted as %v
// formats them (1.2 -> "1.2", 2 -> "2"), with an optional v or V prefix.
func semverArg(v value) (semVersion, bool) {
	switch v.k {
	case kindString:
		return parseSemver(v.s)
	case kindNumber:
		return parseSemver(strconv.FormatFloat(v.n, 'g', -1, 64))
	}
	return semVersion{}, false
}

func compileSemVer(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	if len(args) == 3 {
		if op, ok := args[1].(string); ok && !semverOperators[op] {
			c.problemf(Index(path, 1), "unknown sem_ver operator %q: use one of = != < <= > >= ~ ^", op)
		}
		for _, i := range []int{0, 2} {
			if lit, ok := args[i].(string); ok && !strictSemver.MatchString(lit) {
				c.problemf(Index(path, i), "%q is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build])", lit)
			}
		}
	}
	if len(nodes) != 3 {
		return nullNode
	}
	// A literal target version is parsed once here.
	target := func(e *env) (semVersion, bool) { return semverArg(nodes[2](e)) }
	if isLiteral(args[2]) {
		parsed, ok := semverArg(fromAny(args[2]))
		target = func(*env) (semVersion, bool) { return parsed, ok }
	}
	return func(e *env) value {
		version, ok := semverArg(nodes[0](e))
		if !ok {
			return null
		}
		op := nodes[1](e)
		want, ok := target(e)
		if !ok || op.k != kindString {
			return null
		}
		switch op.s {
		case "=":
			return boolValue(compareSemver(version, want) == 0)
		case "!=":
			return boolValue(compareSemver(version, want) != 0)
		case "<":
			return boolValue(compareSemver(version, want) < 0)
		case "<=":
			return boolValue(compareSemver(version, want) <= 0)
		case ">":
			return boolValue(compareSemver(version, want) > 0)
		case ">=":
			return boolValue(compareSemver(version, want) >= 0)
		case "~":
			return boolValue(version.major == want.major && version.minor == want.minor)
		case "^":
			return boolValue(version.major == want.major)
		}
		return null
	}
}

// maxTotalWeight caps the sum of fractional weights (flagd's v2 bucketing).
const maxTotalWeight = math.MaxInt32

// bucketEntry is one compiled [variant, weight?] distribution entry.
type bucketEntry struct {
	variant node
	weight  node
	whole   node // set when the entry is a rule that evaluates to the [variant, weight] array
}

// resolve evaluates the entry: its variant value and its weight (negative weights
// count as 0). ok is false when flagd would reject the distribution.
func (b bucketEntry) resolve(e *env) (variant node, weight int64, ok bool) {
	variant, wn := b.variant, b.weight
	if b.whole != nil {
		arr := b.whole(e)
		items := arr.array()
		if arr.k != kindArray || len(items) == 0 {
			return nil, 0, false
		}
		vv := fromAny(items[0])
		variant = constant(vv)
		wn = constant(numberValue(1))
		if len(items) > 1 {
			wn = constant(fromAny(items[1]))
		}
	}
	w := wn(e)
	if w.k != kindNumber || w.n != math.Trunc(w.n) || w.n > maxTotalWeight {
		return nil, 0, false
	}
	if w.n > 0 {
		weight = int64(w.n)
	}
	return variant, weight, true
}

// compileFractional compiles flagd's fractional operator with v2 bucketing:
// bucket = murmur3_x86_32(key, seed 0) * totalWeight >> 32, walked over the entries.
// The key is the first argument when it evaluates to a string, otherwise
// flagKey+targetingKey.
//
//nolint:gocognit // half the score is the returned evaluation closure, fractional's hot path, kept flat and next to the compile-time checks it is specialised by
func compileFractional(c *compiler, args []any, path string) node {
	var keyNode node
	entryArgs, first := args, 0
	if len(args) > 0 {
		if _, isArray := args[0].([]any); !isArray {
			if isLiteral(args[0]) {
				// flagd's schema wants a rule here ({"var": ...}, {"cat": [...]});
				// the engine would hash the constant, putting every user in one bucket.
				c.problemf(Index(path, 0), "the bucketing key must be a rule such as {\"var\": \"email\"}, not %s: every user would land in the same bucket", describe(args[0]))
			}
			keyNode = c.compile(args[0], Index(path, 0))
			entryArgs, first = args[1:], 1
		}
	}
	if len(entryArgs) == 0 {
		c.problemf(path, "fractional needs at least one [variant, weight] entry")
	}
	entries := make([]bucketEntry, len(entryArgs))
	allConst := true
	for i, raw := range entryArgs {
		entries[i], allConst = c.compileBucket(raw, Index(path, i+first), allConst)
	}
	// With literal weights the total is computed once, and a distribution flagd would
	// reject at every evaluation compiles to null.
	var constTotal int64
	if allConst {
		probe := &env{}
		for _, b := range entries {
			_, w, ok := b.resolve(probe)
			if !ok {
				return nullNode
			}
			constTotal += w
		}
		if constTotal > maxTotalWeight {
			c.problemf(path, "fractional weights sum to %d, more than %d", constTotal, maxTotalWeight)
			return nullNode
		}
	}
	return func(e *env) value {
		var h uint32
		switch {
		case keyNode != nil:
			k := keyNode(e)
			switch k.k {
			case kindString:
				h = murmur3(k.s, "")
			case kindNull:
				tk, ok := e.targetingKey()
				if !ok {
					return null
				}
				h, e.keyed = murmur3(e.flagKey, tk), true
			default:
				return null
			}
		default:
			tk, ok := e.targetingKey()
			if !ok {
				return null
			}
			h, e.keyed = murmur3(e.flagKey, tk), true
		}
		total := constTotal
		if !allConst {
			total = 0
			for _, b := range entries {
				_, w, ok := b.resolve(e)
				if !ok {
					return null
				}
				total += w
			}
			if total > maxTotalWeight {
				return null
			}
		}
		if total == 0 {
			return null
		}
		bucket := (uint64(h) * uint64(total)) >> 32
		var cumulative uint64
		for _, b := range entries {
			variant, w, ok := b.resolve(e)
			if !ok {
				return null
			}
			cumulative += uint64(w) //nolint:gosec // G115: resolve returns weights from 0 to maxTotalWeight
			if bucket < cumulative {
				v := variant(e)
				switch v.k {
				case kindString, kindBool, kindNumber, kindNull:
					return v
				}
				return null
			}
		}
		return null
	}
}

// compileBucket compiles one distribution entry and reports whether all entries so
// far have literal weights.
func (c *compiler) compileBucket(raw any, path string, allConst bool) (bucketEntry, bool) {
	arr, ok := raw.([]any)
	if !ok {
		if m, isRule := raw.(map[string]any); isRule && len(m) == 1 {
			return bucketEntry{whole: c.compile(raw, path)}, false
		}
		c.problemf(path, "a fractional entry must be a [variant, weight] array, got %s", fromAny(raw).k)
		return bucketEntry{whole: nullNode}, false
	}
	if len(arr) == 0 || len(arr) > 2 {
		c.problemf(path, "a fractional entry must be [variant] or [variant, weight], got %d items", len(arr))
	}
	if len(arr) == 0 {
		return bucketEntry{whole: nullNode}, false
	}
	b := bucketEntry{variant: c.compile(arr[0], Index(path, 0)), weight: c.constant(numberValue(1))}
	if lit := fromAny(arr[0]); isLiteral(arr[0]) && (lit.k == kindArray || lit.k == kindObject) {
		c.problemf(Index(path, 0), "a fractional variant must be a string, boolean or number, got %s", lit.k)
	}
	if len(arr) > 1 {
		wp := Index(path, 1)
		b.weight = c.compile(arr[1], wp)
		if isLiteral(arr[1]) {
			w := fromAny(arr[1])
			if w.k != kindNumber || w.n < 0 || w.n != math.Trunc(w.n) {
				c.problemf(wp, "weight must be a non-negative integer, got %s", literalText(arr[1]))
			} else if w.n > maxTotalWeight {
				c.problemf(wp, "weight %v is more than %d", w.n, maxTotalWeight)
			}
		} else {
			allConst = false
		}
	}
	return b, allConst
}

// literalText prints a literal as it appears in JSON, for messages.
func literalText(x any) string {
	switch t := x.(type) {
	case string:
		return fmt.Sprintf("%q", t)
	case nil:
		return "null"
	case float64:
		return formatJSONNumber(t)
	default:
		return fmt.Sprintf("%v", t)
	}
}

// targetingKey is the context's targetingKey when it is a non-empty string.
func (e *env) targetingKey() (string, bool) {
	tk, ok := e.ctx["targetingKey"].(string)
	return tk, ok && tk != ""
}

// murmur3 is MurmurHash3 x86_32 with seed 0 over the bytes of a followed by b,
// computed without concatenating them.
func murmur3(a, b string) uint32 {
	const c1, c2 = 0xcc9e2d51, 0x1b873593
	n := len(a) + len(b)
	at := func(i int) uint32 {
		if i < len(a) {
			return uint32(a[i])
		}
		return uint32(b[i-len(a)])
	}
	var h uint32
	i := 0
	for ; i+4 <= n; i += 4 {
		var k uint32
		switch {
		case i+4 <= len(a):
			k = uint32(a[i]) | uint32(a[i+1])<<8 | uint32(a[i+2])<<16 | uint32(a[i+3])<<24
		case i >= len(a):
			j := i - len(a)
			k = uint32(b[j]) | uint32(b[j+1])<<8 | uint32(b[j+2])<<16 | uint32(b[j+3])<<24
		default:
			k = at(i) | at(i+1)<<8 | at(i+2)<<16 | at(i+3)<<24
		}
		k *= c1
		k = k<<15 | k>>17
		k *= c2
		h ^= k
		h = h<<13 | h>>19
		h = h*5 + 0xe6546b64
	}
	var k uint32
	switch n - i {
	case 3:
		k ^= at(i+2) << 16
		fallthrough
	case 2:
		k ^= at(i+1) << 8
		fallthrough
	case 1:
		k ^= at(i)
		k *= c1
		k = k<<15 | k>>17
		k *= c2
		h ^= k
	}
	h ^= uint32(n) //nolint:gosec // G115: murmur3 mixes in the length modulo 2^32, by definition
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}
