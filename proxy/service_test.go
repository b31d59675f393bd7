package proxy

import (
	"context"
	"net"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	fcache "k8s.io/client-go/tools/cache/testing"

	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
)

// served is a running Service on a loopback listener and a client of it.
type served struct {
	client  syncv1grpc.FlagSyncServiceClient
	metrics *Metrics
	stop    func() error
}

func serve(t *testing.T, f *Flags, auth *Authorizer, maxStreams int) *served {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return serveWith(t, Options{Flags: f, Auth: auth, Log: zerolog.Nop(), Metrics: m, MaxStreams: maxStreams})
}

// serveWith serves a Service of opts.
func serveWith(t *testing.T, opts Options) *served {
	t.Helper()
	svc := NewService(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- svc.Serve(ctx, ln, syncserver.Options{Log: zerolog.Nop()}) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	var serveErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			serveErr = <-errc
		}
		return serveErr
	}
	t.Cleanup(func() {
		_ = conn.Close()
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &served{client: syncv1grpc.NewFlagSyncServiceClient(conn), metrics: opts.Metrics, stop: stop}
}

// as adds a bearer token (if any) and a Flagd-Selector header (if any) to ctx.
func as(ctx context.Context, token, selectorHeader string) context.Context {
	var kv []string
	if token != "" {
		kv = append(kv, "authorization", "Bearer "+token)
	}
	if selectorHeader != "" {
		kv = append(kv, "flagd-selector", selectorHeader)
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// open opens a stream and returns its first message's document, or the error.
func open(ctx context.Context, c syncv1grpc.FlagSyncServiceClient, sel string) (grpc.ServerStreamingClient[syncv1.SyncFlagsResponse], string, error) {
	stream, err := c.SyncFlags(ctx, &syncv1.SyncFlagsRequest{Selector: sel, ProviderId: "test"})
	if err != nil {
		return nil, "", err
	}
	msg, err := stream.Recv()
	if err != nil {
		return nil, "", err
	}
	return stream, msg.GetFlagConfiguration(), nil
}

// authEnv: flags A (team-a) and B (team-b), a ServiceAccount of each namespace with
// a token for the proxy's audience and the grant of its own namespace's flag.
func authEnv(t *testing.T, opts AuthOptions) (*Flags, *fcache.FakeControllerSource, *fakeReviewer, *Authorizer) {
	t.Helper()
	f, src, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"), featureFlag(flagB, "yes"))
	r := newFakeReviewer()
	r.addToken("token-a", userA, DefaultAudience)
	r.addToken("token-b", userB, DefaultAudience)
	r.addToken("api-token", userA)
	r.grant(userA, flagA, true)
	r.grant(userB, flagB, true)
	return f, src, r, NewAuthorizer(r, opts, nil)
}

// TestSyncFlagsAuthorizes: each ServiceAccount streams and fetches its own
// namespace's FeatureFlag and is refused the other's; a caller without a token,
// with a token for the API server, or with a selector the proxy does not serve is
// refused with the right code and nothing else.
func TestSyncFlagsAuthorizes(t *testing.T) {
	f, _, _, auth := authEnv(t, AuthOptions{})
	s := serve(t, f, auth, 0)
	ctx := testContext(t)
	for _, tc := range []struct{ token, sel string }{{"token-a", flagA.Selector()}, {"token-b", flagB.Selector()}} {
		_, doc, err := open(as(ctx, tc.token, ""), s.client, tc.sel)
		if err != nil || defaultVariant(t, doc) != "yes" {
			t.Fatalf("%s reading %s: %q, %v", tc.token, tc.sel, doc, err)
		}
		got, err := s.client.FetchAllFlags(as(ctx, tc.token, ""), &syncv1.FetchAllFlagsRequest{Selector: tc.sel})
		if err != nil || defaultVariant(t, got.GetFlagConfiguration()) != "yes" {
			t.Fatalf("FetchAllFlags %s: %v, %v", tc.sel, got, err)
		}
	}
	// the Flagd-Selector header wins over the request's field, as flagd's sync server
	if _, _, err := open(as(ctx, "token-a", flagB.Selector()), s.client, flagA.Selector()); err == nil {
		t.Error("the header selector (another namespace's flag) was not used")
	}
	for name, tc := range map[string]struct {
		token, sel string
		code       codes.Code
		msg        string
	}{
		"other namespace":   {"token-a", flagB.Selector(), codes.PermissionDenied, "system:serviceaccount:team-a:web may not get FeatureFlag team-b/search"},
		"no token":          {"", flagA.Selector(), codes.PermissionDenied, "no ServiceAccount token"},
		"api server token":  {"api-token", flagA.Selector(), codes.PermissionDenied, `the token is not for audience "flagpole-flagd-proxy"`},
		"forged token":      {"forged", flagA.Selector(), codes.PermissionDenied, "does not accept the token"},
		"not a FeatureFlag": {"token-a", "file:/etc/passwd", codes.InvalidArgument, "unrecognized URI: file:/etc/passwd"},
		"malformed":         {"token-a", "core.openfeature.dev/checkout", codes.InvalidArgument, "invalid resource uri format, expected <namespace>/<crdName> but got: checkout"},
		"missing flag":      {"token-a", "core.openfeature.dev/team-a/missing", codes.PermissionDenied, "may not get FeatureFlag team-a/missing"},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := open(as(ctx, tc.token, ""), s.client, tc.sel)
			wantCode(t, err, tc.code, tc.msg)
			_, err = s.client.FetchAllFlags(as(ctx, tc.token, ""), &syncv1.FetchAllFlagsRequest{Selector: tc.sel})
			wantCode(t, err, tc.code, tc.msg)
		})
	}
	if got := testutil.ToFloat64(s.metrics.refused.WithLabelValues("PermissionDenied")); got < 10 {
		t.Errorf("refusals counted: %v", got)
	}
	if _, err := s.client.GetMetadata(as(ctx, "token-a", ""), &syncv1.GetMetadataRequest{}); err != nil {
		t.Errorf("GetMetadata with a token: %v", err)
	}
	_, err := s.client.GetMetadata(ctx, &syncv1.GetMetadataRequest{})
	wantCode(t, err, codes.PermissionDenied, "no ServiceAccount token")
}

// TestSyncFlagsNotFound: an authorized caller naming a FeatureFlag that does not
// exist gets NotFound (only after the authorization: others cannot probe names).
func TestSyncFlagsNotFound(t *testing.T) {
	f, _, r, auth := authEnv(t, AuthOptions{})
	missing := Ref{Namespace: "team-a", Name: "missing"}
	r.grant(userA, missing, true)
	s := serve(t, f, auth, 0)
	_, _, err := open(as(testContext(t), "token-a", ""), s.client, missing.Selector())
	wantCode(t, err, codes.NotFound, "FeatureFlag team-a/missing not found")
}

// TestStreamsFollowUpdates: two callers' streams get their own FeatureFlag's
// changes, and only those.
func TestStreamsFollowUpdates(t *testing.T) {
	f, src, _, auth := authEnv(t, AuthOptions{})
	s := serve(t, f, auth, 0)
	ctx := testContext(t)
	a, _, err := open(as(ctx, "token-a", ""), s.client, flagA.Selector())
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := open(as(ctx, "token-b", ""), s.client, flagB.Selector())
	if err != nil {
		t.Fatal(err)
	}
	src.Modify(featureFlag(flagA, "no"))
	src.Modify(featureFlag(flagB, "no"))
	for _, st := range []grpc.ServerStreamingClient[syncv1.SyncFlagsResponse]{a, b} {
		msg, err := st.Recv()
		if err != nil || defaultVariant(t, msg.GetFlagConfiguration()) != "no" {
			t.Fatalf("update: %v, %v", msg, err)
		}
	}
	eventually(t, "two streams counted", func() bool { return testutil.ToFloat64(s.metrics.streams) == 2 })
}

// TestRevokedAccessEndsStream: an open stream is checked again every AccessTTL; a
// revoked grant ends it with PermissionDenied, while an API server that cannot be
// asked keeps it open.
func TestRevokedAccessEndsStream(t *testing.T) {
	f, _, r, auth := authEnv(t, AuthOptions{AccessTTL: 50 * time.Millisecond, DeniedTTL: time.Millisecond})
	s := serve(t, f, auth, 0)
	ctx := testContext(t)
	st, _, err := open(as(ctx, "token-a", ""), s.client, flagA.Selector())
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.accessErr = context.DeadlineExceeded
	r.mu.Unlock()
	_, before := r.counts()
	eventually(t, "rechecks while the API server is away", func() bool { _, n := r.counts(); return n >= before+3 })
	r.mu.Lock()
	r.accessErr = nil
	r.mu.Unlock()
	r.grant(userA, flagA, false)
	_, err = st.Recv()
	wantCode(t, err, codes.PermissionDenied, "may not get FeatureFlag team-a/checkout")
}

// TestStreamEndsWhenTokenExpires: a stream ends with PermissionDenied when the
// caller's token expires (the sidecar reconnects with the rotated token).
func TestStreamEndsWhenTokenExpires(t *testing.T) {
	f, _, r, auth := authEnv(t, AuthOptions{})
	exp := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	tok := jwt("short-lived", exp)
	r.addToken(tok, userA, DefaultAudience)
	s := serve(t, f, auth, 0)
	st, _, err := open(as(testContext(t), tok, ""), s.client, flagA.Selector())
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Recv()
	wantCode(t, err, codes.PermissionDenied, "the token expired at")
}

// TestNoAuth: without an Authorizer (--auth=none) every caller is served, as by
// the OpenFeature Operator's flagd-proxy.
func TestNoAuth(t *testing.T) {
	f, _, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"))
	s := serve(t, f, nil, 0)
	if _, doc, err := open(testContext(t), s.client, flagA.Selector()); err != nil || defaultVariant(t, doc) != "yes" {
		t.Fatalf("%q, %v", doc, err)
	}
}

// TestMaxStreamsAndShutdown: streams beyond MaxStreams get ResourceExhausted;
// shutting down ends the open ones with Unavailable and Serve returns nil.
func TestMaxStreamsAndShutdown(t *testing.T) {
	f, _, _ := fakeFlags(t, nil, featureFlag(flagA, "yes"))
	s := serve(t, f, nil, 2)
	ctx := testContext(t)
	var open2 []grpc.ServerStreamingClient[syncv1.SyncFlagsResponse]
	for range 2 {
		st, _, err := open(ctx, s.client, flagA.Selector())
		if err != nil {
			t.Fatal(err)
		}
		open2 = append(open2, st)
	}
	_, _, err := open(ctx, s.client, flagA.Selector())
	wantCode(t, err, codes.ResourceExhausted, "too many sync streams (limit 2)")
	if err := s.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for _, st := range open2 {
		_, err := st.Recv()
		wantCode(t, err, codes.Unavailable, "")
	}
}
