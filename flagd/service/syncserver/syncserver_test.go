package syncserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// waitFor bounds every wait of these tests; waits poll or block, they never assert timing.
const waitFor = 10 * time.Second

const (
	srcA = "file:a.json"
	srcB = "file:b.json"
)

// docA is flag set "set-a": set metadata merged into flags (flag keys win), a $ref
// inlined into targeting, flags without or with a null defaultVariant.
const docA = `{
  "metadata": {"flagSetId": "set-a", "team": "core", "version": "1"},
  "$evaluators": {"isAdmin": {"==": [{"var": "role"}, "admin"]}},
  "flags": {
    "bool-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"team": "ui", "owner": "x"}},
    "targeted": {"state": "ENABLED", "variants": {"yes": "y", "no": "n"}, "defaultVariant": "no", "targeting": {"if": [{"$ref": "isAdmin"}, "yes", null]}},
    "no-default": {"state": "ENABLED", "variants": {"one": 1, "two": 2}},
    "null-default": {"state": "DISABLED", "variants": {"one": 1}, "defaultVariant": null}
  }
}`

const docB = `{"metadata": {"flagSetId": "set-b"}, "flags": {"other": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a"}}}`

// The sync JSON of each flag of docA and docB.
const (
	setAMeta     = `"metadata": {"flagSetId": "set-a", "team": "core", "version": "1"}`
	wantBoolFlag = `"bool-flag": {"state": "ENABLED", "defaultVariant": "on", "variants": {"on": true, "off": false}, "source": "file:a.json", "metadata": {"flagSetId": "set-a", "team": "ui", "owner": "x", "version": "1"}}`
	wantTargeted = `"targeted": {"state": "ENABLED", "defaultVariant": "no", "variants": {"yes": "y", "no": "n"}, "targeting": {"if": [{"==": [{"var": "role"}, "admin"]}, "yes", null]}, "source": "file:a.json", ` + setAMeta + `}`
	wantNoDef    = `"no-default": {"state": "ENABLED", "defaultVariant": "", "variants": {"one": 1, "two": 2}, "source": "file:a.json", ` + setAMeta + `}`
	wantNullDef  = `"null-default": {"state": "DISABLED", "defaultVariant": "", "variants": {"one": 1}, "source": "file:a.json", ` + setAMeta + `}`
	wantOther    = `"other": {"state": "ENABLED", "defaultVariant": "a", "variants": {"a": "A", "b": "B"}, "source": "file:b.json", "metadata": {"flagSetId": "set-b"}}`
)

// payload builds a flag_configuration from flag members.
func payload(members ...string) string { return `{"flags": {` + strings.Join(members, ",") + `}}` }

func newStore(t *testing.T, sources ...string) *store.Store {
	t.Helper()
	st, err := store.New(sources, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func apply(t *testing.T, st *store.Store, source, doc string) {
	t.Helper()
	if err := st.Apply(source, []byte(doc)); err != nil {
		t.Fatalf("apply %s: %v", source, err)
	}
}

// readyStore holds docA and docB, both applied.
func readyStore(t *testing.T) *store.Store {
	t.Helper()
	st := newStore(t, srcA, srcB)
	apply(t, st, srcA, docA)
	apply(t, st, srcB, docB)
	return st
}

type harness struct {
	target string // the listener, for clients of their own
	srv    *Server
	reg    *prometheus.Registry
	client syncv1grpc.FlagSyncServiceClient
	stop   func() error // shuts the server down and returns Serve's result
}

type startConfig struct {
	network   string        // "tcp" (127.0.0.1:0, default) or "unix"
	serverTLS *tls.Config   // server side; the client trusts clientTLS
	clientTLS *tls.Config   // nil: plaintext client
	readyWait time.Duration // 0: the default 5 s
	wakeHook  func(sent bool)
}

// start serves opts on a real listener and connects a real grpc-go client.
func start(t *testing.T, opts Options, cfg startConfig) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Metrics = m
	opts.Log = zerolog.Nop()
	opts.TLS = cfg.serverTLS

	var ln net.Listener
	var target string
	switch cfg.network {
	case "unix":
		dir, err := os.MkdirTemp("", "syncsrv") //nolint:usetesting // short: unix socket paths are limited to ~100 bytes, t.TempDir's holds the test name
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		path := filepath.Join(dir, "sync.sock")
		ln, err = net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		target = "unix://" + path
	default:
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		target = ln.Addr().String()
	}

	srv := New(opts)
	if cfg.readyWait > 0 {
		srv.readyWait = cfg.readyWait
	}
	srv.wakeHook = cfg.wakeHook
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()

	creds := insecure.NewCredentials()
	if cfg.clientTLS != nil {
		creds = credentials.NewTLS(cfg.clientTLS)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	var stopped bool
	var serveErr error
	stop := func() error {
		if stopped {
			return serveErr
		}
		stopped = true
		cancel()
		select {
		case serveErr = <-errc:
		case <-time.After(waitFor):
			serveErr = errors.New("Serve did not return after shutdown")
		}
		return serveErr
	}
	t.Cleanup(func() {
		_ = conn.Close()
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &harness{target: target, srv: srv, reg: reg, client: syncv1grpc.NewFlagSyncServiceClient(conn), stop: stop}
}

// testCtx bounds a test's RPCs, so that a missing message fails instead of hanging.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func withSelectorHeader(ctx context.Context, header *string) context.Context {
	if header == nil {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "Flagd-Selector", *header)
}

// jsonDiff compares two JSON documents by value.
func jsonDiff(t *testing.T, want, got string) string {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is not JSON: %v\n%s", err, want)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("got is not JSON: %v\n%s", err, got)
	}
	return cmp.Diff(w, g)
}

func recv(t *testing.T, stream grpc.ServerStreamingClient[syncv1.SyncFlagsResponse]) *syncv1.SyncFlagsResponse {
	t.Helper()
	msg, err := stream.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	return msg
}

// wantStatus checks an RPC error's code and message.
func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v is not a gRPC status", err)
	}
	if diff := cmp.Diff([2]string{code.String(), msg}, [2]string{st.Code().String(), st.Message()}); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

// streamMetrics reads the sync stream metrics: open streams and ended streams by reason.
func streamMetrics(t *testing.T, reg *prometheus.Registry) (active float64, ended map[string]uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ended = map[string]uint64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "feature_flag_flagd_sync_active_streams":
				active += m.GetGauge().GetValue()
			case "feature_flag_flagd_sync_stream_duration_seconds":
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" {
						ended[l.GetValue()] += m.GetHistogram().GetSampleCount()
					}
				}
			}
		}
	}
	return active, ended
}

