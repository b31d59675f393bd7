package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// decodeResult says how far decoding an object got.
type decodeResult int

const (
	decoded    decodeResult = iota // obj holds the object
	notJSON                        // the bytes are not a JSON object
	wrongTypes                     // some members have JSON types the Go types cannot hold
)

// decodeObject decodes raw into obj (a pointer to a struct) as the API server's JSON
// decoder does: keys match field names case-sensitively, and a key that matches no
// field is dropped. Before that it walks raw along obj's type and records, with exact
// paths, every member whose JSON type does not fit (a problem; encoding/json would
// stop at the first one and name it without indices or map keys), every unknown
// field and every duplicate key (warnings: the API server prunes the first and keeps
// the last of the second; kubectl's strict field validation refuses both).
func decodeObject(raw []byte, obj any, r *report) decodeResult {
	var probe any
	if err := json.Unmarshal(raw, &probe); err != nil {
		r.problemf("", "the object is not valid JSON: %v", err)
		return notJSON
	}
	if k := jsonKind(raw); k != "object" {
		r.problemf("", "the object must be a JSON object, got %s", k)
		return notJSON
	}
	before := len(r.problems)
	checkShape(r, "", raw, reflect.TypeOf(obj).Elem())
	if len(r.problems) > before {
		return wrongTypes
	}
	if err := utiljson.Unmarshal(raw, obj); err != nil { // the walk should have found it
		r.problemf("", "%s", strings.TrimPrefix(err.Error(), "json: "))
		return wrongTypes
	}
	return decoded
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// checkShape records where raw does not fit t (see decodeObject). null fits
// everything, as for encoding/json (and the API server drops nulls it has no use for).
func checkShape(r *report, path string, raw []byte, t reflect.Type) {
	kind := jsonKind(raw)
	if kind == "null" || t == rawMessageType {
		return
	}
	if t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(unmarshalerType) {
		// metav1.Time, resource.Quantity, intstr.IntOrString, ...: their own decoder
		// knows what fits.
		if err := utiljson.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			r.problemf(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	want := func(what string) { r.problemf(path, "must be %s, got %s", what, kind) }
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(r, path, raw, t.Elem())
	case reflect.Interface:
	case reflect.Struct:
		if kind != "object" {
			want("an object")
			return
		}
		checkFields(r, path, raw, t)
	case reflect.Map:
		if kind != "object" {
			want("an object")
			return
		}
		for _, m := range objectMembers(raw) {
			checkShape(r, eval.Key(path, m.key), m.value, t.Elem())
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 { // []byte: base64 in a string
			if kind != "string" {
				want("a string")
			}
			return
		}
		if kind != "array" {
			want("an array")
			return
		}
		var items []json.RawMessage
		_ = json.Unmarshal(raw, &items)
		for i, item := range items {
			checkShape(r, eval.Index(path, i), item, t.Elem())
		}
	case reflect.String:
		if kind != "string" {
			want("a string")
		}
	case reflect.Bool:
		if kind != "boolean" {
			want("a boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if kind != "number" {
			want("an integer")
			return
		}
		checkInt(r, path, raw, t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if kind != "number" {
			want("an integer")
			return
		}
		text := string(bytes.TrimSpace(raw))
		if _, err := strconv.ParseUint(text, 10, t.Bits()); err != nil {
			r.problemf(path, "must be an integer from 0 to %d, got %s", ^uint64(0)>>(64-t.Bits()), text)
		}
	case reflect.Float32, reflect.Float64:
		if kind != "number" {
			want("a number")
		}
	}
}

// checkFields checks the members of a JSON object against the fields of struct type t.
func checkFields(r *report, path string, raw []byte, t reflect.Type) {
	fields := structFields(t)
	seen := map[string]bool{}
	for _, m := range objectMembers(raw) {
		p := eval.Key(path, m.key)
		if seen[m.key] {
			r.warnf(p, "duplicate field: the last value is used (kubectl apply refuses the manifest)")
		}
		seen[m.key] = true
		ft, ok := fields[m.key]
		if !ok {
			r.warnf(p, "unknown field: the API server drops it (kubectl apply refuses the manifest)")
			continue
		}
		checkShape(r, p, m.value, ft)
	}
}

// checkInt checks that the JSON number raw is an integer that fits a signed integer
// of the given size in bits.
func checkInt(r *report, path string, raw []byte, bits int) {
	text := string(bytes.TrimSpace(raw))
	if _, err := strconv.ParseInt(text, 10, bits); err != nil {
		if errors.Is(err, strconv.ErrRange) {
			maxInt := int64(math.MaxInt64) >> (64 - bits)
			r.problemf(path, "must be an integer from %d to %d, got %s", -maxInt-1, maxInt, text)
		} else {
			r.problemf(path, "must be an integer, got %s", text)
		}
	}
}

// jsonKind names the JSON type of a valid JSON value.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	return "number"
}

// jsonMember is one member of a JSON object.
type jsonMember struct {
	key   string
	value json.RawMessage
}

// objectMembers lists the members of a valid JSON object in document order,
// duplicates included.
func objectMembers(raw []byte) []jsonMember {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var out []jsonMember
	for dec.More() {
		t, err := dec.Token()
		key, ok := t.(string)
		if err != nil || !ok {
			return out
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out
		}
		out = append(out, jsonMember{key: key, value: v})
	}
	return out
}

// member returns the value at path in a JSON object (the last one of duplicates, as
// the decoder keeps).
func member(raw []byte, path ...string) (json.RawMessage, bool) {
	for _, key := range path {
		found := false
		for _, m := range objectMembers(raw) {
			if m.key == key {
				raw, found = m.value, true
			}
		}
		if !found {
			return nil, false
		}
	}
	return raw, true
}

// fieldCache maps struct types to their JSON members (structFields).
var fieldCache sync.Map

// structFields maps the JSON member names of struct type t to their Go types, as
// encoding/json sees them: the tag's name, else the field name; untagged (or
// `json:",inline"`) embedded structs contribute their own members; `json:"-"` and
// unexported fields are left out.
func structFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	fields := map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for f := range t.Fields() {
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if name == "" && f.Anonymous {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, taken := fields[name]; !taken {
				fields[name] = f.Type
			}
		}
	}
	add(t)
	fieldCache.Store(t, fields)
	return fields
}
