package modes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// DebugEvalCmd evaluates flags offline, as flagd would serve them.
type DebugEvalCmd struct {
	Flags        []string `required:"" sep:"none" placeholder:"FILE" help:"Flag file, JSON or YAML (repeatable: a later file wins on the same key, like a later source)."`
	Flag         string   `placeholder:"KEY" help:"Flag to evaluate (default: every flag, by key). With --batch: the key of input lines without flagKey."`
	Context      string   `xor:"context" placeholder:"JSON" help:"Evaluation context, a JSON object."`
	ContextFile  string   `xor:"context" placeholder:"FILE" help:"File holding the evaluation context, a JSON object."`
	TargetingKey string   `placeholder:"KEY" help:"Set the context's targetingKey."`
	Type         string   `default:"any" enum:"any,boolean,string,integer,float,object" help:"Type to resolve as, as an SDK would ask: ${enum}."`
	Selector     string   `placeholder:"SELECTOR" help:"Narrow the flags as the Flagd-Selector header does: flagSetId=<id>, source=<file> or a bare file name."`
	Batch        bool     `help:"Read JSON lines {\"flagKey\":...,\"context\":{...}} from stdin (the context extends --context) and write one result line per input line."`
}

// resolutionLine is one line of output: a resolution in OpenFeature's terms.
type resolutionLine struct {
	FlagKey      string          `json:"flagKey"`
	Value        any             `json:"value,omitempty"`
	Variant      string          `json:"variant,omitempty"`
	Reason       eval.Reason     `json:"reason"`
	ErrorCode    eval.ErrorCode  `json:"errorCode,omitempty"`
	ErrorMessage string          `json:"errorMessage,omitempty"`
	Metadata     json.RawMessage `json:"metadata"`
}

// batchErrorLine is the output for an input line that could not be evaluated.
type batchErrorLine struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// batchRequest is one input line of --batch.
type batchRequest struct {
	FlagKey string         `json:"flagKey"`
	Context map[string]any `json:"context"`
}

// Run evaluates the flags and prints one JSON resolution per line.
func (c *DebugEvalCmd) Run(ctx context.Context, log zerolog.Logger, stdio Stdio) error {
	typ, err := parseEvalType(c.Type)
	if err != nil {
		return err
	}
	base, err := c.evaluationContext()
	if err != nil {
		return err
	}
	sel, err := store.ParseSelector(c.Selector)
	if err != nil {
		return fmt.Errorf("--selector: %w", err)
	}
	sets, err := loadFlagFiles(c.Flags, log)
	if err != nil {
		return err
	}
	lookup, err := newFlagLookup(c.Flags, sets, sel)
	if err != nil {
		return err
	}

	out := newResultWriter(stdio.Out)
	if c.Batch {
		err = evalBatch(ctx, stdio.In, out, lookup, typ, base, c.Flag)
	} else {
		keys := lookup.keys()
		if c.Flag != "" {
			keys = []string{c.Flag}
		}
		for _, key := range keys {
			if err = out.resolution(key, lookup.evaluate(key, typ, base)); err != nil {
				break
			}
		}
	}
	if flushErr := out.w.Flush(); err == nil {
		err = flushErr
	}
	return err
}

// parseEvalType maps the --type names to eval.Type.
func parseEvalType(name string) (eval.Type, error) {
	for t := eval.TypeAny; t <= eval.TypeObject; t++ {
		if t.String() == name {
			return t, nil
		}
	}
	return eval.TypeAny, fmt.Errorf("--type: unknown type %q", name)
}

// evaluationContext builds the context from --context or --context-file and
// --targeting-key. It is never nil.
func (c *DebugEvalCmd) evaluationContext() (map[string]any, error) {
	evalCtx := map[string]any{}
	switch {
	case c.Context != "":
		m, err := decodeContextObject([]byte(c.Context))
		if err != nil {
			return nil, fmt.Errorf("--context: %w", err)
		}
		evalCtx = m
	case c.ContextFile != "":
		data, err := readFile(c.ContextFile)
		if err != nil {
			return nil, fmt.Errorf("--context-file %w", err)
		}
		m, err := decodeContextObject(data)
		if err != nil {
			return nil, fmt.Errorf("--context-file %s: %w", c.ContextFile, err)
		}
		evalCtx = m
	}
	if c.TargetingKey != "" {
		evalCtx["targetingKey"] = c.TargetingKey
	}
	return evalCtx, nil
}

// decodeContextObject decodes a JSON object; anything else is an error saying what it got.
func decodeContextObject(data []byte) (map[string]any, error) {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("must be a JSON object, got %s", jsonKind(v))
	}
	return m, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