// eventually polls cond until it holds, failing after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFirstPayloadAndFetchAllFlags(t *testing.T) {
	all := payload(wantBoolFlag, wantNoDef, wantNullDef, wantOther, wantTargeted)
	setA := payload(wantBoolFlag, wantNoDef, wantNullDef, wantTargeted)
	setB := payload(wantOther)
	cases := []struct {
		name   string
		header *string // Flagd-Selector metadata; nil: not sent
		body   string
		want   string
	}{
		{name: "no selector", want: all},
		{name: "header flag set", header: new("flagSetId=set-a"), want: setA},
		{name: "body flag set", body: "flagSetId=set-b", want: setB},
		{name: "header wins over body", header: new("flagSetId=set-b"), body: "flagSetId=set-a", want: setB},
		{name: "empty header still wins over body", header: new(""), body: "flagSetId=set-a", want: all},
		{name: "source", header: new("source=file:b.json"), want: setB},
		{name: "legacy bare source in body", body: "file:a.json", want: setA},
		{name: "flags without flag set", header: new("flagSetId="), want: payload()},
		{name: "unknown flag set", body: "flagSetId=nope", want: payload()},
	}
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			h := start(t, Options{Store: readyStore(t)}, startConfig{network: network})
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					ctx := withSelectorHeader(testCtx(t), tc.header)
					stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{ProviderId: "test", Selector: tc.body})
					if err != nil {
						t.Fatal(err)
					}
					msg := recv(t, stream)
					if diff := jsonDiff(t, tc.want, msg.GetFlagConfiguration()); diff != "" {
						t.Errorf("SyncFlags first payload (-want +got):\n%s", diff)
					}
					if !msg.HasSyncContext() || len(msg.GetSyncContext().GetFields()) != 0 {
						t.Errorf("sync_context = %v, want present and empty (flagd always sends it)", msg.GetSyncContext())
					}
					fetched, err := h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{ProviderId: "test", Selector: tc.body})
					if err != nil {
						t.Fatal(err)
					}
					if diff := jsonDiff(t, tc.want, fetched.GetFlagConfiguration()); diff != "" {
						t.Errorf("FetchAllFlags (-want +got):\n%s", diff)
					}
				})
			}
		})
	}
}

func TestInvalidSelector(t *testing.T) {
	const msg = `invalid selector key "foo", valid keys: "flagSetId", "source"`
	cases := []struct {
		name   string
		header *string
		body   string
	}{
		{name: "header", header: new("foo=bar")},
		{name: "body", body: "foo=bar"},
		{name: "invalid header over valid body", header: new("foo=bar"), body: "flagSetId=set-a"},
	}
	h := start(t, Options{Store: readyStore(t)}, startConfig{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := withSelectorHeader(testCtx(t), tc.header)
			stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{Selector: tc.body})
			if err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			wantStatus(t, err, codes.InvalidArgument, msg)
			_, err = h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{Selector: tc.body})
			wantStatus(t, err, codes.InvalidArgument, msg)
		})
	}
	_, ended := streamMetrics(t, h.reg)
	if diff := cmp.Diff(map[string]uint64{reasonError: uint64(len(cases))}, ended); diff != "" {
		t.Errorf("ended streams by reason (-want +got):\n%s", diff)
	}
}

