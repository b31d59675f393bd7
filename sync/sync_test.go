package sync_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// fakeSource sends its document once, or fails at start.
type fakeSource struct {
	name string
	doc  string
	err  error
}

func (f fakeSource) Name() string { return f.name }

func (f fakeSource) Run(ctx context.Context, out chan<- flagsync.Update) error {
	if f.err != nil {
		return f.err
	}
	out <- flagsync.Update{Source: f.name, Data: []byte(f.doc)}
	<-ctx.Done()
	return nil
}

// TestFeedReportsASourceThatCannotRun: a source whose Run fails at start is reported
// to the store while everything runs (its redacted name is logged and readiness
// names it), not when the process shuts down; the other sources keep serving.
func TestFeedReportsASourceThatCannotRun(t *testing.T) {
	const secret = "https://ops:s3cret@flags.example.com/flags.json?token=abc"
	var logs strings.Builder
	st, err := store.New([]string{"good", secret}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		flagsync.Feed(ctx, st, []flagsync.Source{
			fakeSource{name: "good", doc: `{"flags":{"f":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}`},
			fakeSource{name: secret, err: errors.New("cannot watch: too many inotify instances")},
		})
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	var failed store.SourceStatus
	for time.Now().Before(deadline) {
		failed = st.Status()[1]
		if failed.Failures > 0 && st.Status()[0].Ready {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if failed.Failures == 0 || !strings.Contains(failed.LastError, "source stopped: cannot watch") {
		t.Fatalf("while running, the failed source's status is %+v", failed)
	}
	if st.Ready() {
		t.Error("ready although a source never delivered")
	}
	if _, ok := st.Current().Get("f", store.Selector{}); !ok {
		t.Error("the good source's flag is not served")
	}
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, "flags.example.com") || strings.Contains(out, "s3cret") || strings.Contains(out, "token=abc") {
		t.Errorf("the failure must be logged under the redacted name; logs:\n%s", out)
	}
}
