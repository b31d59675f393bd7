package syncserver

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// testbedFlags is the flagd-testbed flag directory, relative to this package: the
// repository is cloned with shared/ beside it, locally and in CI.
const testbedFlags = "../../../../shared/flagd-testbed/flags"

// compatContexts are the evaluation contexts each flag is evaluated with on both sides.
func compatContexts() []map[string]any {
	return []map[string]any{
		{},
		{"targetingKey": "user-1"},
		{"targetingKey": "jon@company.com", "email": "ballmer@macrosoft.com"},
		{"email": "user@faas.com", "locale": "us", "age": 30.0, "version": "2.0.0"},
		{"role": "admin", "customer": true, "version": "1.0.0"},
		{"targetingKey": "x", "user": map[string]any{"id": "abc", "name": "n"}, "age": "30"},
	}
}

func compatClock() time.Time { return time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC) }

// TestInProcessProviderCompatibility plays an in-process provider: it takes the
// SyncFlags payload, parses it as providers do (our lenient parser standing in for
// their flagd-core evaluators) and checks that every flag evaluates, for every
// resolution type and context, exactly as the server's own copy does. It runs over
// every flag file of the flagd-testbed and over this package's fixture.
//
//nolint:gocognit // the loops walk documents × flags × types × contexts; each iteration is one flat comparison
func TestInProcessProviderCompatibility(t *testing.T) {
	entries, err := os.ReadDir(testbedFlags)
	if err != nil {
		t.Fatalf("flagd-testbed flags not found at %s (the repository must be cloned with shared/ beside it): %v", testbedFlags, err)
	}
	docs := map[string]string{"fixture": docA}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(testbedFlags, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		docs[e.Name()] = string(data)
	}
	if len(docs) < 5 {
		t.Fatalf("found only %d flag files in %s", len(docs)-1, testbedFlags)
	}
	names := make([]string, 0, len(docs))
	for name := range docs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			st := newStore(t, "file:"+name)
			apply(t, st, "file:"+name, docs[name])
			h := start(t, Options{Store: st}, startConfig{})
			stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{ProviderId: "in-process"})
			if err != nil {
				t.Fatal(err)
			}
			set, err := flags.Parse([]byte(recv(t, stream).GetFlagConfiguration()), flags.Lenient)
			if err != nil {
				t.Fatalf("the payload does not parse: %v", err)
			}
			snap := st.Current()
			if len(set.Flags) != snap.Len() {
				t.Errorf("payload has %d flags, the server serves %d", len(set.Flags), snap.Len())
			}
			compared := 0
			for _, client := range set.Flags {
				server, ok := snap.Get(client.Key, store.Selector{})
				if !ok {
					t.Errorf("payload flag %q is not served", client.Key)
					continue
				}
				for _, ctx := range compatContexts() {
					for typ := eval.TypeAny; typ <= eval.TypeObject; typ++ {
						want := server.Flag.EvaluateAs(typ, ctx, compatClock)
						got := client.EvaluateAs(typ, ctx, compatClock)
						compared++
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("flag %q type %d context %v (-server +in-process):\n%s", client.Key, typ, ctx, diff)
						}
					}
				}
			}
			if compared == 0 {
				t.Errorf("no flag was compared")
			}
		})
	}
}