// TestUpdates applies changes in order; a step whose want is "" must send nothing:
// the test waits until the stream has handled that change, and the next sending
// step proves nothing was sent, as its payload must be the next message.
func TestUpdates(t *testing.T) {
	docA2 := strings.Replace(docA, `"defaultVariant": "on"`, `"defaultVariant": "off"`, 1)
	wantBoolOff := strings.Replace(wantBoolFlag, `"defaultVariant": "on"`, `"defaultVariant": "off"`, 1)
	docB2 := strings.Replace(docB, `"defaultVariant": "a"`, `"defaultVariant": "b"`, 1)
	wantOtherB := strings.Replace(wantOther, `"defaultVariant": "a"`, `"defaultVariant": "b"`, 1)
	docA3 := `{"metadata": {"flagSetId": "set-a", "team": "core", "version": "1"}, "flags": {"fresh": {"state": "ENABLED", "variants": {"x": 1}, "defaultVariant": "x"}}}`
	wantFresh := `"fresh": {"state": "ENABLED", "defaultVariant": "x", "variants": {"x": 1}, "source": "file:a.json", ` + setAMeta + `}`

	type step struct {
		source, doc string
		want        string // "" = nothing may be sent
	}
	cases := []struct {
		name     string
		selector string
		first    string
		steps    []step
	}{
		{
			name: "flag set selection ignores other flag sets", selector: "flagSetId=set-a",
			first: payload(wantBoolFlag, wantNoDef, wantNullDef, wantTargeted),
			steps: []step{
				{source: srcB, doc: docB2},
				{source: srcA, doc: docA2, want: payload(wantBoolOff, wantNoDef, wantNullDef, wantTargeted)},
				{source: srcA, doc: docA2}, // same content again: no change
				{source: srcA, doc: docA3, want: payload(wantFresh)},
			},
		},
		{
			name: "source selection", selector: "source=file:b.json",
			first: payload(wantOther),
			steps: []step{
				{source: srcA, doc: docA2},
				{source: srcB, doc: docB2, want: payload(wantOtherB)},
			},
		},
		{
			name:  "no selection sees writes, updates and deletes",
			first: payload(wantBoolFlag, wantNoDef, wantNullDef, wantOther, wantTargeted),
			steps: []step{
				{source: srcB, doc: docB2, want: payload(wantBoolFlag, wantNoDef, wantNullDef, wantOtherB, wantTargeted)},
				{source: srcA, doc: docA3, want: payload(wantFresh, wantOtherB)},
				{source: srcB, doc: `{"flags": {}}`, want: payload(wantFresh)},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := readyStore(t)
			handled := make(chan bool, 1)
			h := start(t, Options{Store: st}, startConfig{wakeHook: func(sent bool) { handled <- sent }})
			stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{Selector: tc.selector})
			if err != nil {
				t.Fatal(err)
			}
			if diff := jsonDiff(t, tc.first, recv(t, stream).GetFlagConfiguration()); diff != "" {
				t.Fatalf("first payload (-want +got):\n%s", diff)
			}
			for i, s := range tc.steps {
				apply(t, st, s.source, s.doc)
				if s.want == "" {
					select {
					case sent := <-handled:
						if sent {
							t.Fatalf("step %d: a message was sent for a change outside the selection", i)
						}
					case <-time.After(waitFor):
						t.Fatalf("step %d: the stream did not handle the change", i)
					}
					continue
				}
				if diff := jsonDiff(t, s.want, recv(t, stream).GetFlagConfiguration()); diff != "" {
					t.Fatalf("step %d: payload (-want +got):\n%s", i, diff)
				}
				if sent := <-handled; !sent {
					t.Fatalf("step %d: the stream reported no message sent", i)
				}
			}
		})
	}
}

