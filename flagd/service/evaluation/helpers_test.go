package evaluation

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
)

// The flag documents every test serves. Sources in priority order: plain < a < b.
const (
	docPlain = `{"flags": {"plain": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}`
	docA     = `{
  "metadata": {"flagSetId": "set-a", "team": "core"},
  "flags": {
    "bool-static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"owner": "alice", "team": "flags"}},
    "string-flag": {"state": "ENABLED", "variants": {"red": "r", "blue": "b"}, "defaultVariant": "red"},
    "int-flag": {"state": "ENABLED", "variants": {"ten": 10, "max": 9007199254740991}, "defaultVariant": "ten", "targeting": {"if": [{"var": "max"}, "max", null]}},
    "float-flag": {"state": "ENABLED", "variants": {"half": 0.5}, "defaultVariant": "half"},
    "object-flag": {"state": "ENABLED", "variants": {"obj": {"a": 1, "b": "x"}}, "defaultVariant": "obj"},
    "targeted": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "on", null]}},
    "no-default": {"state": "ENABLED", "variants": {"on": true, "off": false}},
    "no-default-targeted": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": null, "targeting": {"if": [{"var": "vip"}, "on", null]}},
    "disabled": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
    "parse-error": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"nope": [1]}},
    "general-error": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": [true, "missing-variant", "on"]}},
    "array-flag": {"state": "ENABLED", "variants": {"list": [1, 2]}, "defaultVariant": "list"},
    "static-ctx": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "env"}, "prod"]}, "on", null]}},
    "header-ctx": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "user"}, "bob"]}, "on", null]}},
    "shared": {"state": "ENABLED", "variants": {"a": "from-a"}, "defaultVariant": "a"}
  }
}`
	docB = `{"metadata": {"flagSetId": "set-b"}, "flags": {
  "shared": {"state": "ENABLED", "variants": {"b": "from-b"}, "defaultVariant": "b"},
  "b-only": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
}}`
)

// testEnricher is the -X / -H configuration of every test server.
func testEnricher() *service.Enricher {
	return &service.Enricher{Static: map[string]string{"env": "prod"}, Headers: map[string]string{"X-User": "user"}}
}

