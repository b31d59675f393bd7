package evaluation

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"
)

// event is one EventStream message; Data is nil when the message has none.
type event struct {
	Type string
	Data map[string]any
}

type eventMsg interface {
	GetType() string
	GetData() *structpb.Struct
}

// eventStream is a client stream of any of the three APIs.
type eventStream struct {
	receive func() bool
	msg     func() eventMsg
	err     func() error
	close   func() error
}

func wrapStream[T any, P interface {
	*T
	eventMsg
}](s *connect.ServerStreamForClient[T], err error) (*eventStream, error) {
	if err != nil {
		return nil, err
	}
	return &eventStream{
		receive: s.Receive,
		msg:     func() eventMsg { return P(s.Msg()) },
		err:     s.Err,
		close:   s.Close,
	}, nil
}

// openStream opens an EventStream of api ("v1", "v2", "schema.v1") with the
// optional selector. The stream ends with ctx.
func openStream(ctx context.Context, t *testing.T, hc *http.Client, url, api, selector string, opts ...connect.ClientOption) *eventStream {
	t.Helper()
	h := http.Header{}
	if selector != "" {
		h.Set("Flagd-Selector", selector)
	}
	var s *eventStream
	var err error
	switch api {
	case "v1":
		s, err = wrapStream(evaluationv1connect.NewServiceClient(hc, url, opts...).EventStream(ctx, withHeader(connect.NewRequest(&evalv1.EventStreamRequest{}), h)))
	case "v2":
		s, err = wrapStream(evaluationv2connect.NewServiceClient(hc, url, opts...).EventStream(ctx, withHeader(connect.NewRequest(&evalv2.EventStreamRequest{}), h)))
	case "schema.v1":
		s, err = wrapStream(schemav1connect.NewServiceClient(hc, url, opts...).EventStream(ctx, withHeader(connect.NewRequest(&schemav1.EventStreamRequest{}), h)))
	default:
		t.Fatalf("unknown api %q", api)
	}
	if err != nil {
		t.Fatalf("open %s stream: %v", api, err)
	}
	t.Cleanup(func() { _ = s.close() })
	return s
}

// next waits for the next event (the test context bounds the wait).
func (s *eventStream) next(t *testing.T) event {
	t.Helper()
	if !s.receive() {
		t.Fatalf("stream ended: %v", s.err())
	}
	m := s.msg()
	e := event{Type: m.GetType()}
	if d := m.GetData(); d != nil {
		e.Data = d.AsMap()
	}
	return e
}

// nextSkipping waits for the next event that is not a keep_alive.
func (s *eventStream) nextSkipping(t *testing.T) event {
	t.Helper()
	for {
		if e := s.next(t); e.Type != "keep_alive" {
			return e
		}
	}
}

// end waits for the stream to end and returns its error outcome (zero when it
// ended cleanly), skipping any keep_alive on the way.
func (s *eventStream) end(t *testing.T) outcome {
	t.Helper()
	for s.receive() {
		if m := s.msg(); m.GetType() != "keep_alive" {
			t.Fatalf("unexpected %s event while waiting for the end", m.GetType())
		}
	}
	if err := s.err(); err != nil {
		return errOutcome(err)
	}
	return outcome{}
}

func ready() event { return event{Type: "provider_ready", Data: map[string]any{}} }

func changed(changes map[string]string) event {
	flags := map[string]any{}
	for k, c := range changes {
		flags[k] = map[string]any{"type": c}
	}
	return event{Type: "configuration_change", Data: map[string]any{"flags": flags}}
}

// docA2 is docA with int-flag removed, string-flag changed and new-flag added.
func docA2(t *testing.T) string {
	t.Helper()
	d := strings.Replace(docA, `"int-flag": {"state": "ENABLED", "variants": {"ten": 10, "max": 9007199254740991}, "defaultVariant": "ten", "targeting": {"if": [{"var": "max"}, "max", null]}},`,
		`"new-flag": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"},`, 1)
	d = strings.Replace(d, `"variants": {"red": "r", "blue": "b"}, "defaultVariant": "red"`, `"variants": {"red": "r", "blue": "b"}, "defaultVariant": "blue"`, 1)
	if d == docA {
		t.Fatal("docA2 did not change docA")
	}
	return d
}

