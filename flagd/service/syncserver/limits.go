package syncserver

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/tap"
)

// errRequestTimeout ends an RPC whose request message did not arrive in time.
var errRequestTimeout = errors.New("request message not received in time")

// requestDeadline bounds the wait for an RPC's request message: grpc-go starts a
// handler (a goroutine, a stream slot) as soon as an RPC's headers arrive and has
// no deadline of its own for the message that follows, so a client sending headers
// only could hold goroutines forever. The tap handle, which runs before the stream
// is set up, gives each RPC a context that a timer cancels; the stats handler stops
// the timer when the request message arrives (or the RPC ends). Long-lived
// SyncFlags streams are not affected once their request is in.
type requestDeadline struct{ timeout time.Duration }

type pendingKey struct{}

// tap is the grpc.InTapHandle.
func (d requestDeadline) tap(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(d.timeout, func() { cancel(errRequestTimeout) })
	return context.WithValue(ctx, pendingKey{}, timer), nil
}

// TagRPC implements stats.Handler.
func (requestDeadline) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

// HandleRPC implements stats.Handler: the request message, or the end of the RPC,
// stops the timer.
func (requestDeadline) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.InPayload, *stats.End:
		if t, ok := ctx.Value(pendingKey{}).(*time.Timer); ok {
			t.Stop()
		}
	}
}

// TagConn implements stats.Handler.
func (requestDeadline) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

// HandleConn implements stats.Handler.
func (requestDeadline) HandleConn(context.Context, stats.ConnStats) {}
