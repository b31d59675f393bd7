package eval

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// node is one compiled JsonLogic expression.
type node func(e *env) value

// env is the state of one evaluation. data is the current scope: the evaluation
// context at the root, the current element inside map/filter/all/none/some, and
// {current, accumulator} inside reduce.
type env struct {
	data    any
	root    bool
	flagKey string
	ctx     map[string]any
	now     int64
	nowSet  bool
	clock   func() time.Time
	failure string // first runtime failure; the evaluation ends in PARSE_ERROR
	keyed   bool   // the evaluation read flagKey (see Flag.Decide)
}

func (e *env) fail(msg string) {
	if e.failure == "" {
		e.failure = msg
	}
}

func (e *env) timestamp() int64 {
	if !e.nowSet {
		clock := e.clock
		if clock == nil {
			clock = time.Now
		}
		e.now = clock().Unix()
		e.nowSet = true
	}
	return e.now
}

// withScope runs fn with data as the scope of var.
func (e *env) withScope(data any, fn func() value) value {
	saved, savedRoot := e.data, e.root
	e.data, e.root = data, false
	v := fn()
	e.data, e.root = saved, savedRoot
	return v
}

// Rule is a compiled targeting rule.
type Rule struct {
	root node
}

// compiler turns a decoded JSON rule into nodes and collects problems with their paths.
type compiler struct {
	strict   bool
	errors   Problems
	warnings Problems
	in       *Interner // may be nil
}

// Interner shares the compiled nodes of equal scalar literals (variant names, common
// strings and numbers, booleans) between the rules compiled with it, typically every
// rule of one document: compiled rules live as long as their document is served,
// and a literal otherwise costs a node in every rule that has it. It is not safe for
// concurrent use.
type Interner struct {
	m     map[literal]node
	names map[string]string // canonical strings: variant names and string literals
}

// canonical returns the Interner's copy of s: a variant name and a rule's string
// literal that are equal then share their bytes, and comparing them (the variant a
// rule named) ends at the pointers.
func (in *Interner) canonical(s string) string {
	if in == nil {
		return strings.Clone(s)
	}
	if c, ok := in.names[s]; ok {
		return c
	}
	c := strings.Clone(s)
	in.names[c] = c
	return c
}

// literal is an interned scalar: numbers by their bits, so that 0 and -0 stay apart.
type literal struct {
	k    kind
	b    bool
	bits uint64
	s    string
}

// NewInterner returns an empty Interner.
func NewInterner() *Interner { return &Interner{m: map[literal]node{}, names: map[string]string{}} }

// nullNode is the compiled null literal, shared by every rule.
var nullNode = constant(null)

// constant compiles a literal, shared through the Interner when it is a scalar.
func (c *compiler) constant(v value) node {
	if v.k == kindNull {
		return nullNode
	}
	if c.in == nil || v.x != nil {
		return constant(v)
	}
	if v.k == kindString {
		v.s = c.in.canonical(v.s)
	}
	key := literal{k: v.k, b: v.b, bits: math.Float64bits(v.n), s: v.s}
	if n, ok := c.in.m[key]; ok {
		return n
	}
	n := constant(v)
	c.in.m[key] = n
	return n
}

// CompileRule compiles a decoded JsonLogic rule (as produced by encoding/json into
// `any`). path is the JSON path of the rule, used in problems. In lenient mode
// (strict=false) what flagd evaluates at runtime compiles, and things that would make
// flagd fail at evaluation time (unknown operators) compile into a node that fails
// the evaluation with PARSE_ERROR; both are reported as warnings. In strict mode they
// are errors, and so is everything flagd's targeting schema rejects.
func CompileRule(tree any, path string, strict bool) (rule *Rule, warnings, errors Problems) {
	return CompileRuleWith(tree, path, strict, nil)
}

// CompileRuleWith is CompileRule sharing literals through in (nil: none).
func CompileRuleWith(tree any, path string, strict bool, in *Interner) (rule *Rule, warnings, errors Problems) {
	c := &compiler{strict: strict, in: in}
	n := c.compile(tree, path)
	if len(c.errors) > 0 {
		return nil, c.warnings, c.errors
	}
	return &Rule{root: n}, c.warnings, nil
}

// problemf records a schema-level finding: an error in strict mode, a warning otherwise.
func (c *compiler) problemf(path, format string, args ...any) {
	p := Problem{Path: path, Message: fmt.Sprintf(format, args...)}
	if c.strict {
		c.errors = append(c.errors, p)
	} else {
		c.warnings = append(c.warnings, p)
	}
}

func constant(v value) node { return func(*env) value { return v } }

// isLiteral reports whether a decoded JSON tree contains no operator object.
func isLiteral(x any) bool {
	switch t := x.(type) {
	case map[string]any:
		return len(t) != 1
	case []any:
		for _, e := range t {
			if !isLiteral(e) {
				return false
			}
		}
	}
	return true
}