// resultWriter writes output lines through one buffer and one encoder.
type resultWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
	// metadata caches the encoded metadata of each flag key seen: a flag's metadata
	// never changes during a run, and encoding a map on every line is most of the
	// cost of writing it.
	metadata  map[string]json.RawMessage
	line      resolutionLine
	errorLine batchErrorLine
}

func newResultWriter(w io.Writer) *resultWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &resultWriter{w: bw, enc: enc, metadata: map[string]json.RawMessage{}}
}

// resolution writes the resolution of key. Every resolution of one key must carry the
// same metadata (true of a flagLookup's).
func (rw *resultWriter) resolution(key string, r eval.Resolution) error {
	meta := json.RawMessage("{}")
	if len(r.Metadata) > 0 {
		var ok bool
		if meta, ok = rw.metadata[key]; !ok {
			var b bytes.Buffer
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(r.Metadata); err != nil {
				return err
			}
			meta = bytes.TrimSuffix(b.Bytes(), []byte("\n"))
			rw.metadata[key] = meta
		}
	}
	rw.line = resolutionLine{
		FlagKey:      key,
		Value:        r.Value,
		Variant:      r.Variant,
		Reason:       r.Reason,
		ErrorCode:    r.ErrorCode,
		ErrorMessage: r.ErrorMessage,
		Metadata:     meta,
	}
	return rw.enc.Encode(&rw.line)
}

func (rw *resultWriter) batchError(line int, msg string) error {
	rw.errorLine = batchErrorLine{Line: line, Error: msg}
	return rw.enc.Encode(&rw.errorLine)
}

// evalBatch evaluates one JSON line of stdin at a time and writes one output line per
// non-blank input line, in order. Output is flushed whenever the input runs dry, so a
// program driving flagpole line by line gets each answer without closing stdin.
func evalBatch(ctx context.Context, in io.Reader, out *resultWriter, lookup flagLookup, typ eval.Type, base map[string]any, defaultKey string) error {
	r := bufio.NewReaderSize(&cancelableReader{ctx: ctx, r: in}, 1<<20)
	var long []byte // holds lines longer than r's buffer
	for n := 1; ; n++ {
		if r.Buffered() == 0 {
			if err := out.w.Flush(); err != nil {
				return err
			}
		}
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("stopped reading stdin at line %d: %w", n, ctxErr)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("reading stdin, line %d: %w", n, err)
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			if werr := evalBatchLine(out, n, trimmed, lookup, typ, base, defaultKey); werr != nil {
				return werr
			}
		}
		if err != nil { // io.EOF
			return out.w.Flush()
		}
	}
}

// evalBatchLine evaluates one non-blank input line and writes its result line.
func evalBatchLine(out *resultWriter, n int, line []byte, lookup flagLookup, typ eval.Type, base map[string]any, defaultKey string) error {
	var req batchRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return out.batchError(n, describeBatchLineError(err))
	}
	key := req.FlagKey
	if key == "" {
		key = defaultKey
	}
	if key == "" {
		return out.batchError(n, `"flagKey" is required (or give --flag)`)
	}
	evalCtx := req.Context
	switch {
	case len(base) == 0:
	case len(req.Context) == 0:
		evalCtx = base
	default:
		evalCtx = make(map[string]any, len(base)+len(req.Context))
		maps.Copy(evalCtx, base)
		maps.Copy(evalCtx, req.Context)
	}
	return out.resolution(key, lookup.evaluate(key, typ, evalCtx))
}

// describeBatchLineError rewords encoding/json's errors for a batch input line.
func describeBatchLineError(err error) string {
	if typeErr, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		switch typeErr.Field {
		case "":
			return fmt.Sprintf(`a line must be a JSON object {"flagKey":...,"context":{...}}, got %s`, typeErr.Value)
		case "flagKey":
			return fmt.Sprintf(`"flagKey" must be a string, got %s`, typeErr.Value)
		case "context":
			return fmt.Sprintf(`"context" must be a JSON object, got %s`, typeErr.Value)
		}
	}
	return "invalid JSON: " + err.Error()
}

// cancelableReader stops reading when ctx ends, even while the underlying Read blocks
// (stdin from a terminal ignores the interrupt that ended ctx). A Read abandoned that
// way keeps its goroutine until the process exits.
type cancelableReader struct {
	ctx  context.Context
	r    io.Reader
	buf  []byte
	done chan readResult
}

type readResult struct {
	n   int
	err error
}

func (c *cancelableReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if c.done == nil {
		c.done = make(chan readResult, 1)
	}
	if len(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	go func() {
		n, err := c.r.Read(buf)
		c.done <- readResult{n, err}
	}()
	select {
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	case res := <-c.done:
		copy(p, buf[:res.n])
		return res.n, res.err
	}
}
