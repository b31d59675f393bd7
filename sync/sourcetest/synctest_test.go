package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// script is a source that sends its updates, says so on sent, and returns err once
// its context ends.
type script struct {
	updates []flagsync.Update
	err     error
	sent    chan struct{}
}

func (s *script) Name() string { return "script" }

func (s *script) Run(ctx context.Context, out chan<- flagsync.Update) error {
	for _, u := range s.updates {
		out <- u
	}
	close(s.sent)
	<-ctx.Done()
	return s.err
}

// recorder is the testing.TB given to Run: it records failures, and its Fatalf ends
// the goroutine as testing.T's does. Only the methods below are called.
type recorder struct {
	testing.TB
	failures []string
	cleanups []func()
}

func (r *recorder) Helper()          {}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, args ...any) {
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func TestAssertions(t *testing.T) {
	doc := flagsync.Update{Source: "script", Data: []byte(`{"flags":{}}`)}
	failed := flagsync.Update{Source: "script", Err: errors.New("file source f.json: the file does not exist")}
	tests := []struct {
		name    string
		updates []flagsync.Update
		runErr  error
		check   func(*Updates)
		want    []string // failures, first lines (go-cmp's diffs are deliberately unstable)
	}{
		{"data", []flagsync.Update{doc}, nil, func(u *Updates) { u.Data(`{"flags":{}}`) }, nil},
		{"other data", []flagsync.Update{doc}, nil, func(u *Updates) { u.Data(`{}`) },
			[]string{"data (-want +got):"}},
		{"error for data", []flagsync.Update{failed}, nil, func(u *Updates) { u.Data(`{}`) },
			[]string{"want data {}, got error file source f.json: the file does not exist"}},
		{"next data", []flagsync.Update{doc}, nil, func(u *Updates) { u.NextData() }, nil},
		{"error for next data", []flagsync.Update{failed}, nil, func(u *Updates) { u.NextData() },
			[]string{"want data, got error file source f.json: the file does not exist"}},
		{"error", []flagsync.Update{failed}, nil, func(u *Updates) { u.Err("f.json", "does not exist") }, nil},
		{"error without a part", []flagsync.Update{failed}, nil, func(u *Updates) { u.Err("f.json", "denied") },
			[]string{`error "file source f.json: the file does not exist" does not contain "denied"`}},
		{"data for error", []flagsync.Update{doc}, nil, func(u *Updates) { u.Err("denied") },
			[]string{`want an error containing ["denied"], got data {"flags":{}}`}},
		{"quiet", []flagsync.Update{doc}, nil, func(u *Updates) { u.Next(); u.Quiet() }, nil},
		{"not quiet", []flagsync.Update{doc, failed}, nil, func(u *Updates) { u.Next(); u.Quiet() },
			[]string{`unexpected update: data "", error file source f.json: the file does not exist`}},
		{"nothing arrives", nil, nil, func(u *Updates) { u.Wait = time.Millisecond; u.Next() },
			[]string{"no update within 1ms"}},
		{"run fails", nil, errors.New("bad configuration"), func(*Updates) {},
			[]string{"Run returned bad configuration, want nil"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &script{updates: tt.updates, err: tt.runErr, sent: make(chan struct{})}
			rec := &recorder{}
			u := Run(rec, src)
			if u.Wait != DefaultWait {
				t.Errorf("Wait = %s, want %s", u.Wait, DefaultWait)
			}
			<-src.sent // every update is in the channel: Quiet's answer does not race
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.check(u)
			}()
			<-done
			for _, cleanup := range slices.Backward(rec.cleanups) {
				cleanup()
			}
			var got []string
			for _, f := range rec.failures {
				got = append(got, strings.SplitN(f, "\n", 2)[0])
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("failures (-want +got):\n%s", diff)
			}
		})
	}
}
