package floor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// The fan-out floor: SyncFlags streams (on flagd mode's sync listener, package
// syncserver, with a service that does no work) and EventStreams (on the gRPC
// floor) that send the flag file as it is, and again after every change of it,
// with no store, no parsing and no evaluation: what holding a thousand streams and
// telling each of a change costs the transport, against which flagd mode's
// sync-fanout and eventstream-fanout are measured.

// EventStreamMethod is the streaming method the gRPC floor serves besides GRPCMethod.
const EventStreamMethod = "/flagd.evaluation.v1.Service/EventStream"

// feedState is one version of the flag file: the SyncFlags response carrying it
// (encoded once for every stream) and a channel closed when a newer one replaces it.
type feedState struct {
	doc     []byte
	sync    *protolimit.Encoded
	changed chan struct{}
}

// feed holds the newest version of the flag file.
type feed struct {
	mu    sync.Mutex
	state *feedState
}

// newFeed reads the flag file once.
func newFeed(path string) (*feed, error) {
	f := &feed{}
	if err := f.load(path); err != nil {
		return nil, err
	}
	return f, nil
}

// current is the newest version.
func (f *feed) current() *feedState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// load reads the file and, if it changed, publishes it and wakes every stream.
func (f *feed) load(path string) error {
	doc, err := os.ReadFile(path) // #nosec G304 -- the floor's own -flags-file
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != nil && bytes.Equal(f.state.doc, doc) {
		return nil
	}
	enc, err := protolimit.Encode(&syncv1.SyncFlagsResponse{FlagConfiguration: string(doc)})
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	old := f.state
	f.state = &feedState{doc: doc, sync: enc, changed: make(chan struct{})}
	if old != nil {
		close(old.changed)
	}
	return nil
}

// watch reloads the file whenever its directory reports a change to it (a rename
// over it, as the load harness and the kubelet do, or a write) until ctx ends.
func (f *feed) watch(ctx context.Context, path string, log zerolog.Logger) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if filepath.Clean(ev.Name) != path || !ev.Has(fsnotify.Create|fsnotify.Write) {
				continue
			}
			if err := f.load(path); err != nil {
				log.Warn().Err(err).Msg("reading the flag file")
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			log.Warn().Err(err).Msg("watching the flag file")
		}
	}
}

// stream sends each version of the file with send until the stream or the server
// ends.
func (f *feed) stream(ctx, serverCtx context.Context, send func(*feedState) error) error {
	st := f.current()
	if err := send(st); err != nil {
		return err
	}
	for {
		select {
		case <-st.changed:
			st = f.current()
			if err := send(st); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-serverCtx.Done():
			return serverCtx.Err()
		}
	}
}

// syncFloor is the FlagSyncService of the fan-out floor: SyncFlags sends the file.
type syncFloor struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
	feed *feed
	ctx  context.Context // the server's: streams end with it
}

// SyncFlags sends the flag file, then again after every change.
func (s *syncFloor) SyncFlags(_ *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	return s.feed.stream(stream.Context(), s.ctx, func(st *feedState) error { return stream.SendMsg(st.sync) })
}

// The EventStream floor's two messages, as flagd mode's first two (without the
// changed flags' keys).
var (
	providerReady       = mustMarshal(&evalv1.EventStreamResponse{Type: "provider_ready"})
	configurationChange = mustMarshal(&evalv1.EventStreamResponse{Type: "configuration_change"})
)

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err) // a string field: cannot fail
	}
	return b
}

// eventStreamHandler serves EventStreamMethod: provider_ready, then a
// configuration_change after every change of the file (nothing else without one).
func eventStreamHandler(serverCtx context.Context, f *feed) grpc.StreamHandler {
	return func(_ any, stream grpc.ServerStream) error {
		var req rawMessage
		if err := stream.RecvMsg(&req); err != nil {
			return err
		}
		server.RequestReceived(stream.Context())
		if f == nil {
			if err := stream.SendMsg(&rawMessage{b: providerReady}); err != nil {
				return err
			}
			select {
			case <-stream.Context().Done():
			case <-serverCtx.Done():
			}
			return nil
		}
		first := true
		ready, change := &rawMessage{b: providerReady}, &rawMessage{b: configurationChange}
		return f.stream(stream.Context(), serverCtx, func(*feedState) error {
			if first {
				first = false
				return stream.SendMsg(ready)
			}
			return stream.SendMsg(change)
		})
	}
}