// TestEventStreamChanges: provider_ready first, then per-flag write/update/delete
// over each subscriber's selector view, on every API and several protocols.
func TestEventStreamChanges(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	ctx := testContext(t)
	h2, h1 := h2cClient(t), h1Client(t)
	streams := map[string]*eventStream{
		"v2 connect-json http1.1": openStream(ctx, t, h1, srv.url, "v2", "", connect.WithProtoJSON()),
		"v1 grpc":                 openStream(ctx, t, h2, srv.url, "v1", "", connect.WithGRPC()),
		"schema.v1 grpc-web":      openStream(ctx, t, h2, srv.url, "schema.v1", "", connect.WithGRPCWeb()),
		"v2 set-b":                openStream(ctx, t, h2, srv.url, "v2", "flagSetId=set-b", connect.WithGRPC()),
		"v1 source=src-a":         openStream(ctx, t, h2, srv.url, "v1", "source=src-a"),
	}
	for name, s := range streams {
		if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
			t.Fatalf("%s: first event (-want +got):\n%s", name, diff)
		}
	}
	if err := srv.st.Apply("src-a", []byte(docA2(t))); err != nil {
		t.Fatal(err)
	}
	// then a change that only flag set set-b sees: the set-b stream's first event
	// must be this one, proving it was not told about src-a's change
	if err := srv.st.Apply("src-b", []byte(strings.Replace(docB, `"b-only": {"state": "ENABLED", "variants": {"on": true}`, `"b-only": {"state": "ENABLED", "variants": {"on": false}`, 1))); err != nil {
		t.Fatal(err)
	}
	aChanges := changed(map[string]string{"int-flag": "delete", "string-flag": "update", "new-flag": "write"})
	want := map[string][]event{
		"v2 connect-json http1.1": {aChanges, changed(map[string]string{"b-only": "update"})},
		"v1 grpc":                 {aChanges, changed(map[string]string{"b-only": "update"})},
		"schema.v1 grpc-web":      {aChanges, changed(map[string]string{"b-only": "update"})},
		"v2 set-b":                {changed(map[string]string{"b-only": "update"})},
		"v1 source=src-a":         {aChanges},
	}
	for name, s := range streams {
		for i, w := range want[name] {
			// wake-ups coalesce: a subscriber may see both applies as one diff
			got := s.nextSkipping(t)
			if i == 0 && len(want[name]) == 2 && cmp.Equal(got, merge(want[name][0], want[name][1])) {
				break
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("%s: event %d (-want +got):\n%s", name, i, diff)
			}
		}
	}
}

// merge is the configuration_change of two coalesced changes.
func merge(a, b event) event {
	flags := map[string]any{}
	for _, e := range []event{a, b} {
		maps.Copy(flags, e.Data["flags"].(map[string]any))
	}
	return event{Type: a.Type, Data: map[string]any{"flags": flags}}
}