func (c *compiler) compile(x any, path string) node {
	switch t := x.(type) {
	case map[string]any:
		if len(t) != 1 {
			if len(t) > 1 {
				c.problemf(path, "a rule object must have exactly one operator key, got %d keys (%s)", len(t), strings.Join(sortedKeys(t), ", "))
			}
			return constant(value{k: kindObject, x: t})
		}
		for op, args := range t {
			return c.operator(op, args, Key(path, op))
		}
	case []any:
		if isLiteral(t) {
			return constant(arrayValue(t))
		}
		elems := c.compileAll(t, path)
		return func(e *env) value {
			out := make([]any, len(elems))
			for i, el := range elems {
				out[i] = el(e).toAny()
			}
			return arrayValue(out)
		}
	}
	return c.constant(fromAny(x))
}

func (c *compiler) compileAll(args []any, path string) []node {
	nodes := make([]node, len(args))
	for i, a := range args {
		nodes[i] = c.compile(a, Index(path, i))
	}
	return nodes
}

// argList normalises operator arguments: JsonLogic allows a single argument without
// the array, `{"!": true}` for `{"!": [true]}`.
func argList(args any) []any {
	if a, ok := args.([]any); ok {
		return a
	}
	return []any{args}
}

// arity checks the argument count of an operator against [least, most] (most < 0:
// no upper bound).
func (c *compiler) arity(op string, n, least, most int, path string) {
	switch {
	case most >= 0 && least == most && n != least:
		c.problemf(path, "%q takes exactly %d argument%s, got %d", op, least, plural(least), n)
	case n < least:
		c.problemf(path, "%q takes at least %d argument%s, got %d", op, least, plural(least), n)
	case most >= 0 && n > most:
		c.problemf(path, "%q takes at most %d arguments, got %d", op, most, n)
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// opSpec describes an operator: its arity, whether flagd's schema lists it, and its compiler.
type opSpec struct {
	min, max int
	inSchema bool
	build    func(c *compiler, args []any, path string) node
}

// spec returns the operator's description; ok is false for operators flagd does not know.
func (c *compiler) spec(op string) (s opSpec, ok bool) {
	const many = -1
	switch op {
	case "if":
		return opSpec{1, many, true, compileIf}, true
	case "?:":
		return opSpec{1, many, false, compileIf}, true
	case "and":
		return opSpec{1, many, true, compileAndOr(false)}, true
	case "or":
		return opSpec{1, many, true, compileAndOr(true)}, true
	case "!":
		return opSpec{1, 1, true, compileNot(false)}, true
	case "!!":
		return opSpec{1, 1, true, compileNot(true)}, true
	case "==", "===", "!=", "!==":
		return opSpec{2, 2, true, compileEquality(op)}, true
	case "<", "<=", ">", ">=":
		return opSpec{2, 3, true, compileCompare(op)}, true
	case "+", "*":
		return opSpec{1, many, true, compileArith(op)}, true
	case "-":
		return opSpec{1, 2, true, compileArith(op)}, true
	case "/", "%":
		return opSpec{2, 2, true, compileArith(op)}, true
	case "min", "max":
		return opSpec{1, many, true, compileMinMax(op == "max")}, true
	case "abs":
		return opSpec{1, 1, false, compileAbs}, true
	case "cat":
		return opSpec{0, many, true, compileCat}, true
	case "substr":
		return opSpec{2, 3, true, compileSubstr}, true
	case "in":
		return opSpec{2, 2, true, compileIn}, true
	case "merge":
		return opSpec{0, many, true, compileMerge}, true
	case "missing":
		return opSpec{0, many, true, compileMissing}, true
	case "missing_some":
		return opSpec{2, 2, true, compileMissingSome}, true
	case "map", "filter", "all", "none", "some":
		return opSpec{2, 2, true, compileIteration(op)}, true
	case "reduce":
		return opSpec{3, 3, true, compileReduce}, true
	case "set":
		return opSpec{3, 3, false, compileSet}, true
	case "contains_all", "contains_any", "contains_none":
		return opSpec{2, 2, false, compileContains(op)}, true
	case "starts_with", "ends_with":
		return opSpec{2, 2, true, compileAffix(op == "starts_with")}, true
	case "sem_ver":
		return opSpec{3, 3, true, compileSemVer}, true
	case "fractional":
		return opSpec{1, many, true, compileFractional}, true
	}
	return opSpec{}, false
}

func (c *compiler) operator(op string, rawArgs any, path string) node {
	if op == "var" {
		return c.compileVar(rawArgs, path)
	}
	spec, ok := c.spec(op)
	if !ok {
		msg := fmt.Sprintf("unknown operator %q", op)
		if op == "$ref" {
			msg = fmt.Sprintf("no evaluator named %v in $evaluators", literalText(rawArgs))
		}
		if c.strict {
			c.errors = append(c.errors, Problem{Path: path, Message: msg})
		} else {
			c.warnings = append(c.warnings, Problem{Path: path, Message: msg + " (evaluation fails with PARSE_ERROR)"})
		}
		failure := Problem{Path: path, Message: msg}.String()
		return func(e *env) value { e.fail(failure); return null }
	}
	if !spec.inSchema {
		c.problemf(path, "operator %q is evaluated by flagd but not allowed by the flagd schema", op)
	}
	args := argList(rawArgs)
	c.arity(op, len(args), spec.min, spec.max, path)
	return spec.build(c, args, path)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// arg returns the compiled i-th argument, or a null constant when it is missing.
func (c *compiler) arg(args []any, i int, path string) node {
	if i < len(args) {
		return c.compile(args[i], Index(path, i))
	}
	return nullNode
}
