// Package sourcetest is test support for flag sources: run a source under a test and
// assert on its updates.
//
// Every wait is bounded (Updates.Wait) and fails the test when it runs out; nothing
// here asserts on time.
package sourcetest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// DefaultWait is how long Next waits for an update unless Updates.Wait says otherwise.
const DefaultWait = 10 * time.Second

// buffered is the capacity of the update channel: a source blocks on a full channel,
// and a burst of writes must not stall it while the test is not reading yet.
const buffered = 1000

// Updates is what a running source sent and the test has not taken yet.
type Updates struct {
	// Wait bounds every wait for an update; Run sets it to DefaultWait.
	Wait time.Duration

	t  testing.TB
	ch chan flagsync.Update
}

// Run runs src until the test ends and returns its updates. At the end of the test
// Run's context is cancelled, and the test fails if src.Run returns an error.
func Run(t testing.TB, src flagsync.Source) *Updates {
	t.Helper()
	u := &Updates{Wait: DefaultWait, t: t, ch: make(chan flagsync.Update, buffered)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, u.ch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	})
	return u
}

// Next returns the next update, failing the test if none arrives within u.Wait.
func (u *Updates) Next() flagsync.Update {
	u.t.Helper()
	select {
	case up := <-u.ch:
		return up
	case <-time.After(u.Wait):
		u.t.Fatalf("no update within %s", u.Wait)
		return flagsync.Update{}
	}
}

// NextData returns the document of the next update, failing the test if that update
// is an error.
func (u *Updates) NextData() []byte {
	u.t.Helper()
	up := u.Next()
	if up.Err != nil {
		u.t.Fatalf("want data, got error %v", up.Err)
	}
	return up.Data
}

// Data asserts that the next update is exactly this document (byte for byte) and
// returns it.
func (u *Updates) Data(want string) flagsync.Update {
	u.t.Helper()
	up := u.Next()
	if up.Err != nil {
		u.t.Fatalf("want data %s, got error %v", want, up.Err)
	}
	if diff := cmp.Diff(want, string(up.Data)); diff != "" {
		u.t.Fatalf("data (-want +got):\n%s", diff)
	}
	return up
}

// Err asserts that the next update is an error whose message contains every one of
// parts, and returns that error.
func (u *Updates) Err(parts ...string) error {
	u.t.Helper()
	up := u.Next()
	if up.Err == nil {
		u.t.Fatalf("want an error containing %q, got data %s", parts, up.Data)
	}
	for _, p := range parts {
		if !strings.Contains(up.Err.Error(), p) {
			u.t.Fatalf("error %q does not contain %q", up.Err, p)
		}
	}
	return up.Err
}

// Quiet asserts that no update is waiting. It does not wait: the caller first makes
// sure the source is done with whatever might have sent one.
func (u *Updates) Quiet() {
	u.t.Helper()
	select {
	case up := <-u.ch:
		u.t.Fatalf("unexpected update: data %q, error %v", up.Data, up.Err)
	default:
	}
}
