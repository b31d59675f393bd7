package evaluation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"google.golang.org/protobuf/proto"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// eventStream runs one EventStream: provider_ready first, then a
// configuration_change for every new snapshot that changes what the stream's
// selector sees, keep_alive after KeepAlive without another event, and
// provider_shutdown when the service shuts down. withDeadline applies
// StreamDeadline (v1 and v2; schema.v1 ignores it, as in flagd).
func (s *Service) eventStream(ctx context.Context, selector string, withDeadline bool, send func(*streamEvent) error) error {
	sel, err := store.ParseSelector(selector)
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	select {
	case <-s.shutdown:
		return connect.NewError(connect.CodeUnavailable, errors.New("flagd is shutting down"))
	default:
	}
	if n := s.streams.Add(1); n > s.maxStreams {
		s.streams.Add(-1)
		if log, held := s.refusals.Allow(); log {
			s.log.Warn().Int64("limit", s.maxStreams).Int64("refused_since_last_warning", held).
				Msg("refused an event stream: too many open streams (logged at most every 10 s)")
		}
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("too many open event streams (limit %d)", s.maxStreams))
	}
	defer s.streams.Add(-1)

	var deadline <-chan time.Time
	if withDeadline && s.opts.StreamDeadline > 0 {
		t := time.NewTimer(s.opts.StreamDeadline)
		defer t.Stop()
		deadline = t.C
	}
	wake, stop := s.st.Watch()
	defer stop()
	prev := s.st.Current() // the subscriber's first state is not an event
	s.log.Debug().Str("selector", sel.String()).Msg("event stream opened")
	defer s.log.Debug().Str("selector", sel.String()).Msg("event stream closed")

	if err := send(s.events.ready); err != nil {
		return err
	}
	idle := time.NewTimer(s.keepAlive)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil // the client went away
		case <-deadline:
			return connect.NewError(connect.CodeDeadlineExceeded, errors.New(msgDeadline))
		case <-s.shutdown:
			_ = send(s.events.shutdown)
			return nil
		case <-wake:
			cur := s.st.Current()
			ev := s.events.changes(prev, cur, sel)
			prev = cur
			if ev == nil {
				continue
			}
			if err := send(ev); err != nil {
				return err
			}
			idle.Reset(s.keepAlive)
		case <-idle.C:
			if err := send(s.events.keepAlive); err != nil {
				return err
			}
			idle.Reset(s.keepAlive)
		}
	}
}

// changeData is {"flags": {"<key>": {"type": "write"|"update"|"delete"}}}.
func changeData(changes map[string]store.Change) *structpb.Struct {
	flags := make(map[string]*structpb.Value, len(changes))
	for key, c := range changes {
		flags[key] = structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
			"type": structpb.NewStringValue(string(c)),
		}})
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{"flags": structpb.NewStructValue(&structpb.Struct{Fields: flags})}}
}

// streamEvent is one EventStream message: its type and data, with the binary encoding of
// the EventStreamResponse (the same bytes in v1, v2 and schema.v1) made once for
// every gRPC stream it goes to. Events are shared by the streams: read-only.
type streamEvent struct {
	typ  string
	data *structpb.Struct
	once sync.Once
	pb   []byte
}

// encoded is the binary EventStreamResponse.
func (e *streamEvent) encoded() []byte {
	e.once.Do(func() {
		// a Struct of strings: nothing protobuf could refuse
		e.pb, _ = proto.MarshalOptions{Deterministic: true}.Marshal(&evalv1.EventStreamResponse{Type: e.typ, Data: e.data})
	})
	return e.pb
}

// events are the events of every stream: the fixed ones, and the
// configuration_change of each change as a selector sees it, worked out once for
// all the streams that share the selector and the snapshot they last saw (with
// 1,000 streams the diff of a 1,000-flag snapshot would otherwise run 1,000 times).
type events struct {
	ready, keepAlive, shutdown *streamEvent

	mu  sync.Mutex
	gen uint64                   // the newest snapshot changes were asked for
	m   map[changeKey]*changeRun // of that snapshot
}

type changeKey struct {
	prev uint64
	sel  store.Selector
}

type changeRun struct {
	once sync.Once
	ev   *streamEvent // nil: nothing the selector sees changed
}

// maxChangeRuns bounds the diffs kept per snapshot (one per selector and previous
// snapshot in use).
const maxChangeRuns = 1024

func newEvents() *events {
	return &events{
		ready:     &streamEvent{typ: eventProviderReady, data: &structpb.Struct{}},
		keepAlive: &streamEvent{typ: eventKeepAlive}, // flagd sends keep_alive without data
		shutdown:  &streamEvent{typ: eventProviderShutdown, data: &structpb.Struct{}},
	}
}

// changes is the configuration_change from prev to cur for sel, or nil when sel
// sees no change.
func (e *events) changes(prev, cur *store.Snapshot, sel store.Selector) *streamEvent {
	k := changeKey{prev.Generation, sel}
	e.mu.Lock()
	if cur.Generation > e.gen || e.m == nil {
		e.gen, e.m = cur.Generation, map[changeKey]*changeRun{}
	}
	var run *changeRun
	if cur.Generation == e.gen {
		if run = e.m[k]; run == nil && len(e.m) < maxChangeRuns {
			run = &changeRun{}
			e.m[k] = run
		}
	}
	e.mu.Unlock()
	if run == nil { // an older snapshot, or too many selectors: not shared
		run = &changeRun{}
	}
	run.once.Do(func() {
		if c := cur.Changes(prev, sel); len(c) > 0 {
			run.ev = &streamEvent{typ: eventConfigChange, data: changeData(c)}
		}
	})
	return run.ev
}
