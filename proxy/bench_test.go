package proxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
)

// BenchmarkFanOut measures one FeatureFlag change reaching 1,000 streams, each on a
// connection of its own, over loopback (client and server in this process, without
// caller authentication): one op is one change and every stream receiving it.
// `make proxy-fanout` measures the whole system (API server, tokens, RSS).
func BenchmarkFanOut(b *testing.B) {
	const streams = 1000
	f, src, _ := fakeFlags(b, nil, featureFlag(flagA, "v0"))
	svc := NewService(Options{Flags: f, Log: zerolog.Nop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	go func() { _ = svc.Serve(ctx, ln, syncserver.Options{Log: zerolog.Nop()}) }()
	var received sync.WaitGroup
	for range streams {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		st, err := syncv1grpc.NewFlagSyncServiceClient(conn).SyncFlags(ctx, &syncv1.SyncFlagsRequest{Selector: flagA.Selector()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				msg, err := st.Recv()
				if err != nil {
					return
				}
				if !strings.Contains(msg.GetFlagConfiguration(), `"v0"`) {
					received.Done()
				}
			}
		}()
	}
	b.ResetTimer()
	for i := range b.N {
		received.Add(streams)
		src.Modify(featureFlag(flagA, fmt.Sprintf("v%d", i+1)))
		received.Wait()
	}
}
