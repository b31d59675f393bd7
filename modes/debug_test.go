package modes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/rs/zerolog"
)

// testCLI mirrors main's root command for the debug commands.
type testCLI struct {
	Globals
	Debug DebugCmd `cmd:""`
}

// cliResult is what one in-process run of flagpole printed and returned.
type cliResult struct {
	out, log []string // stdout lines; stderr log lines
	err      string   // the error Run returned ("" for none)
}

// runCLI runs `flagpole args...` in-process through kong, with stdin, stdout and the
// logger's output in memory. The logger has no timestamps, so its lines are exact.
func runCLI(t *testing.T, ctx context.Context, stdin io.Reader, args ...string) cliResult {
	t.Helper()
	var root testCLI
	parser, err := kong.New(&root, kong.Name("flagpole"),
		kong.Exit(func(code int) { t.Fatalf("kong exited with code %d", code) }))
	if err != nil {
		t.Fatal(err)
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		return cliResult{err: "parse: " + err.Error()}
	}
	var out, log bytes.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	logger := zerolog.New(&log).Level(zerolog.InfoLevel)
	kctx.BindTo(ctx, (*context.Context)(nil))
	runErr := kctx.Run(logger, BuildInfo{}, Stdio{In: stdin, Out: &out, Err: io.Discard})
	res := cliResult{out: lines(out.String()), log: lines(log.String())}
	if runErr != nil {
		res.err = runErr.Error()
	}
	return res
}

func lines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

const (
	examplesJSON = "../deploy/examples/flags/example-flags.json"
	examplesYAML = "../deploy/examples/flags/example-flags.yaml"
	td           = "testdata/debug/"

	setMeta = `"flagSetId":"storefront","team":"web","version":"2026-08-01"`
)

// makeRunOutput is what `make run` prints: every example flag for user-1234,
// ada@example.com, app version 2.3.0.
func makeRunOutput() []string {
	return []string{
		`{"flagKey":"checkout-config","value":{"expressCheckout":true,"provider":"acme-pay","retries":3},"variant":"v2","reason":"TARGETING_MATCH","metadata":{` + setMeta + `}}`,
		`{"flagKey":"holiday-banner","reason":"DEFAULT","metadata":{` + setMeta + `}}`,
		`{"flagKey":"homepage-hero","value":"video","variant":"video","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"growth","team":"web","version":"2026-08-01"}}`,
		`{"flagKey":"legacy-search","reason":"DISABLED","metadata":{` + setMeta + `}}`,
		`{"flagKey":"loyalty-discount","value":0.15,"variant":"beta","reason":"TARGETING_MATCH","metadata":{` + setMeta + `}}`,
		`{"flagKey":"new-checkout","value":true,"variant":"on","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"payments","team":"web","version":"2026-08-01"}}`,
		`{"flagKey":"offline-mode","value":true,"variant":"on","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"mobile","team":"web","version":"2026-08-01"}}`,
		`{"flagKey":"search-page-size","value":25,"variant":"medium","reason":"STATIC","metadata":{` + setMeta + `}}`,
	}
}

// makeRunArgs are the evaluation arguments of `make run`.
func makeRunArgs() []string {
	return []string{"--targeting-key", "user-1234", "--context", `{"email":"ada@example.com","version":"2.3.0"}`}
}

