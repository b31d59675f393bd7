package ofrep

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/jsonwire"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// encoder writes OFREP response bodies straight into a reusable buffer. Its output is
// byte-for-byte what encoding/json produces for flagd's response structs (field
// order, map keys sorted, HTML-safe string escaping, ES6 number formatting), without
// reflection or intermediate maps. Encoders are pooled per Service.
type encoder struct {
	buf  []byte
	keys []string // scratch for sorting map keys; nested maps use it as a stack
	// decisions are a bulk request's decisions of the plan's shared rules (by
	// planItem.group); cleared when the encoder is pooled again (they may point
	// into the request's context)
	decisions eval.Decisions
}

// reflection is the selector's metadata reflection ({"flagSetId": id} or
// {"source": uri}) without building a map per request.
type reflection struct {
	key, value string // key == "" without a selector
}

func reflectionOf(sel store.Selector) reflection {
	switch sel.Kind {
	case store.SelectFlagSetID:
		return reflection{key: "flagSetId", value: sel.Value}
	case store.SelectSource:
		return reflection{key: "source", value: sel.Value}
	}
	return reflection{}
}

// The fixed error details of flagd's OFREP API.
const (
	detailsInvalidContext = "Provider context is not valid"
	detailsGeneral        = "error processing the flag for evaluation"
	detailsTooLarge       = "request body too large"
)

// evaluation appends one evaluation as flagd's OFREP success or error object and
// returns the HTTP status a single evaluation answers with.
func (e *encoder) evaluation(key string, r eval.Resolution, refl reflection) int {
	if r.Failed() {
		status, code, details := 400, eval.ErrorGeneral, detailsGeneral
		switch r.ErrorCode {
		case eval.ErrorFlagNotFound:
			status, code, details = 404, eval.ErrorFlagNotFound, "flag `"+key+"` does not exist"
		case eval.ErrorParse:
			code, details = eval.ErrorParse, "error parsing the flag `"+key+"`"
		}
		e.buf = append(e.buf, `{"key":`...)
		e.buf = jsonwire.AppendString(e.buf, key)
		e.buf = append(e.buf, `,"errorCode":`...)
		e.buf = jsonwire.AppendString(e.buf, string(code))
		e.buf = append(e.buf, `,"errorDetails":`...)
		e.buf = jsonwire.AppendString(e.buf, details)
		e.buf = append(e.buf, `,"metadata":`...)
		e.metadata(refl, r.Metadata)
		e.buf = append(e.buf, '}')
		return status
	}
	e.buf = append(e.buf, '{')
	if r.Value != nil {
		e.buf = append(e.buf, `"value":`...)
		e.value(r.Value)
		e.buf = append(e.buf, ',')
	}
	e.buf = append(e.buf, `"key":`...)
	e.buf = jsonwire.AppendString(e.buf, key)
	e.buf = append(e.buf, `,"reason":`...)
	e.buf = jsonwire.AppendString(e.buf, string(r.Reason))
	if r.Variant != "" {
		e.buf = append(e.buf, `,"variant":`...)
		e.buf = jsonwire.AppendString(e.buf, r.Variant)
	}
	e.buf = append(e.buf, `,"metadata":`...)
	e.metadata(refl, r.Metadata)
	e.buf = append(e.buf, '}')
	return 200
}

// requestError appends a request-level error (invalid context, invalid selector) the
// way flagd renders it: no evaluation took place, so metadata is null. key is
// omitted for bulk requests.
func (e *encoder) requestError(key string, withKey bool, code eval.ErrorCode, details string) {
	e.buf = append(e.buf, '{')
	if withKey {
		e.buf = append(e.buf, `"key":`...)
		e.buf = jsonwire.AppendString(e.buf, key)
		e.buf = append(e.buf, ',')
	}
	e.buf = append(e.buf, `"errorCode":`...)
	e.buf = jsonwire.AppendString(e.buf, string(code))
	e.buf = append(e.buf, `,"errorDetails":`...)
	e.buf = jsonwire.AppendString(e.buf, details)
	e.buf = append(e.buf, `,"metadata":null}`...)
}

// metadata appends the evaluation metadata: the selector reflection, overridden by
// every non-nil value of the flag's merged metadata (flagd's order), keys sorted.
func (e *encoder) metadata(refl reflection, md map[string]any) {
	start := len(e.keys)
	for k, v := range md {
		if v != nil {
			e.keys = append(e.keys, k)
		}
	}
	if refl.key != "" && md[refl.key] == nil {
		e.keys = append(e.keys, refl.key)
	}
	keys := e.keys[start:]
	slices.Sort(keys)
	e.buf = append(e.buf, '{')
	for i, k := range keys {
		if i > 0 {
			e.buf = append(e.buf, ',')
		}
		e.buf = jsonwire.AppendString(e.buf, k)
		e.buf = append(e.buf, ':')
		if v := md[k]; v != nil {
			e.value(v)
		} else {
			e.buf = jsonwire.AppendString(e.buf, refl.value)
		}
	}
	e.buf = append(e.buf, '}')
	clear(e.keys[start:])
	e.keys = e.keys[:start]
}

// value appends a decoded JSON value as encoding/json would.
func (e *encoder) value(v any) {
	switch t := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, t)
	case string:
		e.buf = jsonwire.AppendString(e.buf, t)
	case float64:
		e.buf = appendFloat(e.buf, t)
	case int64:
		e.buf = strconv.AppendInt(e.buf, t, 10)
	case int:
		e.buf = strconv.AppendInt(e.buf, int64(t), 10)
	case map[string]any:
		start := len(e.keys)
		for k := range t {
			e.keys = append(e.keys, k)
		}
		keys := e.keys[start:]
		slices.Sort(keys)
		e.buf = append(e.buf, '{')
		for i, k := range keys {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.buf = jsonwire.AppendString(e.buf, k)
			e.buf = append(e.buf, ':')
			e.value(t[k])
		}
		e.buf = append(e.buf, '}')
		clear(e.keys[start:])
		e.keys = e.keys[:start]
	case []any:
		e.buf = append(e.buf, '[')
		for i, x := range t {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.value(x)
		}
		e.buf = append(e.buf, ']')
	default:
		// Not produced by the flag parser; keep the output valid JSON regardless.
		b, err := json.Marshal(t)
		if err != nil {
			b = []byte("null")
		}
		e.buf = append(e.buf, b...)
	}
}

// appendFloat formats like encoding/json (ES6 number to string). NaN and ±Inf cannot
// come from decoded JSON; they are written as null to keep the body valid.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	return jsonwire.AppendFloat(b, f)
}
