package conformance

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
)

// mode is an OpenFeature flagd provider resolver mode.
type mode string

const (
	modeRPC       mode = "rpc"        // flagd.evaluation.v2 over gRPC, EventStream
	modeInProcess mode = "in-process" // flagd.sync.v1 SyncFlags, local evaluation
)

// provider is the part of an OpenFeature flagd provider the scenarios observe: typed
// resolution (the steps.Resolver of the scenario) and provider events. A provider is
// created per scenario and is ready (its first event is "ready") when newProvider
// returns.
type provider interface {
	steps.Resolver
	// events is the provider's event log.
	events() *eventLog
	// close ends the provider's streams.
	close()
}

// newProvider connects a provider of mode m to d, with the selector option.
func newProvider(ctx context.Context, m mode, d *daemon, selector string) (provider, error) {
	switch m {
	case modeRPC:
		return newRPCProvider(ctx, d, selector)
	case modeInProcess:
		return newInProcessProvider(ctx, d, selector)
	}
	return nil, fmt.Errorf("unknown provider mode %q", m)
}

// Provider event types, as the scenarios name them ("a change event handler").
const (
	eventReady  = "ready"
	eventChange = "change"
	eventError  = "error"
	eventStale  = "stale"
)

// event is one provider event: Flags are the changed flag keys of a change event,
// Detail says what went wrong for an error event.
type event struct {
	Type   string
	Flags  []string
	Detail string
}

// eventLog records a provider's events in order and lets steps wait for them.
type eventLog struct {
	mu      sync.Mutex
	list    []event
	changed chan struct{} // closed and replaced on every append
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

// add appends an event and wakes the waiters.
func (l *eventLog) add(e event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, e)
	close(l.changed)
	l.changed = make(chan struct{})
}

// len is the number of events so far (the position a new handler starts at).
func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.list)
}

// wait returns the first event of type typ at position from or later and its
// position, waiting up to eventTimeout for it.
func (l *eventLog) wait(ctx context.Context, typ string, from int) (event, int, error) {
	timeout := time.NewTimer(eventTimeout)
	defer timeout.Stop()
	for {
		l.mu.Lock()
		for i := from; i < len(l.list); i++ {
			if l.list[i].Type == typ {
				e := l.list[i]
				l.mu.Unlock()
				return e, i, nil
			}
		}
		changed, seen := l.changed, append([]event(nil), l.list...)
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return event{}, 0, ctx.Err()
		case <-timeout.C:
			return event{}, 0, fmt.Errorf("no %s event within %s (events so far: %v)", typ, eventTimeout, seen)
		}
	}
}
