package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

func newStore(t *testing.T, sources ...string) *Store {
	t.Helper()
	s, err := New(sources, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, s *Store, source, doc string) {
	t.Helper()
	if err := s.Apply(source, []byte(doc)); err != nil {
		t.Fatalf("apply %s: %v", source, err)
	}
}

// value resolves key untyped through the selector and returns the value (or "<missing>").
func value(s *Store, key string, sel Selector) any {
	e, ok := s.Current().Get(key, sel)
	if !ok {
		return "<missing>"
	}
	return e.Flag.Evaluate(nil).Value
}

func flagDoc(key, val string, extra string) string {
	return `{` + extra + `"flags":{"` + key + `":{"state":"ENABLED","variants":{"v":"` + val + `"},"defaultVariant":"v"}}}`
}

func TestPriorityAndComeBack(t *testing.T) {
	s := newStore(t, "low", "high")
	apply(t, s, "low", flagDoc("color", "red", ""))
	apply(t, s, "high", flagDoc("color", "blue", ""))
	if got := value(s, "color", Selector{}); got != "blue" {
		t.Fatalf("color = %v, want blue (later source wins)", got)
	}
	if got := value(s, "color", Selector{Kind: SelectSource, Value: "low"}); got != "red" {
		t.Fatalf("color from source=low = %v, want red", got)
	}
	apply(t, s, "high", `{"flags":{}}`)
	if got := value(s, "color", Selector{}); got != "red" {
		t.Fatalf("after the high source dropped it, color = %v, want red back (flagd loses it)", got)
	}
	// the order of arrival does not matter, only the configured priority
	apply(t, s, "high", flagDoc("color", "blue", ""))
	apply(t, s, "low", flagDoc("color", "green", ""))
	if got := value(s, "color", Selector{}); got != "blue" {
		t.Fatalf("color = %v, want blue", got)
	}
}

func TestFlagSetsAndSelectors(t *testing.T) {
	s := newStore(t, "a.json", "b.json")
	apply(t, s, "a.json", `{"flags":[
		{"key":"f","state":"ENABLED","variants":{"v":"a-none"},"defaultVariant":"v"},
		{"key":"f","state":"ENABLED","variants":{"v":"a-set1"},"defaultVariant":"v","metadata":{"flagSetId":"set1"}}]}`)
	apply(t, s, "b.json", flagDoc("f", "b-set2", `"metadata":{"flagSetId":"set2"},`))
	cases := map[string]struct {
		sel  string
		want any
	}{
		"no selector: highest priority across sets": {"", "b-set2"},
		"flag set":                  {"flagSetId=set1", "a-set1"},
		"flags without a flag set":  {"flagSetId=", "a-none"},
		"source":                    {"source=a.json", "a-set1"},
		"legacy bare source":        {"b.json", "b-set2"},
		"unknown flag set":          {"flagSetId=nope", "<missing>"},
		"unknown source":            {"source=nope", "<missing>"},
		"value containing an equal": {"source=a.json=x", "<missing>"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			sel, err := ParseSelector(tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			if got := value(s, "f", sel); got != tc.want {
				t.Errorf("f via %q = %v, want %v", tc.sel, got, tc.want)
			}
		})
	}
	if _, err := ParseSelector("env=prod"); err == nil || err.Error() != `invalid selector key "env", valid keys: "flagSetId", "source"` {
		t.Errorf("ParseSelector(env=prod) error = %v", err)
	}
	if diff := cmp.Diff(map[string]any{"flagSetId": "set1"}, Selector{Kind: SelectFlagSetID, Value: "set1"}.Reflection()); diff != "" {
		t.Error(diff)
	}
}

func TestRejectedPayloadKeepsLastGoodFlags(t *testing.T) {
	s := newStore(t, "src")
	apply(t, s, "src", flagDoc("f", "good", ""))
	gen := s.Current().Generation
	for _, bad := range []string{`{`, `{}`, `{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"b"}}}`} {
		if err := s.Apply("src", []byte(bad)); err == nil {
			t.Errorf("payload %s accepted", bad)
		}
	}
	if got := value(s, "f", Selector{}); got != "good" {
		t.Errorf("f = %v, want the last good value", got)
	}
	if s.Current().Generation != gen {
		t.Errorf("a rejected payload published a snapshot")
	}
	st := s.Status()[0]
	if st.Failures != 3 || st.LastError == "" || !st.Ready {
		t.Errorf("status = %+v, want 3 failures, a last error, still ready", st)
	}
	if err := s.Apply("other", []byte(`{"flags":{}}`)); err == nil {
		t.Error("payload of an unknown source accepted")
	}
}

func TestReadyOnlyWhenEverySourceApplied(t *testing.T) {
	s := newStore(t, "a", "b")
	if s.Ready() {
		t.Fatal("ready before any payload")
	}
	apply(t, s, "a", `{"flags":{}}`)
	if s.Ready() {
		t.Fatal("ready with source b missing")
	}
	if err := s.Apply("b", []byte(`not json`)); err == nil {
		t.Fatal("bad payload accepted")
	}
	if s.Ready() {
		t.Fatal("ready although b's only payload was rejected (flagd reports ready here)")
	}
	apply(t, s, "b", `{"flags":{}}`)
	if !s.Ready() {
		t.Fatal("not ready after every source applied")
	}
}

func TestChanges(t *testing.T) {
	s := newStore(t, "src")
	apply(t, s, "src", `{"flags":{
		"same":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"},
		"meta":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"},
		"gone":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"}}}`)
	before := s.Current()
	apply(t, s, "src", `{"flags":{
		"same":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"},
		"meta":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v","metadata":{"owner":"x"}},
		"new":{"state":"ENABLED","variants":{"v":1},"defaultVariant":"v"}}}`)
	want := map[string]Change{"meta": ChangeUpdate, "gone": ChangeDelete, "new": ChangeWrite}
	if diff := cmp.Diff(want, s.Current().Changes(before, Selector{})); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]Change{}, s.Current().Changes(s.Current(), Selector{})); diff != "" {
		t.Errorf("no-op changes: %s", diff)
	}
}

