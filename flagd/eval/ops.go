package eval

import (
	"math"
	"strings"
)

// The standard JsonLogic operators, with the semantics of the engine flagd uses
// (github.com/diegoholiveira/jsonlogic/v3) wherever that engine gives an answer.
// Deviations are listed in docs/compatibility.md.

func compileIf(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	return func(e *env) value {
		n := len(nodes)
		for i := 0; i+1 < n; i += 2 {
			if nodes[i](e).truthy() {
				return nodes[i+1](e)
			}
		}
		if n%2 == 1 {
			return nodes[n-1](e)
		}
		return null
	}
}

// compileAndOr returns the first falsy (and) or truthy (or) argument, else the last one.
func compileAndOr(isOr bool) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		nodes := c.compileAll(args, path)
		return func(e *env) value {
			last := null
			for _, n := range nodes {
				last = n(e)
				if last.truthy() == isOr {
					return last
				}
			}
			return last
		}
	}
}

func compileNot(double bool) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		a := c.arg(args, 0, path)
		return func(e *env) value { return boolValue(a(e).truthy() == double) }
	}
}

func compileEquality(op string) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		a, b := c.arg(args, 0, path), c.arg(args, 1, path)
		eq := looseEquals
		if op == "===" || op == "!==" {
			eq = strictEquals
		}
		want := op == "==" || op == "==="
		return func(e *env) value { return boolValue(eq(a(e), b(e)) == want) }
	}
}

func lessOrEqual(a, b value) bool { return less(a, b) || looseEquals(a, b) }

// compileCompare handles < <= > >=, including the three-argument "between" form.
func compileCompare(op string) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		nodes := c.compileAll(args, path)
		cmp := less
		if op == "<=" || op == ">=" {
			cmp = lessOrEqual
		}
		greater := op == ">" || op == ">="
		return func(e *env) value {
			if len(nodes) < 2 {
				return boolValue(false)
			}
			a, b := nodes[0](e), nodes[1](e)
			if len(nodes) == 2 {
				if greater {
					return boolValue(cmp(b, a))
				}
				return boolValue(cmp(a, b))
			}
			x := nodes[2](e)
			if greater {
				return boolValue(cmp(x, b) && cmp(b, a))
			}
			return boolValue(cmp(a, b) && cmp(b, x))
		}
	}
}

func compileArith(op string) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		nodes := c.compileAll(args, path)
		switch op {
		case "+":
			if len(nodes) == 1 { // the value itself, so that -0 stays -0 as in the reference
				return func(e *env) value { return numberValue(nodes[0](e).arith()) }
			}
			return func(e *env) value {
				sum := 0.0
				for _, n := range nodes {
					sum += n(e).arith()
				}
				return numberValue(sum)
			}
		case "*":
			return func(e *env) value {
				product := 1.0
				for _, n := range nodes {
					product *= n(e).arith()
				}
				return numberValue(product)
			}
		case "-":
			return func(e *env) value {
				switch len(nodes) {
				case 0:
					return numberValue(0)
				case 1:
					return numberValue(-nodes[0](e).arith())
				}
				return numberValue(nodes[0](e).arith() - nodes[1](e).arith())
			}
		case "/":
			return func(e *env) value {
				if len(nodes) < 2 {
					return null
				}
				return numberValue(nodes[0](e).arith() / nodes[1](e).arith())
			}
		default: // "%"
			return func(e *env) value {
				if len(nodes) < 2 {
					return null
				}
				return numberValue(math.Mod(nodes[0](e).arith(), nodes[1](e).arith()))
			}
		}
	}
}

func compileMinMax(isMax bool) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		nodes := c.compileAll(args, path)
		return func(e *env) value {
			if len(nodes) == 0 {
				return null
			}
			best := nodes[0](e).arith()
			for _, n := range nodes[1:] {
				v := n(e).arith()
				if (isMax && v > best) || (!isMax && v < best) {
					best = v
				}
			}
			return numberValue(best)
		}
	}
}

func compileAbs(c *compiler, args []any, path string) node {
	a := c.arg(args, 0, path)
	return func(e *env) value { return numberValue(math.Abs(a(e).arith())) }
}

