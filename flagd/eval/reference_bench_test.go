package eval_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/diegoholiveira/jsonlogic/v3"
)

// flagdPath reproduces what flagd 0.16.1's evaluator does per targeting evaluation
// (core/pkg/evaluator/json.go): copy the context, inject $flagd, marshal it, run
// jsonlogic.Apply on the raw rule, and strip the quotes of the result. It is the
// baseline for docs/performance.md, measured on the same machine as our benchmarks.
func flagdPath(b *testing.B, rule string, ctx map[string]any) string {
	b.Helper()
	withFlagd := make(map[string]any, len(ctx)+1)
	maps.Copy(withFlagd, ctx)
	withFlagd["$flagd"] = map[string]any{"flagKey": "flag", "timestamp": time.Now().Unix()}
	data, err := json.Marshal(withFlagd)
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	if err := jsonlogic.Apply(strings.NewReader(rule), bytes.NewReader(data), &out); err != nil {
		b.Fatal(err)
	}
	return strings.ReplaceAll(strings.TrimSpace(out.String()), `"`, "")
}

func benchFlagdPath(b *testing.B, rule string, ctx map[string]any, want string) {
	b.Helper()
	if got := flagdPath(b, rule, ctx); got != want {
		b.Fatalf("reference result %q, want %q", got, want)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		flagdPath(b, rule, ctx)
	}
}

func BenchmarkFlagdPathTargetingShape(b *testing.B) {
	benchFlagdPath(b, `{"if":[{"==":[{"var":["color"]},"yellow"]},"bool1",null]}`, map[string]any{"color": "yellow"}, "bool1")
}

func BenchmarkFlagdPathIfInEndsWith(b *testing.B) {
	// ends_with is a flagd custom operator; the reference run uses the standard "in"
	// substring form for the same decision, so this baseline is a lower bound.
	rule := `{"if":[{"in":["@example.com",{"var":"email"}]},"internal",{"in":[{"var":"country"},["de","fr","nl"]]},"beta","public"]}`
	benchFlagdPath(b, rule, map[string]any{"email": "ada@corp.io", "country": "fr", "targetingKey": "user-1"}, "beta")
}
