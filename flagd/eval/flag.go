// Package eval evaluates flagd feature flags. Targeting rules (JsonLogic plus flagd's
// fractional, sem_ver, starts_with and ends_with) are compiled once into a tree of Go
// closures over typed values; an evaluation does no JSON encoding or decoding, and a
// static flag resolves without allocating.
package eval

import (
	"fmt"
	"math"
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
	asInt any // int64, or nil when the value is not an integer a float64 holds exactly
	valid [TypeObject + 1]bool
}

func newVariant(name string, v any) variant {
	out := variant{name: name, value: v}
	out.valid[TypeAny] = v != nil
	switch t := v.(type) {
	case bool:
		out.valid[TypeBoolean] = true
	case string:
		out.valid[TypeString] = true
	case float64:
		out.valid[TypeFloat] = true
		if t == math.Trunc(t) && math.Abs(t) <= maxSafeInteger {
			out.valid[TypeInteger] = true
			out.asInt = int64(t)
		}
	case map[string]any:
		out.valid[TypeObject] = true
	}
	return out
}

// Flag is one flag definition, compiled for evaluation. The exported fields are the
// definition as loaded (targeting with every $ref inlined); call Compile before Evaluate.
type Flag struct {
	Key            string
	FlagSetID      string         // metadata.flagSetId, "" when the flag belongs to no flag set
	State          string         // as written; only "DISABLED" disables the flag
	Variants       map[string]any // decoded JSON values
	DefaultVariant string         // "" means the caller's code default
	Targeting      any            // decoded JsonLogic; nil or {} means no targeting
	Metadata       map[string]any // flag-set metadata merged under the flag's own

	rule     *Rule
	variants map[string]variant
	fixed    [TypeObject + 1]Resolution // successful resolutions of flags without targeting
	fixedOK  [TypeObject + 1]bool
}

// HasTargeting reports whether the flag has a targeting rule.
func (f *Flag) HasTargeting() bool { return f.rule != nil }

// Disabled reports whether the flag's state disables it.
func (f *Flag) Disabled() bool { return f.State == "DISABLED" }

// Compile validates the variants and compiles the targeting rule. path is the flag's
// JSON path for problems (e.g. `flags.new-ui`).
func (f *Flag) Compile(path string, strict bool) (warnings, errors Problems) {
	f.variants = make(map[string]variant, len(f.Variants))
	for name, v := range f.Variants {
		f.variants[name] = newVariant(name, v)
	}
	if f.DefaultVariant != "" {
		if _, ok := f.variants[f.DefaultVariant]; !ok {
			errors = append(errors, Problem{Path: Key(path, "defaultVariant"), Message: fmt.Sprintf("%q is not one of the variants (%s)", f.DefaultVariant, variantList(f.Variants))})
		}
	}
	f.rule = nil
	if m, isObject := f.Targeting.(map[string]any); f.Targeting != nil && !(isObject && len(m) == 0) {
		if !isObject {
			p := Problem{Path: Key(path, "targeting"), Message: fmt.Sprintf("targeting must be a JsonLogic object, got %s", fromAny(f.Targeting).k)}
			if strict {
				errors = append(errors, p)
			} else {
				warnings = append(warnings, p)
			}
		}
		rule, w, errs := CompileRule(f.Targeting, Key(path, "targeting"), strict)
		warnings = append(warnings, w...)
		errors = append(errors, errs...)
		f.rule = rule
	}
	f.fixedOK = [TypeObject + 1]bool{}
	if len(errors) == 0 {
		dv, hasDefault := f.variants[f.DefaultVariant]
		for t := TypeAny; t <= TypeObject; t++ {
			// Only successes are kept: a type mismatch's message is built when asked for.
			if f.DefaultVariant == "" || (hasDefault && dv.valid[t]) {
				f.fixed[t], f.fixedOK[t] = f.defaultResolution(t, ReasonStatic), true
			}
		}
	}
	return warnings, errors
}

func variantList(vs map[string]any) string {
	names := sortedKeys(vs)
	s := ""
	for i, n := range names {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%q", n)
	}
	return s
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
		if f.fixedOK[t] {
			return f.fixed[t]
		}
		return f.defaultResolution(t, ReasonStatic)
	}
	e := envPool.Get().(*env)
	*e = env{data: ctx, root: true, ctx: ctx, flagKey: f.Key, clock: clock}
	result := f.rule.root(e)
	failure := e.failure
	*e = env{}
	envPool.Put(e)
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
	v, ok := f.variants[name]
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
	v, ok := f.variants[f.DefaultVariant]
	if !ok {
		return f.errorResolution(ErrorGeneral, "default variant %q of flag %q does not exist", f.DefaultVariant, f.Key)
	}
	return f.resolveVariant(t, v, reason)
}

func (f *Flag) resolveVariant(t Type, v variant, reason Reason) Resolution {
	if !v.valid[t] {
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