// compileCat concatenates the string forms of its arguments. Like the reference
// engine, a result built from two or more arguments has surrounding spaces trimmed.
func compileCat(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	return func(e *env) value {
		switch len(nodes) {
		case 0:
			return stringValue("")
		case 1:
			return stringValue(nodes[0](e).text())
		}
		var b strings.Builder
		for _, n := range nodes {
			b.WriteString(n(e).text())
		}
		return stringValue(strings.TrimSpace(b.String()))
	}
}

// compileSubstr takes [string, start, length?] counting in characters (runes);
// negative start counts from the end, negative length stops that many before the end.
func compileSubstr(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	return func(e *env) value {
		if len(nodes) < 2 {
			if len(nodes) == 1 {
				return stringValue(nodes[0](e).text())
			}
			return stringValue("")
		}
		s := nodes[0](e).text()
		runes := []rune(s)
		total := len(runes)
		from := toInt(nodes[1](e).arith())
		if from < 0 {
			from += total
		}
		if from < 0 || from > total {
			return stringValue(s)
		}
		length := total
		if len(nodes) == 3 {
			length = toInt(nodes[2](e).arith())
		}
		var to int
		if length < 0 {
			to = total + length
		} else {
			to = from + length
		}
		if to > total {
			to = total
		}
		if to < from {
			return stringValue("")
		}
		return stringValue(string(runes[from:to]))
	}
}

// toInt is the reference engine's int(float64) for substr and missing_some: it
// truncates. Where Go leaves the conversion to the platform (NaN, beyond ±2^63), this
// gives the answer the reference gives on amd64 (a hugely negative index); values
// are capped at ±2^62 so that adding a string length cannot overflow.
func toInt(f float64) int {
	const limit = 1 << 62
	switch {
	case math.IsNaN(f), f <= -limit:
		return -limit
	case f >= limit:
		return limit
	}
	return int(f)
}

// compileIn is substring search when the second argument is a string and membership
// when it is an array (an array element that is itself a [low, high] pair matches a
// number in that inclusive range, as in the reference engine).
func compileIn(c *compiler, args []any, path string) node {
	a, b := c.arg(args, 0, path), c.arg(args, 1, path)
	return func(e *env) value {
		needle, hay := a(e), b(e)
		switch hay.k {
		case kindString:
			return boolValue(strings.Contains(hay.s, needle.text()))
		case kindArray:
			for _, el := range hay.array() {
				ev := fromAny(el)
				if ev.k == kindArray {
					r := ev.array()
					if len(r) >= 2 {
						x := needle.arith()
						if x >= fromAny(r[0]).arith() && fromAny(r[1]).arith() >= x {
							return boolValue(true)
						}
					}
					continue
				}
				if needle.k == kindNumber {
					if ev.k != kindObject && ev.arith() == needle.n {
						return boolValue(true)
					}
					continue
				}
				if sameElement(ev, needle) {
					return boolValue(true)
				}
			}
		}
		return boolValue(false)
	}
}

// compileMerge flattens its arguments one level into a single array.
func compileMerge(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	return func(e *env) value {
		out := make([]any, 0, len(nodes))
		for _, n := range nodes {
			v := n(e)
			if v.k == kindArray {
				out = append(out, v.array()...)
			} else {
				out = append(out, v.toAny())
			}
		}
		return arrayValue(out)
	}
}

// keysOf evaluates the key arguments of missing / missing_some: an array as the first
// argument is the list of keys.
func keysOf(e *env, nodes []node) []any {
	if len(nodes) == 0 {
		return nil
	}
	first := nodes[0](e)
	if first.k == kindArray {
		return first.array()
	}
	keys := make([]any, len(nodes))
	keys[0] = first.toAny()
	for i, n := range nodes[1:] {
		keys[i+1] = n(e).toAny()
	}
	return keys
}

func missingKeys(e *env, keys []any) (missing []any, found int) {
	missing = []any{}
	for _, k := range keys {
		if lookupPath(e.data, splitPath(fromAny(k).text())) == nil {
			missing = append(missing, k)
		} else {
			found++
		}
	}
	return missing, found
}

