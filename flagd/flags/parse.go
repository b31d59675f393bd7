// Package flags parses flagd flag definition documents (JSON or YAML): flags as a map
// or an array, $evaluators with $ref inlined on the parsed tree, flag-set metadata
// merged under each flag's metadata. Lenient mode accepts what flagd serves (schema
// violations become warnings); strict mode rejects them. Every problem names its
// place as a JSON path. The result is a set of compiled eval.Flag values.
package flags

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	gosync "sync"

	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// Mode selects how much of flagd's schema is enforced.
type Mode uint8

const (
	// Lenient accepts what flagd accepts at runtime; schema violations are warnings.
	Lenient Mode = iota
	// Strict also rejects what flagd's JSON schema rejects and what would fail at
	// evaluation time (unknown operators, $ref to a missing evaluator, bad weights).
	Strict
)

type (
	// Problem is a finding of parsing, with its JSON path.
	Problem = eval.Problem
	// Problems are the findings of parsing.
	Problems = eval.Problems
)

// Set is the content of one flag document.
type Set struct {
	// Flags in document order (map form: sorted by key). Keys may repeat across flag sets.
	Flags []*eval.Flag
	// Metadata is the flag-set metadata (already merged into each flag's metadata).
	Metadata map[string]any
	// Warnings are schema violations flagd tolerates (lenient mode only).
	Warnings Problems
}

// Parse parses and compiles a flag document. In lenient mode the error is non-nil only
// for what makes flagd reject the whole payload; the returned Problems list every
// finding. The error, when not nil, is of type Problems.
func Parse(data []byte, mode Mode) (*Set, error) {
	doc, err := toJSON(data)
	if err != nil {
		return nil, Problems{{Message: err.Error()}}
	}
	if tree, ok := decodeDocument(doc); ok {
		p := &parser{strict: mode == Strict, literals: eval.NewInterner()}
		if set := p.document(tree); !p.undecodable {
			return p.result(set)
		}
	}
	// The one-pass decoder refused the document, or one of its flags: encoding/json
	// decodes it, or says what is wrong with it.
	tree, err := decodeJSON(doc)
	if err != nil {
		return nil, Problems{{Message: err.Error()}}
	}
	p := &parser{strict: mode == Strict, literals: eval.NewInterner()}
	return p.result(p.document(tree))
}

// result is Parse's answer for a parsed document.
func (p *parser) result(set *Set) (*Set, error) {
	if len(p.errors) > 0 {
		return nil, p.errors
	}
	set.Warnings = p.warnings
	return set, nil
}

// toJSON returns the document as JSON: YAML is converted, JSON is trimmed.
func toJSON(data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("the document is empty")
	}
	if trimmed[0] != '{' && trimmed[0] != '[' {
		converted, err := yaml.YAMLToJSON(trimmed)
		if err != nil {
			return nil, yamlError(trimmed, err)
		}
		trimmed = converted
	}
	return trimmed, nil
}

// decodeJSON decodes a JSON document into generic values with encoding/json, whose
// errors name the line and column of the problem.
func decodeJSON(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return nil, jsonError(doc, err)
	}
	if dec.More() {
		return nil, jsonError(doc, fmt.Errorf("unexpected data after the document at offset %d", dec.InputOffset()))
	}
	return tree, nil
}

// jsonError adds the line and column to encoding/json's offset-based errors.
func jsonError(data []byte, err error) error {
	var offset int64 = -1
	var syntax *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		offset = syntax.Offset - 1 // Offset counts the offending byte
	case errors.As(err, &typeErr):
		offset = typeErr.Offset
	case errors.Is(err, io.ErrUnexpectedEOF):
		offset = int64(len(data))
	}
	msg := withoutContent(err.Error())
	if offset < 0 {
		return fmt.Errorf("invalid JSON: %s", msg)
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return fmt.Errorf("invalid JSON at line %d, column %d: %s", line, col, msg)
}

