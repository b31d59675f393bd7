// Package eval evaluates flagd feature flags. Targeting rules (JsonLogic plus flagd's
// fractional, sem_ver, starts_with and ends_with) are compiled once into a tree of Go
// closures over typed values; an evaluation does no JSON encoding or decoding, and a
// static flag resolves without allocating.
package eval

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reason says why a flag resolved as it did (OpenFeature's resolution reasons).
type Reason string

// The reasons flagd produces.
const (
	ReasonStatic         Reason = "STATIC"
	ReasonTargetingMatch Reason = "TARGETING_MATCH"
	ReasonDefault        Reason = "DEFAULT"
	ReasonDisabled       Reason = "DISABLED"
	ReasonError          Reason = "ERROR"
)

// ErrorCode is the OpenFeature error code of a failed resolution.
type ErrorCode string

// The error codes flagd produces. ErrorNone is a successful resolution.
const (
	ErrorNone           ErrorCode = ""
	ErrorFlagNotFound   ErrorCode = "FLAG_NOT_FOUND"
	ErrorTypeMismatch   ErrorCode = "TYPE_MISMATCH"
	ErrorParse          ErrorCode = "PARSE_ERROR"
	ErrorGeneral        ErrorCode = "GENERAL"
	ErrorInvalidContext ErrorCode = "INVALID_CONTEXT"
)

// Type is the type a caller asks a flag to resolve to.
type Type uint8

// The resolution types. TypeAny accepts every variant value (OFREP, bulk evaluation).
const (
	TypeAny Type = iota
	TypeBoolean
	TypeString
	TypeInteger
	TypeFloat
	TypeObject
)

func (t Type) String() string {
	return [...]string{"any", "boolean", "string", "integer", "float", "object"}[t]
}

// maxSafeInteger is the largest integer a float64 holds exactly (2^53-1); larger
// values do not resolve as integers.
const maxSafeInteger = 1<<53 - 1

// Resolution is the outcome of evaluating a flag. A successful resolution without a
// variant (reason DISABLED, or DEFAULT with no defaultVariant) means "use the code
// default". Value is a decoded JSON value (bool, string, float64, map[string]any,
// []any), or an int64 for TypeInteger. Metadata is shared: callers must not modify it.
type Resolution struct {
	Value        any
	Variant      string
	Reason       Reason
	ErrorCode    ErrorCode
	ErrorMessage string
	Metadata     map[string]any
}

// Failed reports whether the resolution is an error.
func (r Resolution) Failed() bool { return r.ErrorCode != ErrorNone }

// NotFound is the resolution of a flag key that does not exist.
func NotFound(key string) Resolution {
	return Resolution{Reason: ReasonError, ErrorCode: ErrorFlagNotFound, ErrorMessage: fmt.Sprintf("flag %q not found", key)}
}

// variant is a variant value with its typed forms computed at load.
type variant struct {
	name  string
	value any
	asInt any   // the value as an int64 (boxed at load: resolving allocates nothing), when valid for TypeInteger
	valid uint8 // bit t set: the value resolves as Type t
}

func newVariant(name string, v any) variant {
	out := variant{name: name, value: v}
	if v != nil {
		out.valid |= 1 << TypeAny
	}
	switch t := v.(type) {
	case bool:
		out.valid |= 1 << TypeBoolean
	case string:
		out.valid |= 1 << TypeString
	case float64:
		out.valid |= 1 << TypeFloat
		if t == math.Trunc(t) && math.Abs(t) <= maxSafeInteger {
			out.valid |= 1 << TypeInteger
			out.asInt = int64(t)
		}
	case map[string]any:
		out.valid |= 1 << TypeObject
	}
	return out
}

func (v *variant) is(t Type) bool { return v.valid&(1<<t) != 0 }

// Flag is one flag definition, compiled for evaluation. The exported fields are the
// definition as loaded (targeting with every $ref inlined); call Compile before Evaluate.
//
// A flag is kept for as long as it is served, so its compiled form is compact: the
// variants in a slice sorted by name (a map only for many), the default variant as
// an index, resolutions built when asked for (they allocate nothing).
type Flag struct {
	Key       string
	FlagSetID string // metadata.flagSetId, "" when the flag belongs to no flag set
	State     string // as written; only "DISABLED" disables the flag
	// Variants are the decoded JSON values by name, what Compile compiles. flags.Parse
	// leaves it nil once compiled (the compiled form holds the same values); read
	// them with VariantValue and VariantValues.
	Variants       map[string]any
	DefaultVariant string // "" means the caller's code default
	// Targeting is the JsonLogic rule: decoded JSON (nil or {} means no targeting),
	// or its JSON encoding (json.RawMessage), which is how flags.Parse keeps it once
	// compiled: the decoded tree of a rule costs about ten times its JSON.
	Targeting any
	Metadata  map[string]any // flag-set metadata merged under the flag's own; shared, read-only

	rule     *Rule
	variants []variant        // sorted by name
	byName   map[string]int32 // index in variants; only for flags with many variants
	def      *variant         // the default variant (in variants); nil for none (code default)
}

// VariantValue returns the value of the variant named name.
func (f *Flag) VariantValue(name string) (any, bool) {
	if f.Variants != nil {
		v, ok := f.Variants[name]
		return v, ok
	}
	if v, ok := f.variant(name); ok {
		return v.value, true
	}
	return nil, false
}

// VariantValues returns the variants by name (a new map once the flag dropped its
// Variants; callers must not modify it otherwise).
func (f *Flag) VariantValues() map[string]any {
	if f.Variants != nil || f.variants == nil {
		return f.Variants
	}
	out := make(map[string]any, len(f.variants))
	for _, v := range f.variants {
		out[v.name] = v.value
	}
	return out
}

// manyVariants is the number of variants from which a lookup map beats a scan.
const manyVariants = 16

// variant returns the variant named name.
func (f *Flag) variant(name string) (*variant, bool) {
	i := f.variantIndex(name)
	if i < 0 {
		return nil, false
	}
	return &f.variants[i], true
}

// variantIndex returns the index of the variant named name, or -1.
func (f *Flag) variantIndex(name string) int32 {
	if f.byName != nil {
		if i, ok := f.byName[name]; ok {
			return i
		}
		return -1
	}
	for i := range f.variants {
		if f.variants[i].name == name {
			return int32(i)
		}
	}
	return -1
}

// HasTargeting reports whether the flag has a targeting rule.
func (f *Flag) HasTargeting() bool { return f.rule != nil }

// Disabled reports whether the flag's state disables it.
func (f *Flag) Disabled() bool { return f.State == "DISABLED" }

// Compile validates the variants and compiles the targeting rule. path is the flag's
// JSON path for problems (e.g. `flags.new-ui`).
func (f *Flag) Compile(path string, strict bool) (warnings, errors Problems) {
	return f.CompileWith(path, strict, nil)
}

// CompileWith is Compile sharing the rule's literals through in (nil: none).
func (f *Flag) CompileWith(path string, strict bool, in *Interner) (warnings, errors Problems) {
	names := make([]string, 0, len(f.Variants))
	for name := range f.Variants {
		names = append(names, name)
	}
	sort.Strings(names)
	f.variants = make([]variant, len(names))
	f.byName = nil
	if len(names) >= manyVariants {
		f.byName = make(map[string]int32, len(names))
	}
	for i, name := range names {
		f.variants[i] = newVariant(in.canonical(name), Detach(f.Variants[name]))
		if f.byName != nil {
			f.byName[name] = int32(i)
		}
	}
	f.def = nil
	if f.DefaultVariant != "" {
		if i := f.variantIndex(f.DefaultVariant); i >= 0 {
			f.def = &f.variants[i]
		} else {
			errors = append(errors, Problem{Path: Key(path, "defaultVariant"), Message: fmt.Sprintf("%q is not one of the variants (%s)", f.DefaultVariant, variantList(f.Variants))})
		}
	}
	f.rule = nil
	targeting := f.Targeting
	if raw, ok := targeting.(json.RawMessage); ok {
		if err := json.Unmarshal(raw, &targeting); err != nil {
			errors = append(errors, Problem{Path: Key(path, "targeting"), Message: "invalid JSON: " + err.Error()})
			return warnings, errors
		}
	}
	if m, isObject := targeting.(map[string]any); targeting != nil && !(isObject && len(m) == 0) {
		if !isObject {
			p := Problem{Path: Key(path, "targeting"), Message: fmt.Sprintf("targeting must be a JsonLogic object, got %s", fromAny(targeting).k)}
			if strict {
				errors = append(errors, p)
			} else {
				warnings = append(warnings, p)
			}
		}
		rule, w, errs := CompileRuleWith(targeting, Key(path, "targeting"), strict, in)
		warnings = append(warnings, w...)
		errors = append(errors, errs...)
		f.rule = rule
	}
	return warnings, errors
}

func variantList(vs map[string]any) string {
	names := sortedKeys(vs)
	for i, n := range names {
		names[i] = strconv.Quote(n)
	}
	return strings.Join(names, ", ")
}

// envPool recycles evaluation state: closures take *env, so a stack env would escape.
var envPool = sync.Pool{New: func() any { return new(env) }}

// Evaluate resolves the flag for an evaluation context, accepting any variant type.
func (f *Flag) Evaluate(ctx map[string]any) Resolution {
	return f.EvaluateAs(TypeAny, ctx, nil)
}

// EvaluateAs resolves the flag as type t. clock supplies $flagd.timestamp (nil: the
// system clock). The context is read, never modified.
func (f *Flag) EvaluateAs(t Type, ctx map[string]any, clock func() time.Time) Resolution {
	if f.Disabled() {
		return Resolution{Reason: ReasonDisabled, Metadata: f.Metadata}
	}
	if f.rule == nil {
		if v := f.def; v != nil && v.valid&(1<<t) != 0 { // the common case, inlined
			r := Resolution{Value: v.value, Variant: v.name, Reason: ReasonStatic, Metadata: f.Metadata}
			if t == TypeInteger {
				r.Value = v.asInt
			}
			return r
		}
		return f.defaultResolution(t, ReasonStatic)
	}
	e := envPool.Get().(*env)
	*e = env{data: ctx, root: true, ctx: ctx, flagKey: f.Key, clock: clock}
	result := f.rule.root(e)
	failure := e.failure
	*e = env{}
	envPool.Put(e)
	// the common outcome here; apply has the others (a call costs a tenth of a
	// small rule's evaluation: BenchmarkFlagdTargetingShape)
	if failure == "" && result.k == kindString {
		if v, ok := f.variant(result.s); ok {
			return f.resolveVariant(t, v, ReasonTargetingMatch)
		}
	}
	return f.apply(t, &result, failure)
}

// Decision is what a flag's targeting rule returned for a context, before the
// flag's variants give it a meaning (Flag.Decide).
type Decision struct {
	result  value
	failure string // a runtime failure of the rule
}

// Decide runs the flag's targeting rule (the flag must have one: HasTargeting) for
// ctx. own reports a decision that is the flag's own: the run read the flag's key
// ($flagd.flagKey, or fractional's default bucketing on flagKey and targetingKey),
// or failed (the failure names the flag's rule). Any other decision is the decision
// of every flag whose rule is equal, for the same context, and Apply may resolve
// any of them from it.
func (f *Flag) Decide(ctx map[string]any, clock func() time.Time) (d Decision, own bool) {
	e := envPool.Get().(*env)
	d, own = f.decideIn(e, ctx, clock)
	envPool.Put(e)
	return d, own
}

// decideIn is Decide with the evaluation state e (wiped before it returns).
func (f *Flag) decideIn(e *env, ctx map[string]any, clock func() time.Time) (d Decision, own bool) {
	*e = env{data: ctx, root: true, ctx: ctx, flagKey: f.Key, clock: clock}
	d.result = f.rule.root(e)
	d.failure, own = e.failure, e.keyed || e.failure != ""
	*e = env{}
	return d, own
}

// Outcome reports the variant (its index in VariantAt's order) a decision selects
// for the flag and the reason, when Apply(TypeAny, d) would resolve to one of the
// flag's variants: TARGETING_MATCH for a variant's name, DEFAULT for a rule that
// returned null. ok is false for anything else (a failure, the code default, a
// name that is no variant, a variant whose value is null): Apply says what it is.
func (f *Flag) Outcome(d Decision) (variant int, reason Reason, ok bool) {
	if d.failure != "" {
		return 0, "", false
	}
	if d.result.k == kindNull {
		if f.def == nil || !f.def.is(TypeAny) {
			return 0, "", false
		}
		return int(f.variantIndex(f.def.name)), ReasonDefault, true
	}
	name, ok := d.result.variantName()
	if !ok {
		return 0, "", false
	}
	i := f.variantIndex(name)
	if i < 0 || !f.variants[i].is(TypeAny) {
		return 0, "", false
	}
	return int(i), ReasonTargetingMatch, true
}

// VariantIndex returns the index (VariantAt's order) of the variant named name, or
// -1.
func (f *Flag) VariantIndex(name string) int { return int(f.variantIndex(name)) }

// NumVariants is the number of the flag's variants.
func (f *Flag) NumVariants() int { return len(f.variants) }

// VariantAt returns the name and value of the flag's i-th variant (sorted by name),
// 0 <= i < NumVariants.
func (f *Flag) VariantAt(i int) (name string, value any) {
	return f.variants[i].name, f.variants[i].value
}

// ResolveVariant is the resolution of the flag's i-th variant (0 <= i <
// NumVariants) with reason, as type t: what Apply returns for a decision whose
// Outcome is (i, reason), a TYPE_MISMATCH failure when the variant's value is not
// a t. It lets a caller prepare the answer of every outcome once.
func (f *Flag) ResolveVariant(t Type, i int, reason Reason) Resolution {
	return f.resolveVariant(t, &f.variants[i], reason)
}

// Apply resolves the flag as type t from a decision of its rule (see Decide).
func (f *Flag) Apply(t Type, d Decision) Resolution {
	return f.apply(t, &d.result, d.failure)
}

// apply resolves the flag as type t from what its rule returned.
func (f *Flag) apply(t Type, result *value, failure string) Resolution {
	if failure != "" {
		return f.errorResolution(ErrorParse, "targeting of flag %q failed: %s", f.Key, failure)
	}
	if result.k == kindNull {
		return f.defaultResolution(t, ReasonDefault)
	}
	name, ok := result.variantName()
	if !ok {
		return f.errorResolution(ErrorGeneral, "targeting of flag %q returned %s, not a variant name", f.Key, result.k)
	}
	v, ok := f.variant(name)
	if !ok {
		return f.errorResolution(ErrorGeneral, "targeting of flag %q returned %q, which is not one of its variants", f.Key, name)
	}
	return f.resolveVariant(t, v, ReasonTargetingMatch)
}

func (f *Flag) errorResolution(code ErrorCode, format string, args ...any) Resolution {
	return Resolution{Reason: ReasonError, ErrorCode: code, ErrorMessage: fmt.Sprintf(format, args...), Metadata: f.Metadata}
}

// defaultResolution resolves the default variant, or the code default without one.
func (f *Flag) defaultResolution(t Type, reason Reason) Resolution {
	if f.DefaultVariant == "" {
		return Resolution{Reason: ReasonDefault, Metadata: f.Metadata}
	}
	if f.def == nil {
		return f.errorResolution(ErrorGeneral, "default variant %q of flag %q does not exist", f.DefaultVariant, f.Key)
	}
	return f.resolveVariant(t, f.def, reason)
}

func (f *Flag) resolveVariant(t Type, v *variant, reason Reason) Resolution {
	if !v.is(t) {
		return f.errorResolution(ErrorTypeMismatch, "flag %q resolved to variant %q, which is %s, not %s", f.Key, v.name, describe(v.value), t)
	}
	value := v.value
	if t == TypeInteger {
		value = v.asInt
	}
	return Resolution{Value: value, Variant: v.name, Reason: reason, Metadata: f.Metadata}
}

func describe(v any) string {
	switch t := v.(type) {
	case float64:
		if t != math.Trunc(t) {
			return "a non-integral number"
		}
		if math.Abs(t) > maxSafeInteger {
			return "an integer beyond ±(2^53-1)"
		}
		return "a number"
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	}
	return fmt.Sprintf("%T", v)
}

// Detach returns a deep copy of a decoded JSON value whose strings and boxed numbers
// are allocated anew. A served flag keeps the values it needs this way instead of
// pieces of the decoded document: each piece would pin memory of the decoder's, which
// is garbage once the flags are compiled (a decoded 50 MB document is ten times
// that, and every span holding one retained string stays resident).
func Detach(v any) any {
	switch t := v.(type) {
	case string:
		return strings.Clone(t)
	case float64:
		return t // boxed anew when stored in the interface
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[strings.Clone(k)] = Detach(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = Detach(x)
		}
		return out
	}
	return v
}