func compileMissing(c *compiler, args []any, path string) node {
	nodes := c.compileAll(args, path)
	return func(e *env) value {
		m, _ := missingKeys(e, keysOf(e, nodes))
		return arrayValue(m)
	}
}

func compileMissingSome(c *compiler, args []any, path string) node {
	need, keys := c.arg(args, 0, path), c.arg(args, 1, path)
	return func(e *env) value {
		m, found := missingKeys(e, keys(e).array())
		if found >= toInt(need(e).arith()) {
			return arrayValue([]any{})
		}
		return arrayValue(m)
	}
}

// compileIteration handles map, filter, all, none and some: the second argument is
// evaluated with each element of the first as the scope of var.
func compileIteration(op string) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		subject, body := c.arg(args, 0, path), c.arg(args, 1, path)
		return func(e *env) value {
			items := subject(e).array()
			switch op {
			case "map":
				out := make([]any, len(items))
				for i, it := range items {
					out[i] = e.withScope(it, func() value { return body(e) }).toAny()
				}
				return arrayValue(out)
			case "filter":
				out := make([]any, 0, len(items))
				for _, it := range items {
					if e.withScope(it, func() value { return body(e) }).truthy() {
						out = append(out, it)
					}
				}
				return arrayValue(out)
			case "all":
				if len(items) == 0 {
					return boolValue(false)
				}
				for _, it := range items {
					if !e.withScope(it, func() value { return body(e) }).truthy() {
						return boolValue(false)
					}
				}
				return boolValue(true)
			default: // some, none
				for _, it := range items {
					if e.withScope(it, func() value { return body(e) }).truthy() {
						return boolValue(op == "some")
					}
				}
				return boolValue(op == "none")
			}
		}
	}
}

// compileReduce folds the array with {current, accumulator} as the scope. As in the
// reference engine, null elements are skipped, the accumulator keeps the type of the
// initial value when that is a boolean, number or string, and a subject that is not
// an array (a missing var) gives 0, not the initial value.
func compileReduce(c *compiler, args []any, path string) node {
	subject, body, initial := c.arg(args, 0, path), c.arg(args, 1, path), c.arg(args, 2, path)
	return func(e *env) value {
		acc := initial(e)
		typed := acc.k
		items := subject(e)
		if items.k != kindArray {
			return numberValue(0)
		}
		for _, it := range items.array() {
			if it == nil {
				continue
			}
			scope := map[string]any{"current": it, "accumulator": acc.toAny()}
			v := e.withScope(scope, func() value { return body(e) })
			switch typed {
			case kindBool:
				acc = boolValue(v.truthy())
			case kindNumber:
				acc = numberValue(v.arith())
			case kindString:
				acc = stringValue(v.text())
			default:
				acc = v
			}
		}
		return acc
	}
}

// compileSet returns a copy of the object with one property set.
func compileSet(c *compiler, args []any, path string) node {
	obj, prop, val := c.arg(args, 0, path), c.arg(args, 1, path), c.arg(args, 2, path)
	return func(e *env) value {
		o := obj(e)
		if o.k != kindObject {
			return o
		}
		m := deepCopy(o.object()).(map[string]any)
		m[prop(e).text()] = val(e).toAny()
		return value{k: kindObject, x: m}
	}
}

func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = deepCopy(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = deepCopy(x)
		}
		return out
	}
	return v
}

// compileContains handles contains_all, contains_any and contains_none over two arrays.
func compileContains(op string) func(*compiler, []any, string) node {
	return func(c *compiler, args []any, path string) node {
		a, b := c.arg(args, 0, path), c.arg(args, 1, path)
		return func(e *env) value {
			hay, needles := a(e), b(e)
			if hay.k != kindArray || needles.k != kindArray {
				return boolValue(op == "contains_none")
			}
			for _, n := range needles.array() {
				found := false
				nv := fromAny(n)
				for _, h := range hay.array() {
					if sameElement(fromAny(h), nv) {
						found = true
						break
					}
				}
				switch {
				case op == "contains_all" && !found:
					return boolValue(false)
				case op == "contains_any" && found:
					return boolValue(true)
				case op == "contains_none" && found:
					return boolValue(false)
				}
			}
			return boolValue(op != "contains_any")
		}
	}
}