func TestStaticContextAndMetadata(t *testing.T) {
	static := map[string]string{"env": "prod", "region": "eu-1"}
	wantStatic := map[string]any{"env": "prod", "region": "eu-1"}
	cases := []struct {
		name         string
		enricher     *service.Enricher
		disable      bool
		wantContext  map[string]any
		wantMetadata map[string]any
		wantErr      codes.Code
	}{
		{name: "static values", enricher: &service.Enricher{Static: static}, wantContext: wantStatic, wantMetadata: wantStatic},
		{name: "none", wantContext: map[string]any{}, wantMetadata: map[string]any{}},
		{name: "metadata disabled", enricher: &service.Enricher{Static: static}, disable: true, wantContext: wantStatic, wantErr: codes.Unimplemented},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := readyStore(t)
			h := start(t, Options{Store: st, Enricher: tc.enricher, DisableMetadata: tc.disable}, startConfig{})
			ctx := testCtx(t)
			stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			first := recv(t, stream)
			apply(t, st, srcB, `{"flags": {}}`)
			update := recv(t, stream)
			for i, msg := range []*syncv1.SyncFlagsResponse{first, update} {
				if !msg.HasSyncContext() {
					t.Fatalf("message %d has no sync_context", i)
				}
				if diff := cmp.Diff(tc.wantContext, msg.GetSyncContext().AsMap()); diff != "" {
					t.Errorf("message %d sync_context (-want +got):\n%s", i, diff)
				}
			}
			md, err := h.client.GetMetadata(ctx, &syncv1.GetMetadataRequest{})
			if tc.wantErr != codes.OK {
				wantStatus(t, err, tc.wantErr, "metadata endpoint disabled")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantMetadata, md.GetMetadata().AsMap()); diff != "" {
				t.Errorf("GetMetadata (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStreamEnds(t *testing.T) {
	cases := []struct {
		name       string
		opts       Options
		end        func(t *testing.T, h *harness, cancelClient context.CancelFunc) // nil: wait for the server
		wantCode   codes.Code
		wantMsg    string
		wantReason string
	}{
		{
			name:     "server-side deadline",
			opts:     Options{StreamDeadline: 20 * time.Millisecond},
			wantCode: codes.DeadlineExceeded, wantMsg: "stream closed due to server-side timeout",
			wantReason: reasonDeadlineExceeded,
		},
		{
			name: "graceful shutdown",
			end: func(t *testing.T, h *harness, _ context.CancelFunc) { //nolint:thelper // a step of this test case, not a helper: its failures point here
				if err := h.stop(); err != nil {
					t.Errorf("Serve returned %v after a clean shutdown, want nil", err)
				}
			},
			wantCode: codes.Unavailable, wantMsg: "server shutting down",
			wantReason: reasonNormalClose,
		},
		{
			name:       "client disconnect",
			end:        func(_ *testing.T, _ *harness, cancelClient context.CancelFunc) { cancelClient() },
			wantCode:   codes.Canceled,
			wantMsg:    "context canceled",
			wantReason: reasonClientDisconnect,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Store = readyStore(t)
			h := start(t, opts, startConfig{})
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			var streams []grpc.ServerStreamingClient[syncv1.SyncFlagsResponse]
			for range 2 {
				stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{})
				if err != nil {
					t.Fatal(err)
				}
				recv(t, stream)
				streams = append(streams, stream)
			}
			if tc.end != nil {
				tc.end(t, h, cancel)
			}
			for _, stream := range streams {
				_, err := stream.Recv()
				wantStatus(t, err, tc.wantCode, tc.wantMsg)
			}
			eventually(t, "both streams recorded as ended", func() bool {
				active, ended := streamMetrics(t, h.reg)
				return active == 0 && ended[tc.wantReason] == 2 && len(ended) == 1
			})
		})
	}
}

func TestShutdownReturnsNilAndStopsAccepting(t *testing.T) {
	h := start(t, Options{Store: readyStore(t)}, startConfig{})
	if _, err := h.client.FetchAllFlags(testCtx(t), &syncv1.FetchAllFlagsRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := h.stop(); err != nil {
		t.Fatalf("Serve returned %v after a clean shutdown, want nil", err)
	}
	_, err := h.client.FetchAllFlags(testCtx(t), &syncv1.FetchAllFlagsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("FetchAllFlags after shutdown: %v, want Unavailable", err)
	}
}

// TestReadinessGate: the first message waits for every source's first payload, or
// for the start-up wait, after which it carries what is loaded.
func TestReadinessGate(t *testing.T) {
	t.Run("waits for every source", func(t *testing.T) {
		st := newStore(t, srcA, srcB)
		apply(t, st, srcA, docA)
		h := start(t, Options{Store: st}, startConfig{readyWait: time.Hour})
		stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the stream to be open", func() bool {
			active, _ := streamMetrics(t, h.reg)
			return active == 1
		})
		apply(t, st, srcB, docB)
		want := payload(wantBoolFlag, wantNoDef, wantNullDef, wantOther, wantTargeted)
		if diff := jsonDiff(t, want, recv(t, stream).GetFlagConfiguration()); diff != "" {
			t.Errorf("first payload (-want +got):\n%s", diff)
		}
	})
	t.Run("start-up wait passes", func(t *testing.T) {
		st := newStore(t, srcA, srcB)
		apply(t, st, srcA, docA)
		h := start(t, Options{Store: st}, startConfig{readyWait: time.Millisecond})
		want := payload(wantBoolFlag, wantNoDef, wantNullDef, wantTargeted)
		stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := jsonDiff(t, want, recv(t, stream).GetFlagConfiguration()); diff != "" {
			t.Errorf("first payload (-want +got):\n%s", diff)
		}
		fetched, err := h.client.FetchAllFlags(testCtx(t), &syncv1.FetchAllFlagsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := jsonDiff(t, want, fetched.GetFlagConfiguration()); diff != "" {
			t.Errorf("FetchAllFlags (-want +got):\n%s", diff)
		}
		// A late source still reaches the open stream.
		apply(t, st, srcB, docB)
		want = payload(wantBoolFlag, wantNoDef, wantNullDef, wantOther, wantTargeted)
		if diff := jsonDiff(t, want, recv(t, stream).GetFlagConfiguration()); diff != "" {
			t.Errorf("payload after the late source (-want +got):\n%s", diff)
		}
	})
	t.Run("no sources is ready at once", func(t *testing.T) {
		h := start(t, Options{Store: newStore(t)}, startConfig{readyWait: time.Hour})
		stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := jsonDiff(t, payload(), recv(t, stream).GetFlagConfiguration()); diff != "" {
			t.Errorf("first payload (-want +got):\n%s", diff)
		}
	})
}

func TestMaxStreams(t *testing.T) {
	h := start(t, Options{Store: readyStore(t), MaxStreams: 1}, startConfig{})
	ctx1, cancel1 := context.WithCancel(testCtx(t))
	first, err := h.client.SyncFlags(ctx1, &syncv1.SyncFlagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, first)
	second, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = second.Recv()
	wantStatus(t, err, codes.ResourceExhausted, "too many sync streams (limit 1)")

	cancel1()
	eventually(t, "a stream to be accepted after the first one closed", func() bool {
		stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
		if err != nil {
			return false
		}
		_, err = stream.Recv()
		return err == nil
	})
}

func TestTLS(t *testing.T) {
	serverTLS, clientTLS := testCertificates(t)
	h := start(t, Options{Store: readyStore(t)}, startConfig{serverTLS: serverTLS, clientTLS: clientTLS})
	stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{ProviderId: "tls-test", Selector: "flagSetId=set-b"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := jsonDiff(t, payload(wantOther), recv(t, stream).GetFlagConfiguration()); diff != "" {
		t.Errorf("payload over TLS (-want +got):\n%s", diff)
	}

	// A plaintext client cannot talk to the TLS listener.
	plain := start(t, Options{Store: readyStore(t)}, startConfig{serverTLS: serverTLS})
	_, err = plain.client.FetchAllFlags(testCtx(t), &syncv1.FetchAllFlagsRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext client against TLS: %v, want Unavailable", err)
	}
}

// testCertificates makes a self-signed certificate for 127.0.0.1 and the matching
// server and client configurations.
func testCertificates(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "flagpole sync test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	client = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

func TestLabelLimiter(t *testing.T) {
	l := newLabelLimiter()
	for i := range maxSeries - 2 {
		l.labels("flagSetId=a", fmt.Sprintf("p%d", i))
	}
	cases := []struct {
		name, selector, provider string
		want                     [2]string
	}{
		{name: "known pair", selector: "flagSetId=a", provider: "p0", want: [2]string{"flagSetId=a", "p0"}},
		{name: "invalid UTF-8 is repaired", selector: "x", provider: "a\xffb", want: [2]string{"x", "a\uFFFDb"}},
		{name: "long values are cut", selector: strings.Repeat("s", 300), provider: "p1", want: [2]string{strings.Repeat("s", maxLabelLen), "p1"}},
		{name: "a new pair of known values beyond the bound", selector: "flagSetId=a", provider: "new", want: [2]string{otherLabel, otherLabel}},
		{name: "known pairs stay after the bound", selector: "flagSetId=a", provider: "p7", want: [2]string{"flagSetId=a", "p7"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sel, prov := l.labels(tc.selector, tc.provider)
			if got := [2]string{sel, prov}; got != tc.want {
				t.Errorf("labels(%q, %q) = %q, want %q", tc.selector, tc.provider, got, tc.want)
			}
		})
	}
}

// TestPayloadCache: payloads are cached for the newest snapshot only; an older
// snapshot, read by a stream before a newer one was cached, still renders its own.
func TestPayloadCache(t *testing.T) {
	st := readyStore(t)
	srv := New(Options{Store: st, Log: zerolog.Nop()})
	old := st.Current()
	apply(t, st, srcB, `{"flags": {}}`)
	cur := st.Current()
	sel := store.Selector{}
	cases := []struct {
		name string
		snap *store.Snapshot
	}{
		{name: "newest", snap: cur},
		{name: "older after newer", snap: old},
		{name: "newest from cache", snap: cur},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := jsonDiff(t, string(tc.snap.SyncPayload(sel)), srv.payload(tc.snap, sel).config); diff != "" {
				t.Errorf("payload (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKeepAliveEnforcement speaks raw HTTP/2 to check that the keepalive options reach
// grpc-go's enforcement: a client pinging more often than allowed gets GOAWAY
// ENHANCE_YOUR_CALM "too_many_pings" (grpc-go tolerates two early pings).
func TestKeepAliveEnforcement(t *testing.T) {
	cases := []struct {
		name          string
		minTime       time.Duration
		withoutStream bool
		wantGoAway    bool
	}{
		{name: "pings faster than the minimum time", minTime: time.Hour, withoutStream: true, wantGoAway: true},
		{name: "pings without a stream when not permitted", minTime: time.Nanosecond, withoutStream: false, wantGoAway: true},
		{name: "pings without a stream when permitted", minTime: time.Nanosecond, withoutStream: true, wantGoAway: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := New(Options{Store: readyStore(t), Log: zerolog.Nop(), KeepAliveMinTime: tc.minTime, KeepAlivePermitWithoutStream: tc.withoutStream})
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-errc; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			got := pingFlood(t, ln.Addr().String(), 6)
			if got != tc.wantGoAway {
				t.Errorf("GOAWAY too_many_pings = %v, want %v", got, tc.wantGoAway)
			}
		})
	}
}

// pingFlood opens an HTTP/2 connection, sends n pings back to back and reports
// whether the server answered with GOAWAY "too_many_pings" before acknowledging them all.
func pingFlood(t *testing.T, addr string, n int) bool {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := fr.WritePing(false, [8]byte{byte(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	acks := 0
	for acks < n {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames after %d ping acks: %v", acks, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data[0] != 0 {
				acks++
			}
		case *http2.GoAwayFrame:
			if f.ErrCode == http2.ErrCodeEnhanceYourCalm && string(f.DebugData()) == "too_many_pings" {
				return true
			}
			t.Fatalf("unexpected GOAWAY %v %q", f.ErrCode, f.DebugData())
		}
	}
	return false
}

// TestPanicRecovery: a panicking handler answers Internal instead of crashing.
func TestPanicRecovery(t *testing.T) {
	srv := New(Options{Store: readyStore(t), Log: zerolog.Nop()})
	boom := func() { panic("boom") }
	cases := []struct {
		name string
		call func() error
	}{
		{name: "unary", call: func() error {
			_, err := srv.recoverUnary(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/x/Unary"},
				func(context.Context, any) (any, error) { boom(); return nil, nil })
			return err
		}},
		{name: "stream", call: func() error {
			return srv.recoverStream(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x/Stream"},
				func(any, grpc.ServerStream) error { boom(); return nil })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, tc.call(), codes.Internal, "internal error")
		})
	}
}

// rawCodec sends and receives messages as raw bytes, for requests no generated
// client would send.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// TestDeepRequestRefused: a request nesting messages deeper than protolimit allows
// (here unknown groups, which protobuf-go skips recursively up to 10,000 levels) is
// refused with InvalidArgument before it is decoded, on unary and streaming RPCs.
func TestDeepRequestRefused(t *testing.T) {
	h := start(t, Options{Store: readyStore(t)}, startConfig{})
	conn, err := grpc.NewClient(h.target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	groups := func(n int) []byte {
		var b []byte
		for range n {
			b = protowire.AppendTag(b, 9, protowire.StartGroupType)
		}
		for range n {
			b = protowire.AppendTag(b, 9, protowire.EndGroupType)
		}
		return b
	}
	for _, method := range []string{syncv1grpc.FlagSyncService_FetchAllFlags_FullMethodName, syncv1grpc.FlagSyncService_GetMetadata_FullMethodName} {
		req, resp := groups(10000), []byte(nil)
		err := conn.Invoke(testCtx(t), method, &req, &resp)
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "nested too deeply") {
			t.Errorf("%s with 10,000 nested groups: %v, want InvalidArgument saying it is nested too deeply", method, err)
		}
		req = groups(3)
		if err := conn.Invoke(testCtx(t), method, &req, &resp); err != nil {
			t.Errorf("%s with 3 nested unknown groups: %v", method, err)
		}
	}
	desc := &grpc.StreamDesc{ServerStreams: true}
	stream, err := conn.NewStream(testCtx(t), desc, syncv1grpc.FlagSyncService_SyncFlags_FullMethodName)
	if err != nil {
		t.Fatal(err)
	}
	req := groups(10000)
	if err := stream.SendMsg(&req); err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	var resp []byte
	err = stream.RecvMsg(&resp)
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "nested too deeply") {
		t.Errorf("SyncFlags with 10,000 nested groups: %v, want InvalidArgument saying it is nested too deeply", err)
	}
}

// TestSourceCredentialsNotServed: a source named by a URL with user info and a
// query (an http source with basic auth or a token parameter) is served with its
// name redacted, to any caller of the unauthenticated sync port: in FetchAllFlags and
// SyncFlags payloads and in the sync metrics' selector label, including a selector
// that names the source verbatim (which still selects it).
func TestSourceCredentialsNotServed(t *testing.T) {
	const name = "https://probe:PASSWORD@flags.example.com/f.json?token=TOKEN"
	st := newStore(t, name)
	apply(t, st, name, docB)
	h := start(t, Options{Store: st}, startConfig{})
	ctx := withSelectorHeader(testCtx(t), new("source="+name))
	all, err := h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{ProviderId: "p"})
	if err != nil {
		t.Fatal(err)
	}
	first := recv(t, stream)
	bad := withSelectorHeader(testCtx(t), new("bogus=https://probe:PASSWORD@h/?token=TOKEN"))
	if s, err := h.client.SyncFlags(bad, &syncv1.SyncFlagsRequest{ProviderId: "p"}); err == nil {
		_, _ = s.Recv()
	}
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var labels strings.Builder
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels.WriteString(l.GetValue() + "\n")
			}
		}
	}
	for where, text := range map[string]string{"FetchAllFlags": all.GetFlagConfiguration(),
		"SyncFlags": first.GetFlagConfiguration(), "metric labels": labels.String()} {
		if strings.Contains(text, "PASSWORD") || strings.Contains(text, "TOKEN") {
			t.Errorf("%s carries the source's credentials:\n%s", where, text)
		}
		if !strings.Contains(text, "https://redacted@flags.example.com/f.json?redacted") {
			t.Errorf("%s does not name the source redacted:\n%s", where, text)
		}
	}
}

// TestSyncMetricSeriesBounded: clients choose provider ids and selectors freely, so
// the sync metrics bound the number of (selector, provider_id) series, not only the
// values per label (256 × 256 values made 900k series): streams beyond the bound
// are counted under _other/_other, and known pairs keep their own series.
func TestSyncMetricSeriesBounded(t *testing.T) {
	h := start(t, Options{Store: readyStore(t)}, startConfig{})
	const side = 17 // 289 pairs: more than the bound, fewer values per label than 256
	for p := range side {
		for s := range side {
			ctx, cancel := context.WithCancel(withSelectorHeader(testCtx(t), new(fmt.Sprintf("flagSetId=set-%d", s))))
			stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{ProviderId: fmt.Sprintf("provider-%d", p)})
			if err != nil {
				t.Fatal(err)
			}
			recv(t, stream)
			cancel()
		}
	}
	// a pair seen before the bound was reached keeps its series
	ctx, cancel := context.WithCancel(withSelectorHeader(testCtx(t), new("flagSetId=set-0")))
	defer cancel()
	stream, err := h.client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{ProviderId: "provider-0"})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, stream)
	pairs := map[[2]string]float64{}
	eventually(t, "every stream's end to be recorded", func() bool {
		families, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		clear(pairs)
		var ended uint64
		for _, f := range families {
			for _, m := range f.GetMetric() {
				var pair [2]string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "selector":
						pair[0] = l.GetValue()
					case "provider_id":
						pair[1] = l.GetValue()
					}
				}
				switch f.GetName() {
				case "feature_flag_flagd_sync_active_streams":
					pairs[pair] += m.GetGauge().GetValue()
				case "feature_flag_flagd_sync_stream_duration_seconds":
					ended += m.GetHistogram().GetSampleCount()
					if _, ok := pairs[pair]; !ok {
						pairs[pair] = 0
					}
				}
			}
		}
		return ended == side*side
	})
	if len(pairs) > maxSeries+1 {
		t.Errorf("%d (selector, provider_id) series for %d pairs, want at most %d + _other", len(pairs), side*side, maxSeries)
	}
	if _, ok := pairs[[2]string{otherLabel, otherLabel}]; !ok {
		t.Errorf("no _other/_other series for the pairs beyond the bound")
	}
	if got := pairs[[2]string{"flagSetId=set-0", "provider-0"}]; got != 1 {
		t.Errorf("open streams of the first pair: %v, want 1 (its own series)", got)
	}
}