func TestSyncPayload(t *testing.T) {
	s := newStore(t, "flags.json")
	apply(t, s, "flags.json", `{"metadata":{"flagSetId":"shop"},"$evaluators":{"e":{"==":[{"var":"x"},1]}},
		"flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":null,"targeting":{"if":[{"$ref":"e"},"on","off"]},"metadata":{"team":"a"}}}}`)
	var got map[string]any
	if err := json.Unmarshal(s.Current().SyncPayload(Selector{}), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"flags": map[string]any{"f": map[string]any{
		"state": "ENABLED", "defaultVariant": "", "variants": map[string]any{"on": true, "off": false},
		"targeting": map[string]any{"if": []any{map[string]any{"==": []any{map[string]any{"var": "x"}, 1.0}}, "on", "off"}},
		"source":    "flags.json", "metadata": map[string]any{"flagSetId": "shop", "team": "a"},
	}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
}

func TestWatchAndConcurrentReaders(t *testing.T) {
	s := newStore(t, "src")
	woken, stop := s.Watch()
	defer stop()
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if e, ok := s.Current().Get("f", Selector{}); ok {
					e.Flag.Evaluate(map[string]any{"targetingKey": "u"})
				}
			}
		})
	}
	for i := range 50 {
		apply(t, s, "src", flagDoc("f", string(rune('a'+i%26)), ""))
	}
	close(done)
	wg.Wait()
	select {
	case <-woken:
	default:
		t.Fatal("watcher not woken")
	}
	if s.Current().Generation != 50 {
		t.Errorf("generation = %d, want 50", s.Current().Generation)
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"flags/allFlags.json":              "flags/allFlags.json",
		"ns/name":                          "ns/name",
		"https://flags.example.com/f.json": "https://flags.example.com/f.json",
		"https://flags.example.com/f.json?token=secret": "https://flags.example.com/f.json?redacted",
		"https://user:pass@flags.example.com/f.json":    "https://redacted@flags.example.com/f.json",
		"https://token@flags.example.com/f.json#frag":   "https://redacted@flags.example.com/f.json",
		"https://flags.example.com/f.json?":             "https://flags.example.com/f.json?redacted",
		"grpcs://user:pw@sync.example.com:8015":         "grpcs://redacted@sync.example.com:8015",
		"localhost:8015":                                "localhost:8015",
		// url.Parse rejects these (space, bad escape): redacted by text
		"https://us er:p%zz@flags.example.com/f.json?token=x": "https://redacted@flags.example.com/f.json?redacted",
		"https://flags.example.com/f%zz.json?token=x":         "https://flags.example.com/f%zz.json?redacted",
		"https://flags.example.com/a@b%zz":                    "https://flags.example.com/a@b%zz",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRepeatedSourceErrorsLogOnce: a source failing the same way on every poll is
// counted every time but logged at error level only when the error changes.
func TestRepeatedSourceErrorsLogOnce(t *testing.T) {
	var logs bytes.Buffer
	s, err := New([]string{"https://h/f.json?token=secret"}, zerolog.New(&logs).Level(zerolog.InfoLevel))
	if err != nil {
		t.Fatal(err)
	}
	name := "https://h/f.json?token=secret"
	for range 5 {
		s.Fail(name, errors.New("connection refused"))
	}
	s.Fail(name, errors.New("503 Service Unavailable"))
	if got := strings.Count(logs.String(), `"level":"error"`); got != 2 {
		t.Errorf("%d error lines, want 2:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "secret") {
		t.Errorf("the source's token reached the logs:\n%s", logs.String())
	}
	if st := s.Status()[0]; st.Failures != 6 || st.LastError != "503 Service Unavailable" {
		t.Errorf("status = %+v", st)
	}
}

// TestSourceCredentialsStayInside: the store keeps a source's name as configured
// (selectors match it), but the sync API's JSON of its flags, the selector's
// rendering (logs, metrics) and the selector reflection (response metadata) carry
// it redacted: user info and query never leave the process.
func TestSourceCredentialsStayInside(t *testing.T) {
	const name = "https://probe:PASSWORD@flags.example.com/f.json?token=TOKEN&env=prod"
	s, err := New([]string{name}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(name, []byte(`{"flags":{"f":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}`)); err != nil {
		t.Fatal(err)
	}
	sel, err := ParseSelector("source=" + name)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := s.Current().Get("f", sel)
	if !ok {
		t.Fatal("the raw source name no longer selects the source's flags")
	}
	if e.Source != name {
		t.Errorf("entry source %q, want the name as configured", e.Source)
	}
	const redacted = "https://redacted@flags.example.com/f.json?redacted"
	out := map[string]string{
		"sync JSON":    string(e.JSON()),
		"sync payload": string(s.Current().SyncPayload(sel)),
		"selector":     sel.String(),
		"reflection":   fmt.Sprint(sel.Reflection()),
	}
	for where, text := range out {
		if strings.Contains(text, "PASSWORD") || strings.Contains(text, "TOKEN") {
			t.Errorf("%s carries the credentials: %s", where, text)
		}
		if !strings.Contains(text, redacted) {
			t.Errorf("%s does not name the source as %s: %s", where, redacted, text)
		}
	}
}
