package syncserver

import (
	"context"
	"strings"
	"testing"

	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
)

// TestSpans: each RPC is a server span of the flagd.sync tracer, named as otelgrpc
// names it, child of the caller's traceparent; the selector and provider id are
// not recorded.
func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := start(t, Options{Store: readyStore(t), Tracing: tracing.New(tp, nil)}, startConfig{})
	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(testCtx(t), "traceparent", "00-"+traceID+"-"+parent+"-01", "flagd-selector", "flagSetId=set-a")

	if _, err := h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{ProviderId: "provider-marker"}); err != nil {
		t.Fatal(err)
	}
	streamCtx, cancel := context.WithCancel(ctx)
	stream, err := h.client.SyncFlags(streamCtx, &syncv1.SyncFlagsRequest{ProviderId: "provider-marker"})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, stream)
	cancel()
	noHeader := metadata.AppendToOutgoingContext(testCtx(t), "traceparent", "00-"+traceID+"-"+parent+"-01")
	if _, err := h.client.FetchAllFlags(noHeader, &syncv1.FetchAllFlagsRequest{Selector: "bad=1"}); err == nil {
		t.Fatal("a bad selector was accepted")
	}
	eventually(t, "three spans", func() bool { return len(rec.Ended()) == 3 })

	type view struct {
		Name, Scope, Kind, TraceID, Parent, Status string
		Attributes                                 map[string]string
	}
	got := map[string]view{}
	for _, s := range rec.Ended() {
		v := view{Name: s.Name(), Scope: s.InstrumentationScope().Name, Kind: s.SpanKind().String(),
			TraceID: s.SpanContext().TraceID().String(), Parent: s.Parent().SpanID().String(),
			Status: s.Status().Code.String(), Attributes: map[string]string{}}
		for _, kv := range s.Attributes() {
			v.Attributes[string(kv.Key)] = kv.Value.String()
			if v := kv.Value.String(); strings.Contains(v, "marker") || strings.Contains(v, "set-a") || strings.Contains(v, "bad=1") {
				t.Errorf("span %s records request data: %s=%s", s.Name(), kv.Key, kv.Value.String())
			}
		}
		got[v.Name+" "+v.Attributes["rpc.grpc.status_code"]] = v
	}
	rpc := func(method, code string) map[string]string {
		return map[string]string{"rpc.system": "grpc", "rpc.service": "flagd.sync.v1.FlagSyncService", "rpc.method": method, "rpc.grpc.status_code": code}
	}
	want := map[string]view{
		"flagd.sync.v1.FlagSyncService/FetchAllFlags 0": {Name: "flagd.sync.v1.FlagSyncService/FetchAllFlags", Scope: "flagd.sync", Kind: "server",
			TraceID: traceID, Parent: parent, Status: "Unset", Attributes: rpc("FetchAllFlags", "0")},
		// the client went away: Canceled, not a server fault
		"flagd.sync.v1.FlagSyncService/SyncFlags 1": {Name: "flagd.sync.v1.FlagSyncService/SyncFlags", Scope: "flagd.sync", Kind: "server",
			TraceID: traceID, Parent: parent, Status: "Unset", Attributes: rpc("SyncFlags", "1")},
		// a bad selector: InvalidArgument, a client fault
		"flagd.sync.v1.FlagSyncService/FetchAllFlags 3": {Name: "flagd.sync.v1.FlagSyncService/FetchAllFlags", Scope: "flagd.sync", Kind: "server",
			TraceID: traceID, Parent: parent, Status: "Unset", Attributes: rpc("FetchAllFlags", "3")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