// storeOf is a store of one source, name, holding doc.
func storeOf(t testing.TB, name string, doc []byte) *store.Store {
	t.Helper()
	st, err := store.New([]string{name}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(name, doc); err != nil {
		t.Fatalf("apply %s: %v", name, err)
	}
	return st
}

// newTestStore loads the three test documents.
func newTestStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.New([]string{"src-plain", "src-a", "src-b"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for src, doc := range map[string]string{"src-plain": docPlain, "src-a": docA, "src-b": docB} {
		if err := st.Apply(src, []byte(doc)); err != nil {
			t.Fatalf("apply %s: %v", src, err)
		}
	}
	return st
}

type testServer struct {
	st  *store.Store
	svc *Service
	url string // base URL for HTTP clients
	ln  net.Listener
}

// start serves a Service built from opts (Store defaults to newTestStore, Enricher
// to testEnricher) with server.Serve on 127.0.0.1:0, or on cfg's socket / TLS.
func start(t *testing.T, opts Options, cfg server.ListenConfig) *testServer {
	t.Helper()
	return serveService(t, newService(withDefaults(t, opts), true), cfg)
}

// withDefaults fills the Store and Enricher of test options.
func withDefaults(t *testing.T, opts Options) Options {
	t.Helper()
	if opts.Store == nil {
		opts.Store = newTestStore(t)
	}
	if opts.Enricher == nil {
		opts.Enricher = testEnricher()
	}
	return opts
}

// serveService serves svc as start does: as flagd mode does, with grpc-go serving
// the gRPC connections.
func serveService(t *testing.T, svc *Service, cfg server.ListenConfig) *testServer {
	t.Helper()
	return serveWith(t, svc, cfg, true)
}

// serveWith serves svc, with grpc-go for the gRPC connections or (grpcGo false)
// with connect-go for every connection, as before the split.
func serveWith(t *testing.T, svc *Service, cfg server.ListenConfig, grpcGo bool) *testServer {
	t.Helper()
	cfg.Name = "evaluation"
	if grpcGo {
		cfg.GRPC = svc.GRPCServer(server.GRPCServerOptions(cfg)...)
	}
	if cfg.SocketPath == "" {
		cfg.Address = "127.0.0.1:0"
	}
	ln, err := server.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Serve(ctx, ln, cfg, svc.Handler(), zerolog.Nop(), svc.Shutdown) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()
	if cfg.SocketPath != "" {
		url = "http://unix"
	}
	return &testServer{st: svc.st, svc: svc, url: url, ln: ln}
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as gRPC clients do. It
// keeps gRPC and the other protocols on connections of their own, as clients do
// (the listener serves a connection whose first request is gRPC with grpc-go:
// TestMixedProtocolsOnOneConnection).
func h2cClient(t testing.TB) *http.Client {
	t.Helper()
	newTransport := func() *http.Transport {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		t.Cleanup(tr.CloseIdleConnections)
		return tr
	}
	return &http.Client{Transport: protocolPools{grpc: newTransport(), other: newTransport()}}
}

// protocolPools sends gRPC with the protobuf codec over one transport and every
// other request over another.
type protocolPools struct{ grpc, other *http.Transport }

func (p protocolPools) RoundTrip(r *http.Request) (*http.Response, error) {
	if ct := r.Header.Get("Content-Type"); ct == "application/grpc" || ct == "application/grpc+proto" {
		return p.grpc.RoundTrip(r)
	}
	return p.other.RoundTrip(r)
}

func (p protocolPools) CloseIdleConnections() {
	p.grpc.CloseIdleConnections()
	p.other.CloseIdleConnections()
}

// h1Client speaks HTTP/1.1 only, as curl does by default.
func h1Client(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetHTTP1(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// unixClient dials a unix socket, HTTP/2 without TLS.
func unixClient(t testing.TB, path string) *http.Client {
	t.Helper()
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// tlsClient trusts the given root configuration and negotiates HTTP/2 by ALPN.
func tlsClient(t testing.TB, cfg *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// protocol is one way a connect-go client talks to the server.
type protocol struct {
	name string
	opts []connect.ClientOption
}

func protocols() []protocol {
	return []protocol{
		{"connect-json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect-proto", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
	}
}

// outcome is a resolution as any of the three APIs reports it, for comparison.
// Value is nil when the response leaves it unset (v2); Code/Message describe an
// error response.
type outcome struct {
	Value    any
	Reason   string
	Variant  string
	Metadata map[string]any
	Code     string
	Message  string
}

func errOutcome(err error) outcome {
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return outcome{Code: ce.Code().String(), Message: ce.Message()}
	}
	return outcome{Code: "non-connect error", Message: err.Error()}
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	t.Helper()
	if m == nil {
		return nil
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withHeader[T any](req *connect.Request[T], h http.Header) *connect.Request[T] {
	for k, vs := range h {
		for _, v := range vs {
			req.Header().Add(k, v)
		}
	}
	return req
}

// callV1 resolves key as typ ("bool", "string", "int", "float", "object") over v1.
func callV1(ctx context.Context, t testing.TB, c evaluationv1connect.ServiceClient, typ, key string, evalCtx map[string]any, h http.Header) outcome {
	t.Helper()
	sc := mustStruct(t, evalCtx)
	switch typ {
	case "bool":
		r, err := c.ResolveBoolean(ctx, withHeader(connect.NewRequest(&evalv1.ResolveBooleanRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "string":
		r, err := c.ResolveString(ctx, withHeader(connect.NewRequest(&evalv1.ResolveStringRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "int":
		r, err := c.ResolveInt(ctx, withHeader(connect.NewRequest(&evalv1.ResolveIntRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "float":
		r, err := c.ResolveFloat(ctx, withHeader(connect.NewRequest(&evalv1.ResolveFloatRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "object":
		r, err := c.ResolveObject(ctx, withHeader(connect.NewRequest(&evalv1.ResolveObjectRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value.AsMap(), Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	}
	t.Fatalf("unknown type %q", typ)
	return outcome{}
}

// callV2 is callV1 for flagd.evaluation.v2; unset optional fields give nil / "".
func callV2(ctx context.Context, t testing.TB, c evaluationv2connect.ServiceClient, typ, key string, evalCtx map[string]any, h http.Header) outcome {
	t.Helper()
	sc := mustStruct(t, evalCtx)
	var o outcome
	switch typ {
	case "bool":
		r, err := c.ResolveBoolean(ctx, withHeader(connect.NewRequest(&evalv2.ResolveBooleanRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		o = outcome{Reason: r.Msg.Reason, Variant: r.Msg.GetVariant(), Metadata: r.Msg.Metadata.AsMap()}
		if r.Msg.Value != nil {
			o.Value = *r.Msg.Value
		}
	case "string":
		r, err := c.ResolveString(ctx, withHeader(connect.NewRequest(&evalv2.ResolveStringRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		o = outcome{Reason: r.Msg.Reason, Variant: r.Msg.GetVariant(), Metadata: r.Msg.Metadata.AsMap()}
		if r.Msg.Value != nil {
			o.Value = *r.Msg.Value
		}
	case "int":
		r, err := c.ResolveInt(ctx, withHeader(connect.NewRequest(&evalv2.ResolveIntRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		o = outcome{Reason: r.Msg.Reason, Variant: r.Msg.GetVariant(), Metadata: r.Msg.Metadata.AsMap()}
		if r.Msg.Value != nil {
			o.Value = *r.Msg.Value
		}
	case "float":
		r, err := c.ResolveFloat(ctx, withHeader(connect.NewRequest(&evalv2.ResolveFloatRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		o = outcome{Reason: r.Msg.Reason, Variant: r.Msg.GetVariant(), Metadata: r.Msg.Metadata.AsMap()}
		if r.Msg.Value != nil {
			o.Value = *r.Msg.Value
		}
	case "object":
		r, err := c.ResolveObject(ctx, withHeader(connect.NewRequest(&evalv2.ResolveObjectRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		o = outcome{Reason: r.Msg.Reason, Variant: r.Msg.GetVariant(), Metadata: r.Msg.Metadata.AsMap()}
		if r.Msg.Value != nil {
			o.Value = r.Msg.Value.AsMap()
		}
	default:
		t.Fatalf("unknown type %q", typ)
	}
	return o
}

// callSchemaV1 is callV1 for the legacy schema.v1 service.
func callSchemaV1(ctx context.Context, t testing.TB, c schemav1connect.ServiceClient, typ, key string, evalCtx map[string]any, h http.Header) outcome {
	t.Helper()
	sc := mustStruct(t, evalCtx)
	switch typ {
	case "bool":
		r, err := c.ResolveBoolean(ctx, withHeader(connect.NewRequest(&schemav1.ResolveBooleanRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "string":
		r, err := c.ResolveString(ctx, withHeader(connect.NewRequest(&schemav1.ResolveStringRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "int":
		r, err := c.ResolveInt(ctx, withHeader(connect.NewRequest(&schemav1.ResolveIntRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "float":
		r, err := c.ResolveFloat(ctx, withHeader(connect.NewRequest(&schemav1.ResolveFloatRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value, Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	case "object":
		r, err := c.ResolveObject(ctx, withHeader(connect.NewRequest(&schemav1.ResolveObjectRequest{FlagKey: key, Context: sc}), h))
		if err != nil {
			return errOutcome(err)
		}
		return outcome{Value: r.Msg.Value.AsMap(), Reason: r.Msg.Reason, Variant: r.Msg.Variant, Metadata: r.Msg.Metadata.AsMap()}
	}
	t.Fatalf("unknown type %q", typ)
	return outcome{}
}

// testContext is a per-test context with a generous deadline for waits.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
