package eval

import (
	"strconv"
	"strings"
)

// flagdPrefix is the context key flagd injects: {"flagKey": ..., "timestamp": ...}.
const flagdPrefix = "$flagd"

func splitPath(p string) []string {
	if p == "" {
		return nil
	}
	parts := strings.Split(p, ".")
	out := parts[:0]
	for _, s := range parts {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// lookupPath walks a dotted path through objects and arrays (numeric segments index
// arrays). A missing step or a null value gives nil.
func lookupPath(data any, parts []string) any {
	cur := data
	for _, part := range parts {
		switch t := cur.(type) {
		case map[string]any:
			cur = t[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(t) {
				return nil
			}
			cur = t[i]
		default:
			return nil
		}
		if cur == nil {
			return nil
		}
	}
	return cur
}

// resolve reads a path in the current scope; at the root, $flagd.flagKey and
// $flagd.timestamp come from the evaluation, overriding anything the caller sent.
func (e *env) resolve(parts []string) value {
	if e.root && len(parts) > 0 && parts[0] == flagdPrefix {
		return e.flagdValue(parts[1:])
	}
	if len(parts) == 0 {
		return fromAny(e.data)
	}
	return fromAny(lookupPath(e.data, parts))
}

func (e *env) flagdValue(rest []string) value {
	if len(rest) == 0 {
		e.keyed = true
		return value{k: kindObject, x: map[string]any{"flagKey": e.flagKey, "timestamp": float64(e.timestamp())}}
	}
	if len(rest) > 1 {
		return null
	}
	switch rest[0] {
	case "flagKey":
		e.keyed = true
		return stringValue(e.flagKey)
	case "timestamp":
		return numberValue(float64(e.timestamp()))
	}
	return null
}

// scalarScope is {"var": null} as the reference engine has it: the scope when it is a
// boolean, number or string (inside map/filter/…), null when it is an object (the
// context), an array or null. ("" and [] give the scope whatever it is.)
func scalarScope(e *env) value {
	v := fromAny(e.data)
	switch v.k {
	case kindBool, kindNumber, kindString:
		return v
	}
	return null
}

// compileVar compiles {"var": path}, {"var": [path]} and {"var": [path, default]}.
// Constant paths are split once here, so reading a context value allocates nothing.
func (c *compiler) compileVar(raw any, path string) node {
	if raw == nil {
		return scalarScope
	}
	args := argList(raw)
	c.arity("var", len(args), 0, 2, path)
	def := nullNode
	hasDefault := len(args) == 2
	if hasDefault {
		def = c.compile(args[1], Index(path, 1))
	}
	if len(args) == 0 {
		return func(e *env) value { return fromAny(e.data) }
	}
	p := args[0]
	var argPath string
	if _, isArray := raw.([]any); isArray {
		argPath = Index(path, 0)
	} else {
		argPath = path
	}
	switch t := p.(type) {
	case string:
		parts := splitPath(t)
		c.checkFlagdVar(parts, argPath)
		return varNode(parts, def, hasDefault)
	case float64: // printed without exponent, as the reference engine does
		return varNode(splitPath(numberValue(t).text()), def, hasDefault)
	case nil:
		return scalarScope
	case map[string]any, []any:
		dyn := c.compile(t, argPath)
		return func(e *env) value {
			p := dyn(e)
			if p.k == kindNull {
				return scalarScope(e)
			}
			v := e.resolve(splitPath(p.text()))
			if v.k == kindNull {
				return def(e)
			}
			return v
		}
	default:
		c.problemf(argPath, "var path must be a string or a number, got %s", fromAny(t).k)
		return nullNode
	}
}

func varNode(parts []string, def node, hasDefault bool) node {
	if !hasDefault && len(parts) == 1 && parts[0] != flagdPrefix {
		// The common case, a top-level context key: one map lookup.
		key := parts[0]
		return func(e *env) value {
			if m, ok := e.data.(map[string]any); ok {
				return fromAny(m[key])
			}
			return e.resolve(parts)
		}
	}
	if !hasDefault {
		return func(e *env) value { return e.resolve(parts) }
	}
	return func(e *env) value {
		v := e.resolve(parts)
		if v.k == kindNull {
			return def(e)
		}
		return v
	}
}

// checkFlagdVar rejects $flagd properties other than flagKey and timestamp, as the schema does.
func (c *compiler) checkFlagdVar(parts []string, path string) {
	if len(parts) == 0 || parts[0] != flagdPrefix {
		return
	}
	if len(parts) == 2 && (parts[1] == "flagKey" || parts[1] == "timestamp") {
		return
	}
	if len(parts) == 1 {
		return
	}
	c.problemf(path, "%q is not a flagd property: only $flagd.flagKey and $flagd.timestamp exist", strings.Join(parts, "."))
}