// rawH2 opens an HTTP/2 connection to addr and reads its frames in the background:
// ended receives the stream ids the server ends (trailers or RST_STREAM), closed is
// closed on GOAWAY or when the connection ends.
func rawH2(t *testing.T, addr string) (fr *http2.Framer, ended chan uint32, closed chan struct{}) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr = http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// the server's SETTINGS is acknowledged here, before the reader below starts:
	// a Framer is not safe for concurrent writes, and the caller writes on it
	if err := conn.SetReadDeadline(time.Now().Add(waitFor)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("waiting for the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			break
		}
	}
	if err := fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	ended, closed = make(chan uint32, 16), make(chan struct{})
	go func() {
		defer close(closed)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				if f.StreamEnded() {
					ended <- f.StreamID
				}
			case *http2.RSTStreamFrame:
				ended <- f.StreamID
			case *http2.GoAwayFrame:
				return
			}
		}
	}()
	return fr, ended, closed
}

// TestHalfSentRPCsAndIdleConnections: an RPC whose request message never comes is
// ended after RequestTimeout (grpc-go alone would hold its goroutine forever), a
// connection without an RPC is closed after IdleTimeout, and a SyncFlags stream
// whose request came lives on past both.
func TestHalfSentRPCsAndIdleConnections(t *testing.T) {
	st := readyStore(t)
	// IdleTimeout long enough that a loaded machine still sends the first RPC
	// before the first connection counts as idle (a short write otherwise).
	h := start(t, Options{Store: st, RequestTimeout: 100 * time.Millisecond, IdleTimeout: time.Second}, startConfig{})
	fr, ended, _ := rawH2(t, h.target)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i, method := range []string{syncv1grpc.FlagSyncService_FetchAllFlags_FullMethodName, syncv1grpc.FlagSyncService_SyncFlags_FullMethodName} {
		hb.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", method},
			{"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		timeout := time.After(waitFor)
		for got := uint32(0); got != id; {
			select {
			case got = <-ended: // trailers, then maybe RST_STREAM, of earlier streams too
			case <-timeout:
				t.Fatalf("%s without its request message was not ended", method)
			}
		}
	}
	_, _, closed := rawH2(t, h.target)
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Error("a connection without an RPC was not closed")
	}
	stream, err := h.client.SyncFlags(testCtx(t), &syncv1.SyncFlagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, stream)
	time.Sleep(300 * time.Millisecond) // three request timeouts and idle timeouts
	apply(t, st, srcB, `{"flags":{}}`)
	if got := recv(t, stream).GetFlagConfiguration(); !strings.Contains(got, "bool-flag") || strings.Contains(got, `"other"`) {
		t.Errorf("the stream did not live on: %s", got)
	}
}

