package syncserver

import (
	"testing"

	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// TestResponseEncodedOnce: the streams of a selector share one payload of a
// snapshot and one encoding of its SyncFlagsResponse, which decodes to the message
// the handler used to build per stream.
func TestResponseEncodedOnce(t *testing.T) {
	st := readyStore(t)
	srv := New(Options{Store: st, Log: zerolog.Nop(), Enricher: &service.Enricher{Static: map[string]string{"env": "prod"}}})
	snap, sel := st.Current(), store.Selector{}
	a, b := srv.payload(snap, sel), srv.payload(snap, sel)
	if a != b {
		t.Fatal("two streams of one selector got two payloads of one snapshot")
	}
	ea, err := a.encoded(srv.syncContext)
	if err != nil {
		t.Fatal(err)
	}
	eb, _ := b.encoded(srv.syncContext)
	if ea != eb {
		t.Fatal("the response was encoded twice")
	}
	data, err := (protolimit.GRPCCodec{}).Marshal(ea)
	if err != nil {
		t.Fatal(err)
	}
	var got syncv1.SyncFlagsResponse
	if err := proto.Unmarshal(data.Materialize(), &got); err != nil {
		t.Fatal(err)
	}
	sc, _ := structpb.NewStruct(map[string]any{"env": "prod"})
	want := &syncv1.SyncFlagsResponse{FlagConfiguration: string(snap.SyncPayload(sel)), SyncContext: sc}
	if !proto.Equal(want, &got) {
		t.Errorf("encoded response %v, want %v", &got, want)
	}
	if other := srv.payload(snap, store.Selector{Kind: store.SelectFlagSetID, Value: "x"}); other == a {
		t.Error("another selector shares the payload")
	}
}