func TestEventStreamKeepAlive(t *testing.T) {
	srv := start(t, Options{KeepAlive: 20 * time.Millisecond}, server.ListenConfig{})
	ctx := testContext(t)
	s := openStream(ctx, t, h2cClient(t), srv.url, "v2", "", connect.WithProtoJSON())
	if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	for range 3 {
		// flagd sends keep_alive without data
		if diff := cmp.Diff(event{Type: "keep_alive"}, s.next(t)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	}
}

// TestEventStreamDeadline: v1 and v2 streams end with DeadlineExceeded; schema.v1
// ignores the deadline (it is still sending keep_alives long after it).
func TestEventStreamDeadline(t *testing.T) {
	const deadline, keepAlive = 50 * time.Millisecond, 20 * time.Millisecond
	srv := start(t, Options{StreamDeadline: deadline, KeepAlive: keepAlive}, server.ListenConfig{})
	ctx := testContext(t)
	hc := h2cClient(t)
	for _, api := range []string{"v1", "v2"} {
		for _, p := range protocols() {
			t.Run(api+"/"+p.name, func(t *testing.T) {
				s := openStream(ctx, t, hc, srv.url, api, "", p.opts...)
				if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
				want := outcome{Code: "deadline_exceeded", Message: "stream closed due to server-side timeout"}
				if diff := cmp.Diff(want, s.end(t)); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	}
	t.Run("schema.v1", func(t *testing.T) {
		s := openStream(ctx, t, hc, srv.url, "schema.v1", "")
		if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		// keep_alives are at least keepAlive apart, so after 5 of them the stream
		// has outlived the deadline
		for range 5 {
			if diff := cmp.Diff(event{Type: "keep_alive"}, s.next(t)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		}
	})
}

// TestEventStreamShutdown: Shutdown sends provider_shutdown to every stream and
// ends it; later streams are refused.
func TestEventStreamShutdown(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	ctx := testContext(t)
	hc := h2cClient(t)
	streams := []*eventStream{
		openStream(ctx, t, hc, srv.url, "v1", "", connect.WithGRPC()),
		openStream(ctx, t, hc, srv.url, "v2", "flagSetId=set-a", connect.WithProtoJSON()),
		openStream(ctx, t, hc, srv.url, "schema.v1", "", connect.WithGRPCWeb()),
	}
	for _, s := range streams {
		if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	}
	srv.svc.Shutdown()
	srv.svc.Shutdown() // idempotent
	for i, s := range streams {
		if diff := cmp.Diff(event{Type: "provider_shutdown", Data: map[string]any{}}, s.next(t)); diff != "" {
			t.Errorf("stream %d (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(outcome{}, s.end(t)); diff != "" {
			t.Errorf("stream %d end (-want +got):\n%s", i, diff)
		}
	}
	late := openStream(ctx, t, hc, srv.url, "v2", "", connect.WithGRPC())
	if diff := cmp.Diff(outcome{Code: "unavailable", Message: "flagd is shutting down"}, late.end(t)); diff != "" {
		t.Errorf("stream after shutdown (-want +got):\n%s", diff)
	}
}

// TestEventStreamLimits: MaxStreams refuses streams beyond the cap and frees the
// slot when a stream ends; an invalid selector is refused.
func TestEventStreamLimits(t *testing.T) {
	srv := start(t, Options{MaxStreams: 1}, server.ListenConfig{})
	hc := h2cClient(t)
	ctx := testContext(t)
	firstCtx, closeFirst := context.WithCancel(ctx)
	first := openStream(firstCtx, t, hc, srv.url, "v2", "", connect.WithGRPC())
	if diff := cmp.Diff(ready(), first.next(t)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	second := openStream(ctx, t, hc, srv.url, "v1", "", connect.WithProtoJSON())
	if diff := cmp.Diff(outcome{Code: "resource_exhausted", Message: "too many open event streams (limit 1)"}, second.end(t)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	closeFirst()
	// the slot frees once the server sees the first stream end
	for {
		s := openStream(ctx, t, hc, srv.url, "v1", "", connect.WithGRPC())
		if s.receive() {
			if diff := cmp.Diff("provider_ready", s.msg().GetType()); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			break
		}
		if got := errOutcome(s.err()); got.Code != "resource_exhausted" {
			t.Fatalf("unexpected %+v", got)
		}
		if ctx.Err() != nil {
			t.Fatal("the stream slot was not freed within 10s")
		}
	}

	bad := openStream(ctx, t, hc, srv.url, "v2", "nope=1", connect.WithGRPC())
	want := outcome{Code: "invalid_argument", Message: `invalid selector key "nope", valid keys: "flagSetId", "source"`}
	if diff := cmp.Diff(want, bad.end(t)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestEventStreamRefusalsLogThrottled: refused EventStreams (over MaxStreams) are
// each answered ResourceExhausted, but the warning is logged at most once per 10 s
// (with how many were refused meanwhile), as the sync listener does: a client
// hammering the limit cannot fill the disk with log lines.
func TestEventStreamRefusalsLogThrottled(t *testing.T) {
	var logs syncBuffer
	srv := start(t, Options{MaxStreams: 1, Log: zerolog.New(&logs).Level(zerolog.InfoLevel)}, server.ListenConfig{})
	hc := h2cClient(t)
	ctx := testContext(t)
	first := openStream(ctx, t, hc, srv.url, "v2", "", connect.WithGRPC())
	if diff := cmp.Diff(ready(), first.next(t)); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	begin := time.Now()
	const refusals = 200
	for range refusals {
		s := openStream(ctx, t, hc, srv.url, "v1", "", connect.WithGRPC())
		if got := s.end(t); got.Code != "resource_exhausted" {
			t.Fatalf("stream over the limit: %+v, want resource_exhausted", got)
		}
		_ = s.close()
	}
	warnings := strings.Count(logs.String(), `"level":"warn"`)
	if limit := 1 + int(time.Since(begin)/(10*time.Second)); warnings > limit || warnings == 0 {
		t.Errorf("%d refusals logged %d warnings, want 1 (at most one per 10 s):\n%.2000s", refusals, warnings, logs.String())
	}
}

// TestEventStreamOutlivesReadTimeout: the listener's ReadTimeout bounds reading a
// request (flagd mode sets 5 s, so a body that never comes cannot hold a goroutine),
// not the response: EventStreams, over HTTP/1.1 and HTTP/2, live on past it.
func TestEventStreamOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 50 * time.Millisecond
	srv := start(t, Options{KeepAlive: 4 * readTimeout}, server.ListenConfig{ReadTimeout: readTimeout})
	for name, c := range map[string]struct {
		hc   *http.Client
		opts []connect.ClientOption
	}{
		"connect over HTTP/1.1": {h1Client(t), []connect.ClientOption{connect.WithProtoJSON()}},
		"gRPC over h2c":         {h2cClient(t), []connect.ClientOption{connect.WithGRPC()}},
	} {
		t.Run(name, func(t *testing.T) {
			s := openStream(testContext(t), t, c.hc, srv.url, "v1", "", c.opts...)
			if diff := cmp.Diff(ready(), s.next(t)); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
			for range 2 { // each comes 4 read timeouts after the previous event
				if diff := cmp.Diff(event{Type: "keep_alive"}, s.next(t)); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
			}
		})
	}
}