func TestDebugEval(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  cliResult
	}{
		{
			name: "all flags, sorted by key (make run)",
			args: append([]string{"--flags", examplesJSON}, makeRunArgs()...),
			want: cliResult{out: makeRunOutput()},
		},
		{
			name: "YAML file gives the same results",
			args: append([]string{"--flags", examplesYAML}, makeRunArgs()...),
			want: cliResult{out: makeRunOutput()},
		},
		{
			name: "single flag",
			args: []string{"--flags", examplesJSON, "--flag", "new-checkout", "--context", `{"email":"bob@elsewhere.org"}`},
			want: cliResult{out: []string{
				`{"flagKey":"new-checkout","value":false,"variant":"off","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"payments","team":"web","version":"2026-08-01"}}`,
			}},
		},
		{
			name: "sem_ver gate below the minimum version",
			args: []string{"--flags", examplesJSON, "--flag", "offline-mode", "--context", `{"version":"2.1.9"}`},
			want: cliResult{out: []string{
				`{"flagKey":"offline-mode","value":false,"variant":"off","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"mobile","team":"web","version":"2026-08-01"}}`,
			}},
		},
		{
			name: "no context: fractional without targetingKey falls back to the default",
			args: []string{"--flags", examplesJSON, "--flag", "homepage-hero"},
			want: cliResult{out: []string{
				`{"flagKey":"homepage-hero","value":"classic","variant":"classic","reason":"DEFAULT","metadata":{"flagSetId":"storefront","owner":"growth","team":"web","version":"2026-08-01"}}`,
			}},
		},
		{
			name: "--type integer",
			args: []string{"--flags", examplesJSON, "--flag", "search-page-size", "--type", "integer"},
			want: cliResult{out: []string{
				`{"flagKey":"search-page-size","value":25,"variant":"medium","reason":"STATIC","metadata":{` + setMeta + `}}`,
			}},
		},
		{
			name: "--type mismatch is a resolution",
			args: []string{"--flags", examplesJSON, "--flag", "search-page-size", "--type", "boolean"},
			want: cliResult{out: []string{
				`{"flagKey":"search-page-size","reason":"ERROR","errorCode":"TYPE_MISMATCH","errorMessage":"flag \"search-page-size\" resolved to variant \"medium\", which is a number, not boolean","metadata":{` + setMeta + `}}`,
			}},
		},
		{
			name: "unknown flag is a FLAG_NOT_FOUND resolution, not an error",
			args: []string{"--flags", examplesJSON, "--flag", "no-such-flag"},
			want: cliResult{out: []string{
				`{"flagKey":"no-such-flag","reason":"ERROR","errorCode":"FLAG_NOT_FOUND","errorMessage":"flag \"no-such-flag\" not found","metadata":{}}`,
			}},
		},
		{
			name: "a selector narrows to one source, like the Flagd-Selector header",
			args: []string{"--flags", td + "base.json", "--flags", td + "override.yaml", "--selector", "source=" + td + "base.json", "--flag", "limit"},
			want: cliResult{out: []string{
				`{"flagKey":"limit","value":10,"variant":"low","reason":"STATIC","metadata":{}}`,
			}},
		},
		{
			name: "an invalid selector is a usage error",
			args: []string{"--flags", td + "base.json", "--selector", "env=prod"},
			want: cliResult{err: `--selector: invalid selector key "env", valid keys: "flagSetId", "source"`},
		},
		{
			name: "--context-file",
			args: []string{"--flags", td + "base.json", "--flag", "color", "--context-file", td + "context.json"},
			want: cliResult{out: []string{
				`{"flagKey":"color","value":"blue","variant":"blue","reason":"TARGETING_MATCH","metadata":{}}`,
			}},
		},
		{
			name: "--targeting-key wins over the context's targetingKey",
			args: []string{"--flags", examplesJSON, "--flag", "homepage-hero", "--context", `{"targetingKey":"user-1"}`, "--targeting-key", "user-1234"},
			want: cliResult{out: []string{makeRunOutput()[2]}},
		},
		{
			name: "later file wins on the same key",
			args: []string{"--flags", td + "base.json", "--flags", td + "override.yaml"},
			want: cliResult{out: []string{
				`{"flagKey":"beta","reason":"DISABLED","metadata":{"flagSetId":"overrides"}}`,
				`{"flagKey":"color","value":"red","variant":"red","reason":"DEFAULT","metadata":{}}`,
				`{"flagKey":"limit","value":100,"variant":"high","reason":"STATIC","metadata":{"flagSetId":"overrides"}}`,
			}},
		},
		{
			name: "same key in two flag sets of one file: the later one wins",
			args: []string{"--flags", td + "array-form.json"},
			want: cliResult{out: []string{
				`{"flagKey":"banner","value":"second","variant":"b","reason":"STATIC","metadata":{"flagSetId":"two"}}`,
			}},
		},
		{
			name: "no HTML escaping in the output",
			args: []string{"--flags", td + "html.json"},
			want: cliResult{out: []string{
				`{"flagKey":"terms&conditions","value":"<b>Terms & conditions</b>","variant":"v","reason":"STATIC","metadata":{"owner":"legal <legal@example.com>"}}`,
			}},
		},
		{
			name: "lenient file: one warning per problem on the log",
			args: []string{"--flags", td + "warnings.json"},
			want: cliResult{
				out: []string{`{"flagKey":"legacy","value":true,"variant":"on","reason":"STATIC","metadata":{}}`},
				log: []string{
					`{"level":"warn","file":"testdata/debug/warnings.json","path":"flags.legacy.owner","message":"unknown flag member"}`,
					`{"level":"warn","file":"testdata/debug/warnings.json","path":"flags.legacy.state","message":"must be \"ENABLED\" or \"DISABLED\", got \"ON\" (flagd treats it as enabled)"}`,
				},
			},
		},
		{
			name: "rejected and missing files: every problem of every file",
			args: []string{"--flags", td + "rejected.json", "--flags", td + "missing.json", "--flags", td + "base.json"},
			want: cliResult{err: "testdata/debug/rejected.json: flagd would reject this file:\n" +
				"  flags.a.state: must be a string, got number\n" +
				"  flags.b.defaultVariant: \"z\" is not one of the variants (\"x\")\n" +
				"testdata/debug/missing.json: no such file or directory"},
		},
		{
			name: "bad --context JSON",
			args: []string{"--flags", examplesJSON, "--context", `{"email":`},
			want: cliResult{err: "--context: invalid JSON: unexpected end of JSON input"},
		},
		{
			name: "--context must be an object",
			args: []string{"--flags", examplesJSON, "--context", `"ada"`},
			want: cliResult{err: "--context: must be a JSON object, got a string"},
		},
		{
			name: "--context-file must hold an object",
			args: []string{"--flags", examplesJSON, "--context-file", td + "context-array.json"},
			want: cliResult{err: "--context-file testdata/debug/context-array.json: must be a JSON object, got an array"},
		},
		{
			name: "missing --context-file",
			args: []string{"--flags", examplesJSON, "--context-file", td + "missing.json"},
			want: cliResult{err: "--context-file testdata/debug/missing.json: no such file or directory"},
		},
		{
			name: "--context and --context-file are exclusive",
			args: []string{"--flags", examplesJSON, "--context", "{}", "--context-file", td + "context.json"},
			want: cliResult{err: "parse: --context and --context-file can't be used together"},
		},
		{
			name: "batch: good, bad and blank lines, in order",
			args: []string{"--flags", examplesJSON, "--batch"},
			stdin: `{"flagKey":"new-checkout","context":{"email":"ada@example.com"}}

not json
{"flagKey":"offline-mode","context":{"version":"1.0.0"}}
   
{"flagKey":42}
["new-checkout"]
{"flagKey":"new-checkout","context":"ada"}
{"context":{}}
{"flagKey":"no-such-flag"}
{"flagKey":"search-page-size"}`, // no final newline
			want: cliResult{out: []string{
				`{"flagKey":"new-checkout","value":true,"variant":"on","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"payments","team":"web","version":"2026-08-01"}}`,
				`{"line":3,"error":"invalid JSON: invalid character 'o' in literal null (expecting 'u')"}`,
				`{"flagKey":"offline-mode","value":false,"variant":"off","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"mobile","team":"web","version":"2026-08-01"}}`,
				`{"line":6,"error":"\"flagKey\" must be a string, got number"}`,
				`{"line":7,"error":"a line must be a JSON object {\"flagKey\":...,\"context\":{...}}, got array"}`,
				`{"line":8,"error":"\"context\" must be a JSON object, got string"}`,
				`{"line":9,"error":"\"flagKey\" is required (or give --flag)"}`,
				`{"flagKey":"no-such-flag","reason":"ERROR","errorCode":"FLAG_NOT_FOUND","errorMessage":"flag \"no-such-flag\" not found","metadata":{}}`,
				`{"flagKey":"search-page-size","value":25,"variant":"medium","reason":"STATIC","metadata":{` + setMeta + `}}`,
			}},
		},
		{
			name: "batch: --flag is the default key, line context extends --context",
			args: []string{"--flags", examplesJSON, "--batch", "--flag", "loyalty-discount", "--context", `{"orders":12}`, "--type", "float"},
			stdin: `{"context":{"targetingKey":"user-5678"}}
{"context":{"orders":3}}
{}
{"flagKey":"search-page-size"}
`,
			want: cliResult{out: []string{
				`{"flagKey":"loyalty-discount","value":0.15,"variant":"beta","reason":"TARGETING_MATCH","metadata":{` + setMeta + `}}`,
				`{"flagKey":"loyalty-discount","value":0,"variant":"none","reason":"TARGETING_MATCH","metadata":{` + setMeta + `}}`,
				`{"flagKey":"loyalty-discount","value":0.05,"variant":"standard","reason":"TARGETING_MATCH","metadata":{` + setMeta + `}}`,
				`{"flagKey":"search-page-size","value":25,"variant":"medium","reason":"STATIC","metadata":{` + setMeta + `}}`,
			}},
		},
		{
			name:  "batch: empty input",
			args:  []string{"--flags", examplesJSON, "--batch"},
			stdin: "",
			want:  cliResult{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, context.Background(), strings.NewReader(tc.stdin), append([]string{"debug", "eval"}, tc.args...)...)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(cliResult{})); diff != "" {
				t.Errorf("flagpole debug eval %q (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

func TestDebugValidate(t *testing.T) {
	tests := []struct {
		name     string
		args     []string // options before the files
		files    []string
		wantOut  []string
		wantExit bool
	}{
		{
			name:  "examples pass strict validation",
			files: []string{examplesJSON, examplesYAML},
			wantOut: []string{
				examplesJSON + ": ok, 8 flags (6 with targeting, 1 disabled), 1 flag set (storefront)",
				examplesYAML + ": ok, 8 flags (6 with targeting, 1 disabled), 1 flag set (storefront)",
			},
		},
		{
			name:  "several flag sets, no flag set",
			files: []string{td + "array-form.json", td + "base.json"},
			wantOut: []string{
				td + "array-form.json: ok, 2 flags (0 with targeting, 0 disabled), 2 flag sets (one, two)",
				td + "base.json: ok, 2 flags (1 with targeting, 0 disabled), 0 flag sets",
			},
		},
		{
			name:  "what strict mode still only warns about",
			files: []string{td + "strict-warnings.json"},
			wantOut: []string{
				td + "strict-warnings.json: warning: comment: unknown member, ignored",
				td + "strict-warnings.json: ok, 1 flag (0 with targeting, 0 disabled), 0 flag sets, 1 warning",
			},
		},
		{
			name:  "every failing file is checked and listed",
			files: []string{td + "rejected.json", td + "missing.json", td + "warnings.json", td + "base.json"},
			wantOut: []string{
				td + "rejected.json: flags.a.state: must be a string, got number",
				td + `rejected.json: flags.b.defaultVariant: "z" is not one of the variants ("x")`,
				td + "missing.json: no such file or directory",
				td + "warnings.json: flags.legacy.owner: unknown flag member",
				td + `warnings.json: flags.legacy.state: must be "ENABLED" or "DISABLED", got "ON" (flagd treats it as enabled)`,
				td + "base.json: ok, 2 flags (1 with targeting, 0 disabled), 0 flag sets",
			},
			wantExit: true,
		},
		{
			name:  "manifests: several documents, a List, other kinds, mixed with a flag file",
			files: []string{td + "base.json", td + "manifests.yaml", td + "list.json"},
			wantOut: []string{
				td + "base.json: ok, 2 flags (1 with targeting, 0 disabled), 0 flag sets",
				td + "manifests.yaml: FeatureFlag/shop/checkout-flags: ok, 1 flag (1 with targeting, 0 disabled), 1 flag set (checkout)",
				td + "manifests.yaml: FeatureFlagSource/shop/checkout: warning: spec.sources[1].httpSyncBearerToken: the token is stored in plain text: anyone who can read this FeatureFlagSource can read it; prefer a Secret",
				td + `manifests.yaml: FeatureFlagSource/shop/checkout: warning: spec.sources[2].source: FeatureFlag other-team/flags is in another namespace than this FeatureFlagSource: the pod webhook refuses cross-namespace references unless namespace "other-team" opts in or the operator runs with --cross-namespace=allow`,
				td + "manifests.yaml: FeatureFlagSource/shop/checkout: spec.managementPort: 8014 is also spec.port: each listener of the sidecar needs its own port",
				td + "manifests.yaml: Deployment/default/shop: skipped: not a core.openfeature.dev object (apps/v1)",
				td + `manifests.yaml: Flagd/default/public: spec.featureFlagSource: "shop/checkout": a Flagd uses a FeatureFlagSource of its own namespace; give the name alone, without namespace/`,
				td + `list.json: FeatureFlag/shop/broken: spec.flagSpec.flags.hero.defaultVariant: "c" is not one of the variants ("a", "b")`,
				td + `list.json: FeatureFlag/shop/broken: spec.flagSpec.flags.hero.targeting.fractional[0]: the bucketing key must be a rule such as {"var": "email"}, not a string: every user would land in the same bucket`,
				td + `list.json: FeatureFlag/shop/broken: spec.flagSpec.flags.hero.targeting.fractional[2][1]: weight must be a non-negative integer, got "50"`,
				td + "list.json: InProcessConfiguration/default/in-process: ok",
			},
			wantExit: true,
		},
		{
			name:  "manifests: the operator's settings",
			args:  []string{"--namespace", "shop", "--cross-namespace", "allow", "--default-sync-provider", ""},
			files: []string{td + "manifests.yaml", td + "no-provider.yaml"},
			wantOut: []string{
				td + "manifests.yaml: FeatureFlag/shop/checkout-flags: ok, 1 flag (1 with targeting, 0 disabled), 1 flag set (checkout)",
				td + "manifests.yaml: FeatureFlagSource/shop/checkout: warning: spec.sources[1].httpSyncBearerToken: the token is stored in plain text: anyone who can read this FeatureFlagSource can read it; prefer a Secret",
				td + "manifests.yaml: FeatureFlagSource/shop/checkout: spec.managementPort: 8014 is also spec.port: each listener of the sidecar needs its own port",
				td + "manifests.yaml: Deployment/shop/shop: skipped: not a core.openfeature.dev object (apps/v1)",
				td + `manifests.yaml: Flagd/shop/public: spec.featureFlagSource: "shop/checkout": a Flagd uses a FeatureFlagSource of its own namespace; give the name alone, without namespace/`,
				td + "no-provider.yaml: FeatureFlagSource/shop/defaults: spec.sources[0].provider: is required: this FeatureFlagSource has no defaultSyncProvider and the operator no default sync provider",
			},
			wantExit: true,
		},
		{
			name:  "manifests: by default sources without a provider use kubernetes, as OFO's default",
			files: []string{td + "no-provider.yaml", "../deploy/examples/crds/inprocessconfiguration.yaml"},
			wantOut: []string{
				td + "no-provider.yaml: FeatureFlagSource/default/defaults: ok",
				"../deploy/examples/crds/inprocessconfiguration.yaml: InProcessConfiguration/default/storefront-in-process: ok",
			},
		},
		{
			name:  "manifests: what flagpole does not serve, and documents that are not objects",
			files: []string{td + "not-served.yaml"},
			wantOut: []string{
				td + "not-served.yaml: FeatureFlagConfiguration/default/legacy: kind FeatureFlagConfiguration is not served: flagpole serves FeatureFlag, FeatureFlagSource, Flagd and InProcessConfiguration",
				td + "not-served.yaml: FeatureFlag/default/old: apiVersion core.openfeature.dev/v1alpha2 is not served: flagpole serves core.openfeature.dev/v1beta1",
				td + "not-served.yaml: FeatureFlagSource/default/no-api-version: apiVersion: is required (core.openfeature.dev/v1beta1)",
				td + "not-served.yaml: InProcessConfiguration/default/typed: spec.port: must be an integer, got string",
				td + "not-served.yaml: document 5: not a Kubernetes object (no apiVersion and kind)",
				td + "not-served.yaml: document 6: yaml: line 3: did not find expected ',' or ']'",
			},
			wantExit: true,
		},
		{
			name:     "a directory",
			files:    []string{"testdata"},
			wantOut:  []string{"testdata: is a directory"},
			wantExit: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := runCLI(t, context.Background(), nil, append(append([]string{"debug", "validate"}, tc.args...), tc.files...)...)
			want := cliResult{out: tc.wantOut}
			if tc.wantExit {
				want.err = ExitError{Code: 1}.Error()
			}
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(cliResult{})); diff != "" {
				t.Errorf("flagpole debug validate %q (-want +got):\n%s", tc.files, diff)
			}
		})
	}
}

// TestDebugEvalBatchFlushesWhenInputRunsDry checks that a program writing one line
// and waiting for its answer gets it before it closes stdin.
func TestDebugEvalBatchFlushesWhenInputRunsDry(t *testing.T) {
	lookup := exampleLookup(t)
	var out bytes.Buffer
	in := &scriptedReader{chunks: []string{`{"flagKey":"search-page-size"}` + "\n"}, out: &out}
	if err := evalBatch(context.Background(), in, newResultWriter(&out), lookup, 0, nil, ""); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"flagKey":"search-page-size","value":25,"variant":"medium","reason":"STATIC","metadata":{` + setMeta + `}}` + "\n"}
	if diff := cmp.Diff(want, in.outAtRead[1:]); diff != "" {
		t.Errorf("output already written when stdin was read again (-want +got):\n%s", diff)
	}
}

// scriptedReader returns one chunk per Read, then EOF, and records what out held at
// each Read.
type scriptedReader struct {
	chunks    []string
	out       *bytes.Buffer
	outAtRead []string
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	r.outAtRead = append(r.outAtRead, r.out.String())
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

// TestDebugEvalBatchStopsWhenCanceled checks that an interrupt ends --batch even
// while stdin blocks (a terminal nobody types into).
func TestDebugEvalBatchStopsWhenCanceled(t *testing.T) {
	lookup := exampleLookup(t)
	in, w := io.Pipe() // never written
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- evalBatch(ctx, in, newResultWriter(io.Discard), lookup, 0, nil, "") }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("evalBatch after cancel = %v, want context.Canceled", err)
	}
}

func TestDebugEvalLongBatchLine(t *testing.T) {
	lookup := exampleLookup(t)
	// A context larger than the 1 MiB read buffer.
	line := fmt.Sprintf(`{"flagKey":"new-checkout","context":{"padding":%q,"email":"ada@example.com"}}`, strings.Repeat("x", 3<<20))
	var out bytes.Buffer
	if err := evalBatch(context.Background(), strings.NewReader(line+"\n"+line), newResultWriter(&out), lookup, 0, nil, ""); err != nil {
		t.Fatal(err)
	}
	one := `{"flagKey":"new-checkout","value":true,"variant":"on","reason":"TARGETING_MATCH","metadata":{"flagSetId":"storefront","owner":"payments","team":"web","version":"2026-08-01"}}`
	if diff := cmp.Diff([]string{one, one}, lines(out.String())); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func exampleLookup(t testing.TB) flagLookup {
	t.Helper()
	sets, err := loadFlagFiles([]string{examplesJSON}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := newFlagLookup([]string{examplesJSON}, sets, store.Selector{})
	if err != nil {
		t.Fatal(err)
	}
	return lookup
}

// batchInput generates n batch lines over the example flags, with varied users.
func batchInput(n int) []byte {
	keys := []string{"new-checkout", "homepage-hero", "offline-mode", "search-page-size", "loyalty-discount", "checkout-config", "holiday-banner", "legacy-search"}
	domains := []string{"example.com", "elsewhere.org"}
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, `{"flagKey":%q,"context":{"targetingKey":"user-%d","email":"u%d@%s","version":"2.%d.0","orders":%d,"country":"de"}}`+"\n",
			keys[i%len(keys)], i, i, domains[i%len(domains)], i%5, i%20)
	}
	return b.Bytes()
}

// BenchmarkDebugEvalBatch measures `debug eval --batch` over generated lines, parsing
// to output, without process start-up.
func BenchmarkDebugEvalBatch(b *testing.B) {
	const lines = 10_000
	lookup := exampleLookup(b)
	input := batchInput(lines)
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	for b.Loop() {
		if err := evalBatch(context.Background(), bytes.NewReader(input), newResultWriter(io.Discard), lookup, 0, nil, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*lines), "ns/line")
}
