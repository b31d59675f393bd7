package evaluation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// eventStream runs one EventStream: provider_ready first, then a
// configuration_change for every new snapshot that changes what the stream's
// selector sees, keep_alive after KeepAlive without another event, and
// provider_shutdown when the service shuts down. withDeadline applies
// StreamDeadline (v1 and v2; schema.v1 ignores it, as in flagd).
func (s *Service) eventStream(ctx context.Context, selector string, withDeadline bool, send func(typ string, data *structpb.Struct) error) error {
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

	if err := send(eventProviderReady, &structpb.Struct{}); err != nil {
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
			_ = send(eventProviderShutdown, &structpb.Struct{})
			return nil
		case <-wake:
			cur := s.st.Current()
			changes := cur.Changes(prev, sel)
			prev = cur
			if len(changes) == 0 {
				continue
			}
			if err := send(eventConfigChange, changeData(changes)); err != nil {
				return err
			}
			idle.Reset(s.keepAlive)
		case <-idle.C:
			if err := send(eventKeepAlive, nil); err != nil { // flagd sends keep_alive without data
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