// Decoding errors name where a document is broken, never what it holds: a flag file
// may be a symlink to any file (a mounted secret), and these errors reach the log
// and /readyz. encoding/json quotes the offending character, the YAML decoder
// anchors, tagged values and map keys.
var (
	quotedRe   = regexp.MustCompile(`'(?:[^'\\]|\\.)*' ?|` + "`[^`]*` ?" + `|"(?:[^"\\]|\\.)*" ?`)
	yamlLineRe = regexp.MustCompile(`line (\d+):`)
	quotedName = regexp.MustCompile(`'([^']*)'|` + "`([^`]*)`")
)

// withoutContent removes the quoted parts of a decoder's message, except a single
// punctuation character (`expected ',' or ']'`), which says what the syntax needs.
func withoutContent(msg string) string {
	return quotedRe.ReplaceAllStringFunc(msg, func(q string) string {
		inner := strings.TrimSpace(q)
		if len(inner) == 3 && inner[0] == '\'' && strings.ContainsRune("{}[],:\"'-?&*!|>%@#", rune(inner[1])) {
			return q
		}
		return ""
	})
}

// yamlError turns an error of the YAML decoder into one naming the line (when the
// decoder or a search of the document for the quoted token can tell it) and the
// kind of problem, without the document's content.
func yamlError(doc []byte, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
	}
	quoted := "" // the quoted token, only to find its line
	if m := quotedName.FindStringSubmatch(msg); m != nil {
		quoted = m[1] + m[2]
	}
	var what string
	switch {
	case strings.Contains(msg, "unknown anchor"):
		what, quoted = "an alias refers to an anchor that is not defined", "*"+quoted
	case strings.Contains(msg, "value contains itself"):
		what, quoted = "an anchor's value contains an alias to itself", "&"+quoted
	case strings.Contains(msg, "cannot decode"), strings.Contains(msg, "cannot unmarshal"):
		what = "a value does not match its tag (e.g. !!int on text)"
	case strings.Contains(msg, "invalid map key"), strings.Contains(msg, "unsupported map key"):
		what, quoted = "a map key is a list or a map, which JSON cannot represent", ""
	case strings.Contains(msg, "!!binary"):
		what, quoted = "a !!binary value is not valid base64", ""
	case strings.Contains(msg, "excessive aliasing"):
		what, quoted = "the document expands too many aliases", ""
	default:
		what, quoted = "the document is not valid YAML", ""
		if i := strings.Index(msg, "line "); i >= 0 && line > 0 {
			// the scanner's and parser's own phrases, kept if they quote nothing
			// but a punctuation character
			if _, rest, ok := strings.Cut(msg[i:], ": "); ok && withoutContent(rest) == rest {
				what = rest
			}
		}
	}
	if line == 0 && quoted != "" {
		if i := bytes.Index(doc, []byte(quoted)); i >= 0 {
			line = bytes.Count(doc[:i], []byte("\n")) + 1
		}
	}
	if line > 0 {
		return fmt.Errorf("invalid YAML at line %d: %s", line, what)
	}
	return fmt.Errorf("invalid YAML: %s", what)
}

type parser struct {
	strict     bool
	errors     Problems
	warnings   Problems
	evaluators map[string]any      // raw, by name
	resolved   map[string]resolved // $ref-free, by name
	// setMeta is the merged metadata of flags without their own, shared by all of
	// them (read-only): one map per document instead of one per flag.
	setMeta     map[string]any
	setMetaDone bool
	literals    *eval.Interner // shared by every rule of the document
	undecodable bool           // a flag decodeDocument left raw could not be decoded
}