// customService answers every RPC itself (the flagd-proxy's way of using the server).
type customService struct {
	syncv1grpc.UnimplementedFlagSyncServiceServer
}

func (customService) FetchAllFlags(context.Context, *syncv1.FetchAllFlagsRequest) (*syncv1.FetchAllFlagsResponse, error) {
	return &syncv1.FetchAllFlagsResponse{FlagConfiguration: `{"flags":{}}`}, nil
}

func (customService) SyncFlags(_ *syncv1.SyncFlagsRequest, stream grpc.ServerStreamingServer[syncv1.SyncFlagsResponse]) error {
	if err := stream.Send(&syncv1.SyncFlagsResponse{FlagConfiguration: `{"flags":{}}`}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// TestCustomService: with Options.Service and no store, the server answers through that service (its Unimplemented
// methods too) and keeps the request limits.
func TestCustomService(t *testing.T) {
	h := start(t, Options{Service: customService{}}, startConfig{})
	ctx := testCtx(t)
	got, err := h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{})
	if err != nil || got.GetFlagConfiguration() != `{"flags":{}}` {
		t.Fatalf("FetchAllFlags = %v, %v", got, err)
	}
	_, err = h.client.GetMetadata(ctx, &syncv1.GetMetadataRequest{})
	wantStatus(t, err, codes.Unimplemented, "method GetMetadata not implemented")
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := h.client.SyncFlags(streamCtx, &syncv1.SyncFlagsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first := recv(t, stream); first.GetFlagConfiguration() != `{"flags":{}}` {
		t.Fatalf("first message %v", first)
	}
	cancel()
	_, err = h.client.FetchAllFlags(ctx, &syncv1.FetchAllFlagsRequest{Selector: strings.Repeat("s", maxRecvMsgSize)})
	wantStatus(t, err, codes.ResourceExhausted, fmt.Sprintf("grpc: received message larger than max (%d vs. %d)", maxRecvMsgSize+4, maxRecvMsgSize))
	if err := h.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