// failf records a finding that makes flagd reject the payload, in both modes.
func (p *parser) failf(path, format string, args ...any) {
	p.errors = append(p.errors, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// schemaf records a schema violation: an error in strict mode, a warning otherwise.
func (p *parser) schemaf(path, format string, args ...any) {
	pr := Problem{Path: path, Message: fmt.Sprintf(format, args...)}
	if p.strict {
		p.errors = append(p.errors, pr)
	} else {
		p.warnings = append(p.warnings, pr)
	}
}

func (p *parser) document(doc any) *Set {
	set := &Set{}
	root, ok := doc.(map[string]any)
	if !ok {
		p.failf("", "the document must be a JSON object with a \"flags\" member, got %s", typeName(doc))
		return set
	}
	for _, k := range sortedKeys(root) {
		switch k {
		case "flags", "$evaluators", "metadata", "$schema":
		default:
			p.warnings = append(p.warnings, Problem{Path: eval.Key("", k), Message: "unknown member, ignored"})
		}
	}
	set.Metadata = p.metadata(root["metadata"], "metadata")
	p.loadEvaluators(root)

	rawFlags, present := root["flags"]
	switch fl := rawFlags.(type) {
	case map[string]any:
		jobs := make([]flagJob, 0, len(fl))
		for _, key := range sortedKeys(fl) {
			jobs = append(jobs, flagJob{key: key, raw: fl[key], path: eval.Key("flags", key)})
		}
		for _, j := range p.compileFlags(jobs, set.Metadata) {
			p.errors, p.warnings = append(p.errors, j.errors...), append(p.warnings, j.warnings...)
			p.undecodable = p.undecodable || j.undecodable
			if j.flag != nil {
				set.Flags = append(set.Flags, j.flag)
			}
		}
	case []any:
		jobs := make([]flagJob, len(fl))
		for i, raw := range fl {
			jobs[i] = flagJob{raw: raw, path: eval.Index("flags", i), arrayForm: true}
		}
		seen := map[[2]string]string{}
		for _, j := range p.compileFlags(jobs, set.Metadata) {
			p.errors, p.warnings = append(p.errors, j.errors...), append(p.warnings, j.warnings...)
			p.undecodable = p.undecodable || j.undecodable
			f := j.flag
			if f == nil {
				continue
			}
			id := [2]string{f.FlagSetID, f.Key}
			if prev, dup := seen[id]; dup {
				p.schemaf(j.path, "flag %q is defined again in flag set %q (first at %s); the last definition wins", f.Key, f.FlagSetID, prev)
				set.Flags = removeFlag(set.Flags, id, f)
			} else {
				set.Flags = append(set.Flags, f)
			}
			seen[id] = j.path
		}
	case nil:
		if !present {
			p.failf("flags", "is required")
		} else {
			p.schemaf("flags", "is null, which removes every flag of this source")
		}
	default:
		p.failf("flags", "must be an object or an array of flags, got %s", typeName(rawFlags))
	}
	p.checkEvaluators()
	return set
}

// flagJob is one flag of a document to compile, and what compiling it found.
type flagJob struct {
	key       string // map form; the array form reads the flag's "key"
	raw       any
	path      string
	arrayForm bool

	flag             *eval.Flag // nil when the flag has errors
	errors, warnings Problems
	undecodable      bool // a rawFlag decodeTree could not decode
}

// parallelFlags is the number of flags from which a document's flags are compiled
// on several cores: a sidecar's start-up is mostly compiling its flags.
const parallelFlags = 256

// compileFlags compiles the flags of jobs, in contiguous runs on up to GOMAXPROCS
// goroutines, each with its own parser (and literal interner) over the read-only
// state of p: the evaluators, all resolved by loadEvaluators, and the flag-set
// metadata. The results stay in document order, so problems and flags come out as
// from a sequential pass.
func (p *parser) compileFlags(jobs []flagJob, setMeta map[string]any) []flagJob {
	p.setMeta, p.setMetaDone = mergeMetadata(setMeta, nil), true
	workers := min(runtime.GOMAXPROCS(0), max(1, len(jobs)/(parallelFlags/2)))
	if len(jobs) < parallelFlags {
		workers = 1
	}
	run := func(part []flagJob, in *eval.Interner) {
		c := &parser{strict: p.strict, evaluators: p.evaluators, resolved: p.resolved,
			setMeta: p.setMeta, setMetaDone: true, literals: in}
		for i := range part {
			j := &part[i]
			c.errors, c.warnings = nil, nil // each job keeps its own problems
			c.compileFlag(j, setMeta)
			j.errors, j.warnings = c.errors, c.warnings
		}
	}
	if workers == 1 {
		run(jobs, p.literals)
		return jobs
	}
	var wg gosync.WaitGroup
	size := (len(jobs) + workers - 1) / workers
	for start := 0; start < len(jobs); start += size {
		part := jobs[start:min(start+size, len(jobs))]
		in := p.literals
		if start > 0 {
			in = eval.NewInterner() // an Interner is not safe for concurrent use
		}
		wg.Go(func() { run(part, in) })
	}
	wg.Wait()
	return jobs
}

// compileFlag compiles one flag of a document into j.flag, recording its problems.
func (p *parser) compileFlag(j *flagJob, setMeta map[string]any) {
	if raw, ok := j.raw.(rawFlag); ok {
		if j.raw, ok = decodeTree(raw); !ok {
			j.undecodable = true // Parse decodes the document again with encoding/json
			return
		}
	}
	key := j.key
	if j.arrayForm {
		obj, _ := j.raw.(map[string]any)
		key, _ = obj["key"].(string)
		if obj != nil && key == "" {
			p.failf(eval.Key(j.path, "key"), "a flag in the array form needs a non-empty string \"key\"")
			return
		}
	} else if key == "" {
		p.failf(j.path, "a flag key must not be empty")
		return
	}
	if out := p.appendFlag(nil, key, j.raw, j.path, setMeta, j.arrayForm); len(out) == 1 {
		j.flag = out[0]
	}
}

// removeFlag replaces an earlier flag with the same flag set and key by f.
func removeFlag(flags []*eval.Flag, id [2]string, f *eval.Flag) []*eval.Flag {
	for i, g := range flags {
		if g.FlagSetID == id[0] && g.Key == id[1] {
			flags[i] = f
			return flags
		}
	}
	return append(flags, f)
}

// flagFields are the members a flag may have.
var flagFields = map[string]bool{"state": true, "variants": true, "defaultVariant": true, "targeting": true, "metadata": true, "key": true}

func (p *parser) appendFlag(out []*eval.Flag, key string, raw any, path string, setMeta map[string]any, arrayForm bool) []*eval.Flag {
	obj, ok := raw.(map[string]any)
	if !ok {
		p.failf(path, "a flag must be an object, got %s", typeName(raw))
		return out
	}
	errorsBefore := len(p.errors)
	for _, k := range sortedKeys(obj) {
		if !flagFields[k] || (k == "key" && !arrayForm) {
			p.schemaf(eval.Key(path, k), "unknown flag member")
		}
	}
	f := &eval.Flag{Key: strings.Clone(key)}

	switch st := obj["state"].(type) {
	case string:
		f.State = stateName(st)
		if st != "ENABLED" && st != "DISABLED" {
			p.schemaf(eval.Key(path, "state"), "must be \"ENABLED\" or \"DISABLED\", got %q (flagd treats it as enabled)", st)
		}
	case nil:
		if _, present := obj["state"]; present {
			p.failf(eval.Key(path, "state"), "must be a string, got null")
		} else {
			p.schemaf(eval.Key(path, "state"), "is required (flagd treats a missing state as enabled)")
		}
	default:
		p.failf(eval.Key(path, "state"), "must be a string, got %s", typeName(st))
	}

	p.variants(f, obj, path)

	switch dv := obj["defaultVariant"].(type) {
	case string:
		f.DefaultVariant = strings.Clone(dv)
	case nil:
	default:
		p.failf(eval.Key(path, "defaultVariant"), "must be a string or null, got %s", typeName(dv))
	}

	meta := p.metadata(obj["metadata"], eval.Key(path, "metadata"))
	if meta == nil {
		if !p.setMetaDone {
			p.setMeta, p.setMetaDone = mergeMetadata(setMeta, nil), true
		}
		f.Metadata = p.setMeta
	} else {
		f.Metadata = mergeMetadata(setMeta, meta)
	}
	if id, ok := f.Metadata["flagSetId"].(string); ok {
		f.FlagSetID = id // a detached copy (mergeMetadata)
	}

	if t, present := obj["targeting"]; present {
		if t == nil {
			p.warnings = append(p.warnings, Problem{Path: eval.Key(path, "targeting"), Message: "is null; treated as no targeting (flagd reports DEFAULT instead of STATIC here)"})
		} else {
			f.Targeting = p.inlineRule(t, eval.Key(path, "targeting"))
		}
	}

	if len(p.errors) > errorsBefore {
		return out
	}
	warnings, errs := f.CompileWith(path, p.strict, p.literals)
	p.warnings = append(p.warnings, warnings...)
	p.errors = append(p.errors, errs...)
	if len(errs) > 0 {
		return out
	}
	// A served flag lives as long as its document is served: keep it compact. The
	// compiled rule and variants are what evaluations use; the rule is needed again
	// only for the sync API's JSON, so it is kept as JSON (about a tenth of the
	// decoded tree, the largest part of a flag), and the decoded variants map is
	// dropped (the compiled variants hold the same values).
	if f.Targeting != nil {
		if b, err := json.Marshal(f.Targeting); err == nil {
			f.Targeting = json.RawMessage(b)
		}
	}
	f.Variants = nil
	return append(out, f)
}

func (p *parser) variants(f *eval.Flag, obj map[string]any, path string) {
	vpath := eval.Key(path, "variants")
	raw, present := obj["variants"]
	vs, ok := raw.(map[string]any)
	switch {
	case !present:
		p.schemaf(vpath, "is required")
		return
	case !ok:
		p.failf(vpath, "must be an object of variant name to value, got %s", typeName(raw))
		return
	case len(vs) == 0:
		p.schemaf(vpath, "must have at least one variant")
	}
	f.Variants = vs
	first, firstName := "", ""
	for _, name := range sortedKeys(vs) {
		vp := eval.Key(vpath, name)
		if name == "" {
			p.schemaf(vp, "a variant name must not be empty")
		}
		t := typeName(vs[name])
		switch t {
		case "array", "null":
			p.schemaf(vp, "a variant value must be a boolean, string, number or object, got %s", t)
			continue
		}
		if first == "" {
			first, firstName = t, name
		} else if t != first {
			p.schemaf(vp, "is a %s, but variant %q is a %s: all variants of a flag must have one type", t, firstName, first)
		}
	}
}

// metadata validates a metadata object: string, number or boolean values; flagSetId
// and version must be strings.
func (p *parser) metadata(raw any, path string) map[string]any {
	if raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		p.failf(path, "must be an object, got %s", typeName(raw))
		return nil
	}
	for _, k := range sortedKeys(m) {
		switch v := m[k].(type) {
		case string, float64, bool:
			if (k == "flagSetId" || k == "version") && typeName(v) != "string" {
				p.schemaf(eval.Key(path, k), "must be a string, got %s", typeName(v))
			}
		default:
			p.schemaf(eval.Key(path, k), "metadata values must be strings, numbers or booleans, got %s", typeName(v))
		}
	}
	return m
}

// mergeMetadata copies the flag-set metadata and lets the flag's own keys win.
func mergeMetadata(set, flag map[string]any) map[string]any {
	if set == nil && flag == nil {
		return nil
	}
	out := make(map[string]any, len(set)+len(flag))
	for k, v := range set {
		out[strings.Clone(k)] = eval.Detach(v)
	}
	for k, v := range flag {
		out[strings.Clone(k)] = eval.Detach(v)
	}
	if id, ok := out["flagSetId"]; ok {
		if _, isString := id.(string); !isString {
			delete(out, "flagSetId")
		}
	}
	return out
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// refName returns the evaluator name of a {"$ref": "name"} object.
func refName(x any) (string, bool) {
	m, ok := x.(map[string]any)
	if !ok || len(m) != 1 {
		return "", false
	}
	name, ok := m["$ref"].(string)
	return name, ok
}

func (p *parser) loadEvaluators(root map[string]any) {
	raw, present := root["$evaluators"]
	if !present || raw == nil {
		return
	}
	evs, ok := raw.(map[string]any)
	if !ok {
		p.failf("$evaluators", "must be an object of evaluator name to JsonLogic rule, got %s", typeName(raw))
		return
	}
	p.evaluators = evs
	p.resolved = make(map[string]resolved, len(evs))
	for _, name := range sortedKeys(evs) {
		path := eval.Key("$evaluators", name)
		if isEmptyEvaluator(evs[name]) {
			p.failf(path, "evaluator is empty")
			continue
		}
		if r, _ := p.resolveEvaluator(name, nil); r.size > MaxRuleNodes {
			p.failf(path, "the evaluator expands to more than %d nodes after inlining $ref (evaluators that reference each other several times multiply)", MaxRuleNodes)
		}
	}
}

func isEmptyEvaluator(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		return len(t) == 0
	case string:
		return t == ""
	case []any:
		return len(t) == 0
	}
	return false
}

// MaxRuleNodes caps the size of a rule after $ref inlining. Inlined evaluators are
// shared, so a chain of evaluators that each reference the next twice describes a rule
// that doubles with every level: a 1 KB document could otherwise stand for billions
// of nodes and stall the compiler.
const MaxRuleNodes = 100_000

// resolved is an evaluator with its own $refs inlined, and its size once expanded.
type resolved struct {
	tree any
	size int
}

// resolveEvaluator returns the named evaluator with its own $refs inlined. stack holds
// the evaluators being resolved, to reject cycles.
func (p *parser) resolveEvaluator(name string, stack []string) (resolved, bool) {
	if r, done := p.resolved[name]; done {
		return r, true
	}
	raw, ok := p.evaluators[name]
	if !ok {
		return resolved{}, false
	}
	for i, s := range stack {
		if s == name {
			cycle := append(append([]string{}, stack[i:]...), name)
			p.failf(eval.Key("$evaluators", stack[i]), "$ref cycle: %s", strings.Join(cycle, " -> "))
			p.resolved[name] = resolved{}
			return resolved{}, true
		}
	}
	tree, size, _ := p.inline(raw, append(stack, name))
	r := resolved{tree: tree, size: size}
	p.resolved[name] = r
	return r, true
}

// inlineRule inlines the $refs of a rule and rejects it when its expanded size is
// over MaxRuleNodes.
func (p *parser) inlineRule(x any, path string) any {
	tree, size, _ := p.inline(x, nil)
	if size > MaxRuleNodes {
		p.failf(path, "the rule expands to %d nodes after inlining $ref, more than %d (evaluators that reference each other several times multiply)", size, MaxRuleNodes)
		return nil
	}
	return tree
}

// inline returns the rule tree with every {"$ref": name} replaced by the named
// evaluator (shared, not copied), and the number of nodes the tree has once fully
// expanded (saturating above MaxRuleNodes). Only the objects and arrays on the way
// to a $ref are copied: a subtree without one is returned as it is (the decoded
// tree belongs to the parser, and nothing writes to it). A $ref to a missing
// evaluator is left in place: strict mode rejects it; in lenient mode the evaluation
// fails with PARSE_ERROR, as in flagd.
func (p *parser) inline(x any, stack []string) (tree any, size int, replaced bool) {
	if name, ok := refName(x); ok {
		r, found := p.resolveEvaluator(name, stack)
		if !found {
			return x, 1, false // reported by the compiler as a $ref to a missing evaluator
		}
		return r.tree, r.size, true
	}
	size = 1
	add := func(n int) {
		size += n
		if size > MaxRuleNodes {
			size = MaxRuleNodes + 1
		}
	}
	switch t := x.(type) {
	case map[string]any:
		var out map[string]any
		for k, v := range t {
			sub, n, r := p.inline(v, stack)
			add(n)
			if r {
				if out == nil {
					out = maps.Clone(t)
				}
				out[k] = sub
			}
		}
		if out != nil {
			return out, size, true
		}
	case []any:
		var out []any
		for i, v := range t {
			sub, n, r := p.inline(v, stack)
			add(n)
			if r {
				if out == nil {
					out = slices.Clone(t)
				}
				out[i] = sub
			}
		}
		if out != nil {
			return out, size, true
		}
	}
	return x, size, false
}

// checkEvaluators compiles every evaluator on its own, so its mistakes are reported
// at its own path (and unused evaluators are checked too).
func (p *parser) checkEvaluators() {
	if len(p.evaluators) == 0 {
		return
	}
	for _, name := range sortedKeys(p.evaluators) {
		r := p.resolved[name]
		if r.tree == nil || r.size > MaxRuleNodes {
			continue
		}
		_, warnings, errs := eval.CompileRule(r.tree, eval.Key("$evaluators", name), p.strict)
		p.warnings = append(p.warnings, warnings...)
		p.errors = append(p.errors, errs...)
	}
}

// stateName returns the state as written, without keeping the decoder's string for
// the two states flagd knows.
func stateName(s string) string {
	switch s {
	case "ENABLED":
		return "ENABLED"
	case "DISABLED":
		return "DISABLED"
	}
	return strings.Clone(s)
}
