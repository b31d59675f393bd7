package evaluation

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// rawFrame is a message as bytes (the differential tests send exact bytes).
type rawFrame struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawFrame).b)}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawFrame).b = data.Materialize()
	return nil
}

// grpcPair serves the same store twice: gRPC connections served by grpc-go (the
// split listener) and by connect-go (every connection on net/http, as before).
type grpcPair struct {
	fast, slow *grpc.ClientConn
}

func newGRPCPair(t *testing.T, opts Options) *grpcPair {
	t.Helper()
	opts = withDefaults(t, opts)
	cfg := server.ListenConfig{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}
	fast := serveWith(t, newService(opts, true), cfg, true)
	slow := serveWith(t, newService(opts, true), cfg, false)
	dial := func(addr string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	return &grpcPair{fast: dial(fast.ln.Addr().String()), slow: dial(slow.ln.Addr().String())}
}

// grpcAnswer is what a gRPC client sees of a unary call.
type grpcAnswer struct {
	Code    codes.Code
	Message string
	Details int // status details (grpc-status-details-bin)
	// MD is the response's headers and trailers together (where a server puts
	// them is transport: grpc-go answers an error Trailers-Only), without the
	// ones that are not the service's: net/http's Date and connect-go's list of
	// the compressors it accepts (grpc-accept-encoding).
	MD   metadata.MD
	Body []byte
}

func invokeRaw(t *testing.T, conn *grpc.ClientConn, method string, req []byte, md metadata.MD, opts ...grpc.CallOption) grpcAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, md)
	var resp rawFrame
	var header, trailer metadata.MD
	err := conn.Invoke(ctx, method, &rawFrame{b: req}, &resp, append(opts, grpc.Header(&header), grpc.Trailer(&trailer))...)
	st, _ := status.FromError(err)
	all := metadata.Join(header, trailer)
	delete(all, "date")
	delete(all, "grpc-accept-encoding")
	return grpcAnswer{Code: st.Code(), Message: st.Message(), Details: len(st.Proto().GetDetails()), MD: all, Body: resp.b}
}

// responseFor is the response message of a method.
func responseFor(t *testing.T, method string) proto.Message {
	t.Helper()
	msgs := map[string]proto.Message{
		"/flagd.evaluation.v1.Service/ResolveBoolean": &evalv1.ResolveBooleanResponse{}, "/flagd.evaluation.v1.Service/ResolveString": &evalv1.ResolveStringResponse{},
		"/flagd.evaluation.v1.Service/ResolveInt": &evalv1.ResolveIntResponse{}, "/flagd.evaluation.v1.Service/ResolveFloat": &evalv1.ResolveFloatResponse{},
		"/flagd.evaluation.v1.Service/ResolveObject": &evalv1.ResolveObjectResponse{}, "/flagd.evaluation.v1.Service/ResolveAll": &evalv1.ResolveAllResponse{},
		"/flagd.evaluation.v2.Service/ResolveBoolean": &evalv2.ResolveBooleanResponse{}, "/flagd.evaluation.v2.Service/ResolveString": &evalv2.ResolveStringResponse{},
		"/flagd.evaluation.v2.Service/ResolveInt": &evalv2.ResolveIntResponse{}, "/flagd.evaluation.v2.Service/ResolveFloat": &evalv2.ResolveFloatResponse{},
		"/flagd.evaluation.v2.Service/ResolveObject": &evalv2.ResolveObjectResponse{},
		"/schema.v1.Service/ResolveBoolean":          &schemav1.ResolveBooleanResponse{}, "/schema.v1.Service/ResolveString": &schemav1.ResolveStringResponse{},
		"/schema.v1.Service/ResolveInt": &schemav1.ResolveIntResponse{}, "/schema.v1.Service/ResolveFloat": &schemav1.ResolveFloatResponse{},
		"/schema.v1.Service/ResolveObject": &schemav1.ResolveObjectResponse{}, "/schema.v1.Service/ResolveAll": &schemav1.ResolveAllResponse{},
	}
	m, ok := msgs[method]
	if !ok {
		t.Fatalf("no response message for %s", method)
	}
	return proto.Clone(m)
}

// compare sends one request to both servers and reports any difference a client
// could see: the status code, message and details, the response metadata, and the
// response message. The responses, encoded by hand, must also be byte for byte
// what protobuf-go's deterministic encoding of the message is (the metadata and
// object Structs in them are encoded once, deterministically; ResolveAll's map
// entries are written sorted by key).
func (p *grpcPair) compare(t *testing.T, method string, req []byte, md metadata.MD, opts ...grpc.CallOption) {
	t.Helper()
	fast, slow := invokeRaw(t, p.fast, method, req, md, opts...), invokeRaw(t, p.slow, method, req, md, opts...)
	if fast.Code != slow.Code || fast.Message != slow.Message || fast.Details != slow.Details {
		t.Errorf("%s %x %v: grpc-go answered %v %q (%d details), connect-go %v %q (%d details)", method, req, md,
			fast.Code, fast.Message, fast.Details, slow.Code, slow.Message, slow.Details)
		return
	}
	if diff := cmp.Diff(slow.MD, fast.MD); diff != "" {
		t.Errorf("%s %x %v: response metadata (-connect-go +grpc-go):\n%s", method, req, md, diff)
	}
	if fast.Code != codes.OK {
		return
	}
	a, b := responseFor(t, method), responseFor(t, method)
	if err := proto.Unmarshal(fast.Body, a); err != nil {
		t.Fatalf("%s: grpc-go's response does not decode: %v (%x)", method, err, fast.Body)
	}
	if err := proto.Unmarshal(slow.Body, b); err != nil {
		t.Fatalf("%s: connect-go's response does not decode: %v", method, err)
	}
	if !proto.Equal(a, b) {
		t.Errorf("%s %x %v:\n grpc-go    %v\n connect-go %v", method, req, md, a, b)
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fast.Body, want) {
		t.Errorf("%s %x %v: hand encoding\n %x\nprotobuf-go\n %x", method, req, md, fast.Body, want)
	}
}

// resolveRequest encodes a typed Resolve* request.
func encodeResolve(t testing.TB, key string, ctx map[string]any) []byte {
	t.Helper()
	req := &evalv2.ResolveBooleanRequest{FlagKey: key}
	if ctx != nil {
		req.Context = mustStruct(t, ctx)
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func headerMD(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, v := range h {
		md.Append(strings.ToLower(k), v...)
	}
	return md
}

// TestGRPCDecisionTable: every row of the decision table, over the three APIs and
// the five typed methods, answers the same through grpc-go as through connect-go.
func TestGRPCDecisionTable(t *testing.T) {
	p := newGRPCPair(t, Options{Store: newDiffStore(t)})
	for _, tc := range decisionTable() {
		for _, a := range apis {
			for _, typ := range []string{"bool", "string", "int", "float", "object"} {
				p.compare(t, procPath(a.api, typ), encodeResolve(t, tc.key, tc.ctx), headerMD(tc.header))
			}
		}
	}
}

// TestGRPCRandom: 400 random requests (keys, contexts with every kind of value,
// selectors, the -H header) answer the same through grpc-go as through connect-go.
func TestGRPCRandom(t *testing.T) {
	p := newGRPCPair(t, Options{Store: newDiffStore(t)})
	r := rand.New(rand.NewPCG(16, 1))
	keys := []string{"plain", "bool-static", "string-flag", "int-flag", "float-flag", "object-flag", "targeted", "no-default",
		"no-default-targeted", "disabled", "parse-error", "general-error", "array-flag", "static-ctx", "header-ctx", "shared",
		"b-only", "missing", "floats", "strings", "objects", "ints", "rich-metadata", "special-no-default", "bad-variant-name", "nan-metadata"}
	selectors := []string{"", "", "", "flagSetId=set-a", "flagSetId=set-b", "flagSetId=special", "flagSetId=", "source=src-a", "src-b", "team=x"}
	types := []string{"bool", "string", "int", "float", "object"}
	picks := []string{"half", "tiny", "big", "nan", "inf", "escapes", "nested", "neg", "max", "on", "nope", "bad-utf8", "unrepresentable", "list"}
	for range 400 {
		ctx := map[string]any{}
		for range r.IntN(4) {
			ctx[randString(r)] = randValue(r, 0)
		}
		switch r.IntN(6) {
		case 0:
			ctx["email"] = []string{"a@b.c", "x@y.z"}[r.IntN(2)]
		case 1:
			ctx["max"] = r.IntN(2) == 0
		case 2:
			ctx["vip"] = randValue(r, 2)
		case 3:
			ctx["pick"] = picks[r.IntN(len(picks))]
		case 4:
			ctx["user"] = "bob"
		}
		if r.IntN(5) == 0 {
			ctx = nil
		}
		md := metadata.MD{}
		if s := selectors[r.IntN(len(selectors))]; s != "" {
			md.Set("flagd-selector", s)
		}
		if r.IntN(3) == 0 {
			md.Set("x-user", []string{"bob", "alice", ""}[r.IntN(3)])
		}
		a := apis[r.IntN(len(apis))]
		p.compare(t, procPath(a.api, types[r.IntN(len(types))]), encodeResolve(t, keys[r.IntN(len(keys))], ctx), md)
	}
}

// TestGRPCRequestShapes: requests the hand decoder leaves to protobuf-go (repeated
// and merged fields, unknown fields and groups, wrong wire types, invalid UTF-8,
// malformed bytes, nesting at and over the limit) answer the same through grpc-go
// as through connect-go; those it decodes itself are checked against protobuf-go.
func TestGRPCRequestShapes(t *testing.T) {
	p := newGRPCPair(t, Options{})
	tag := protowire.AppendTag
	str := func(b []byte, num protowire.Number, s string) []byte {
		return protowire.AppendString(tag(b, num, protowire.BytesType), s)
	}
	msg := func(b []byte, num protowire.Number, m []byte) []byte {
		return protowire.AppendBytes(tag(b, num, protowire.BytesType), m)
	}
	entry := func(k string, v []byte) []byte { return msg(str(nil, 1, k), 2, v) }
	strValue := func(s string) []byte { return str(nil, 3, s) }
	ctx := func(entries ...[]byte) []byte {
		var b []byte
		for _, e := range entries {
			b = msg(b, 1, e)
		}
		return b
	}
	deep := func(depth int) []byte {
		v := strValue("leaf")
		for range depth - 1 {
			v = msg(nil, 5, ctx(entry("k", v))) // struct_value {k: v}
		}
		return ctx(entry("k", v))
	}
	cases := map[string][]byte{
		"empty":                     nil,
		"key only":                  str(nil, 1, "plain"),
		"key twice (last wins)":     str(str(nil, 1, "missing"), 1, "plain"),
		"context twice (merged)":    msg(msg(str(nil, 1, "targeted"), 2, ctx(entry("x", strValue("1")))), 2, ctx(entry("email", strValue("a@b.c")))),
		"repeated map key":          msg(str(nil, 1, "targeted"), 2, ctx(entry("email", strValue("x@y.z")), entry("email", strValue("a@b.c")))),
		"unknown fields":            protowire.AppendVarint(tag(protowire.AppendFixed32(tag(str(nil, 1, "plain"), 9, protowire.Fixed32Type), 7), 15, protowire.VarintType), 3),
		"unknown group":             tag(tag(str(nil, 1, "plain"), 12, protowire.StartGroupType), 12, protowire.EndGroupType),
		"key as a varint":           protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 5),
		"context as a varint":       protowire.AppendVarint(tag(str(nil, 1, "plain"), 2, protowire.VarintType), 5),
		"invalid UTF-8 key":         str(nil, 1, "pl\xffain"),
		"invalid UTF-8 context key": msg(str(nil, 1, "plain"), 2, ctx(entry("a\xffb", strValue("x")))),
		"invalid UTF-8 value":       msg(str(nil, 1, "plain"), 2, ctx(entry("a", strValue("x\xff")))),
		"truncated":                 str(nil, 1, "plain")[:4],
		"bad tag":                   {0x00},
		"value kind twice":          msg(str(nil, 1, "targeted"), 2, ctx(entry("email", append(strValue("x@y.z"), strValue("a@b.c")...)))),
		"value without kind":        msg(str(nil, 1, "targeted"), 2, ctx(entry("email", nil))),
		"entry without value":       msg(str(nil, 1, "targeted"), 2, ctx(str(nil, 1, "email"))),
		"null value":                msg(str(nil, 1, "targeted"), 2, ctx(entry("email", protowire.AppendVarint(tag(nil, 1, protowire.VarintType), 0)))),
		"list value":                msg(str(nil, 1, "targeted"), 2, ctx(entry("email", msg(nil, 6, msg(nil, 1, strValue("a")))))),
		"bool as varint 2":          msg(str(nil, 1, "targeted"), 2, ctx(entry("max", protowire.AppendVarint(tag(nil, 4, protowire.VarintType), 2)))),
		"depth at the limit":        msg(str(nil, 1, "plain"), 2, deep(protolimit.MaxContextDepth)),
		"depth over the limit":      msg(str(nil, 1, "plain"), 2, deep(protolimit.MaxContextDepth+1)),
		"depth 2000":                msg(str(nil, 1, "plain"), 2, deep(2000)),
	}
	for name, req := range cases {
		t.Run(name, func(t *testing.T) {
			for _, a := range apis {
				p.compare(t, procPath(a.api, "bool"), req, nil)
			}
			// what the hand decoder accepts, it decodes as protobuf-go does
			key, ctx, ok := decodeResolve(req)
			if !ok {
				return
			}
			var want evalv2.ResolveBooleanRequest
			if err := proto.Unmarshal(req, &want); err != nil {
				t.Fatalf("decoded a request protobuf-go refuses: %v", err)
			}
			if diff := cmp.Diff(map[string]any{"key": want.GetFlagKey(), "ctx": structMap(want.GetContext())}, map[string]any{"key": key, "ctx": ctx}); diff != "" {
				t.Errorf("(-protobuf-go +hand decoder):\n%s", diff)
			}
		})
	}
}

// TestGRPCResolveAllAndErrors: ResolveAll of v1 and schema.v1, unknown methods,
// and the body limit answer as connect-go does (codes; messages where connect-go
// has its own).
func TestGRPCResolveAllAndErrors(t *testing.T) {
	p := newGRPCPair(t, Options{Store: newDiffStore(t), MaxRequestBody: 4 << 10})
	for _, sel := range []string{"", "flagSetId=set-a", "source=src-b", "flagSetId=special", "bad=1"} {
		for _, ctx := range []map[string]any{nil, {"email": "a@b.c", "vip": true, "pick": "nan"}} {
			req, err := proto.Marshal(&evalv1.ResolveAllRequest{Context: func() *structpb.Struct {
				if ctx == nil {
					return nil
				}
				return mustStruct(t, ctx)
			}()})
			if err != nil {
				t.Fatal(err)
			}
			md := metadata.MD{}
			if sel != "" {
				md.Set("flagd-selector", sel)
			}
			p.compare(t, "/flagd.evaluation.v1.Service/ResolveAll", req, md)
			p.compare(t, "/schema.v1.Service/ResolveAll", req, md)
		}
	}
	codeOnly := func(method string, req []byte) {
		fast, slow := invokeRaw(t, p.fast, method, req, nil), invokeRaw(t, p.slow, method, req, nil)
		if fast.Code != slow.Code {
			t.Errorf("%s: grpc-go answered %v %q, connect-go %v %q", method, fast.Code, fast.Message, slow.Code, slow.Message)
		}
	}
	codeOnly("/flagd.evaluation.v2.Service/ResolveAll", nil)
	codeOnly("/flagd.evaluation.v1.Service/Nope", nil)
	codeOnly("/nope.Service/ResolveBoolean", nil)
	codeOnly("/flagd.evaluation.v2.Service/ResolveBoolean", encodeResolve(t, "plain", map[string]any{"blob": strings.Repeat("x", 8<<10)}))
	over := encodeResolve(t, "plain", map[string]any{"blob": strings.Repeat("x", 8<<10)})
	if got := invokeRaw(t, p.fast, "/flagd.evaluation.v2.Service/ResolveBoolean", over, nil); got.Code != codes.ResourceExhausted {
		t.Errorf("over the body limit: %v %q, want ResourceExhausted", got.Code, got.Message)
	}
	// a small gzip body that inflates over the limit (8 KiB to about 60 bytes)
	for _, conn := range []*grpc.ClientConn{p.fast, p.slow} {
		if got := invokeRaw(t, conn, "/flagd.evaluation.v2.Service/ResolveBoolean", over, nil, grpc.UseCompressor("gzip")); got.Code != codes.ResourceExhausted {
			t.Errorf("gzip inflating over the body limit: %v %q, want ResourceExhausted", got.Code, got.Message)
		}
	}
}

// TestGRPCEventStreamEncodedOnce: the streams of a selector share one encoding of
// a change, which decodes to the event connect-go sends.
func TestGRPCEventStreamEncodedOnce(t *testing.T) {
	st := newTestStore(t)
	svc := newService(withDefaults(t, Options{Store: st}), true)
	prev := st.Current()
	if err := st.Apply("src-b", []byte(strings.Replace(docB, `"from-b"`, `"from-b2"`, 1))); err != nil {
		t.Fatal(err)
	}
	cur := st.Current()
	a := svc.events.changes(prev, cur, selectorOf(t, ""))
	b := svc.events.changes(prev, cur, selectorOf(t, ""))
	if a == nil || a != b {
		t.Fatalf("two streams of one selector: %p, %p", a, b)
	}
	if !bytes.Equal(a.encoded(), a.encoded()) {
		t.Fatal("encoding differs")
	}
	var got evalv1.EventStreamResponse
	if err := proto.Unmarshal(a.encoded(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"flags": map[string]any{"shared": map[string]any{"type": "update"}}}
	if got.GetType() != eventConfigChange || !cmp.Equal(want, got.GetData().AsMap()) {
		t.Errorf("event %v, want configuration_change %v", &got, want)
	}
	if other := svc.events.changes(prev, cur, selectorOf(t, "flagSetId=set-a")); other != nil {
		t.Errorf("set-a saw a change of set-b: %v", other.data)
	}
}

func selectorOf(t *testing.T, s string) store.Selector {
	t.Helper()
	sel, err := store.ParseSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// FuzzResolveDecoder: whatever the hand decoder of Resolve* requests accepts,
// protobuf-go decodes to the same flag key and context; everything else is left to
// protobuf-go (and never panics).
func FuzzResolveDecoder(f *testing.F) {
	for _, seed := range []map[string]any{nil, {}, {"email": "a@b.c", "n": 1.5, "b": true, "z": nil, "l": []any{1.0, "x", map[string]any{"k": []any{}}}}} {
		f.Add(encodeResolve(f, "flag", seed))
	}
	f.Add([]byte{0x0a, 0x01, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		key, ctx, ok := decodeResolve(data)
		if !ok {
			return
		}
		var want evalv2.ResolveBooleanRequest
		if err := proto.Unmarshal(data, &want); err != nil {
			t.Fatalf("hand decoder accepted what protobuf-go refuses (%v): %x", err, data)
		}
		if diff := cmp.Diff(map[string]any{"key": want.GetFlagKey(), "ctx": structMap(want.GetContext())}, map[string]any{"key": key, "ctx": ctx},
			cmp.Comparer(func(a, b float64) bool { return a == b || (a != a && b != b) })); diff != "" {
			t.Fatalf("%x (-protobuf-go +hand decoder):\n%s", data, diff)
		}
	})
}

// TestGRPCCompressedAndAuth: gzip-compressed requests, and the bearer token check
// (--auth-token-file), answer the same through grpc-go as through connect-go
// (for a refused token, the code: connect-go's handler answers HTTP 401, which
// a gRPC client reads without the message).
func TestGRPCCompressedAndAuth(t *testing.T) {
	p := newGRPCPair(t, Options{Store: newDiffStore(t)})
	for _, a := range apis {
		for _, typ := range []string{"bool", "string", "int", "float", "object"} {
			for _, key := range []string{"plain", "string-flag", "targeted", "missing", "objects"} {
				p.compare(t, procPath(a.api, typ), encodeResolve(t, key, map[string]any{"email": "a@b.c", "pick": "big"}), nil, grpc.UseCompressor("gzip"))
			}
		}
	}
	p.compare(t, "/flagd.evaluation.v1.Service/ResolveAll", nil, nil, grpc.UseCompressor("gzip"))

	tokenFile := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tokens, err := server.NewTokens(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	pa := newGRPCPair(t, Options{Store: newDiffStore(t), Auth: tokens})
	good := metadata.Pairs("authorization", "Bearer s3cret-token")
	for _, a := range apis {
		pa.compare(t, procPath(a.api, "bool"), encodeResolve(t, "plain", nil), good)
	}
	pa.compare(t, "/schema.v1.Service/ResolveAll", nil, good)
	for _, md := range []metadata.MD{nil, metadata.Pairs("authorization", "Bearer wrong"), metadata.Pairs("authorization", "s3cret-token")} {
		for _, method := range []string{procPath(apiV2, "bool"), "/flagd.evaluation.v1.Service/ResolveAll"} {
			fast, slow := invokeRaw(t, pa.fast, method, nil, md), invokeRaw(t, pa.slow, method, nil, md)
			if fast.Code != codes.Unauthenticated || slow.Code != codes.Unauthenticated {
				t.Errorf("%s %v: grpc-go %v %q, connect-go %v %q, want Unauthenticated", method, md, fast.Code, fast.Message, slow.Code, slow.Message)
			}
		}
	}
}

// TestGRPCEventStreams: EventStream of the three services sends through grpc-go
// the messages and metadata connect-go sends: provider_ready, then the
// configuration_change of a change to the store both serve.
func TestGRPCEventStreams(t *testing.T) {
	st := newTestStore(t)
	p := newGRPCPair(t, Options{Store: st})
	desc := &grpc.StreamDesc{ServerStreams: true}
	type stream struct {
		s      grpc.ClientStream
		cancel context.CancelFunc
	}
	open := func(conn *grpc.ClientConn, method string) stream {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := conn.NewStream(ctx, desc, method)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendMsg(&rawFrame{}); err != nil {
			t.Fatal(err)
		}
		if err := s.CloseSend(); err != nil {
			t.Fatal(err)
		}
		return stream{s, cancel}
	}
	recv := func(s stream) *evalv1.EventStreamResponse {
		var f rawFrame
		if err := s.s.RecvMsg(&f); err != nil {
			t.Fatal(err)
		}
		var m evalv1.EventStreamResponse
		if err := proto.Unmarshal(f.b, &m); err != nil {
			t.Fatalf("event does not decode: %v", err)
		}
		return &m
	}
	methods := []string{"/flagd.evaluation.v1.Service/EventStream", "/flagd.evaluation.v2.Service/EventStream", "/schema.v1.Service/EventStream"}
	var fast, slow []stream
	for _, m := range methods {
		fast, slow = append(fast, open(p.fast, m)), append(slow, open(p.slow, m))
	}
	for i, m := range methods {
		a, b := recv(fast[i]), recv(slow[i])
		if !proto.Equal(a, b) {
			t.Errorf("%s first event: grpc-go %v, connect-go %v", m, a, b)
		}
		ha, _ := fast[i].s.Header()
		hb, _ := slow[i].s.Header()
		for _, h := range []metadata.MD{ha, hb} {
			delete(h, "date")
			delete(h, "grpc-accept-encoding")
		}
		if diff := cmp.Diff(hb, ha); diff != "" {
			t.Errorf("%s header (-connect-go +grpc-go):\n%s", m, diff)
		}
	}
	if err := st.Apply("src-plain", []byte(`{"flags": {}}`)); err != nil {
		t.Fatal(err)
	}
	for i, m := range methods {
		a, b := recv(fast[i]), recv(slow[i])
		if !proto.Equal(a, b) || a.GetType() != eventConfigChange {
			t.Errorf("%s change: grpc-go %v, connect-go %v", m, a, b)
		}
		fast[i].cancel()
		slow[i].cancel()
	}
}

// FuzzResolveEncoder: the hand encoding of a typed Resolve* response is byte for
// byte protobuf-go's deterministic encoding of the message connect-go sends, for
// every service, type and value shape (a value of another type or none, zero
// values, NaN, invalid UTF-8 in any string, metadata and object Structs); where
// it declines (exact false), protobuf-go refuses the message too.
func FuzzResolveEncoder(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint8(1), true, "s", int64(7), 1.5, "STATIC", "on", "flagSetId", "set-a")
	f.Add(uint8(1), uint8(4), uint8(5), false, "k", int64(0), 0.0, "TARGETING_MATCH", "", "", "")
	f.Add(uint8(2), uint8(2), uint8(3), false, "", int64(-1), math.NaN(), "DEFAULT", "v\xff", "a\xffb", "x")
	f.Add(uint8(1), uint8(3), uint8(0), false, "", int64(0), math.Copysign(0, -1), "", "", "k", "v")
	svc := newService(Options{Store: newTestStore(f), Enricher: testEnricher()}, true)
	gen := uint64(0)
	types := []eval.Type{eval.TypeBoolean, eval.TypeString, eval.TypeInteger, eval.TypeFloat, eval.TypeObject}
	f.Fuzz(func(t *testing.T, apiIdx, typIdx, kind uint8, b bool, s string, i int64, fl float64, reason, variant, metaKey, metaVal string) {
		p := fastProcedure{api: apis[int(apiIdx)%len(apis)].api, typ: types[int(typIdx)%len(types)]}
		var value any
		switch kind % 6 {
		case 1:
			value = b
		case 2:
			value = s
		case 3:
			value = i
		case 4:
			value = fl
		case 5:
			value = map[string]any{s: fl, metaKey: []any{b, metaVal, map[string]any{}}}
		}
		meta := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		if metaKey != "" {
			meta.Fields[metaKey] = structpb.NewStringValue(metaVal)
			meta.Fields["n"] = structpb.NewNumberValue(fl)
		}
		gen++
		r := result{
			entry: &store.Entry{Flag: &eval.Flag{Key: "f"}},
			gen:   gen,
			res:   eval.Resolution{Value: value, Variant: variant, Reason: eval.Reason(reason)},
			meta:  newCachedStruct(meta),
		}
		checkResolveAllEncoder(t, svc, p.api, r, s)
		out, exact, err := svc.appendProtoResponse(nil, p, r)
		msg, merr := svc.responseMessage(p.api, p.typ, r)
		if err != nil || merr != nil {
			if (err == nil) != (merr == nil) {
				t.Fatalf("%+v: hand encoder error %v, message error %v", p, err, merr)
			}
			return
		}
		want, werr := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		if !exact {
			if werr == nil {
				t.Fatalf("%+v %+v: hand encoder declined a message protobuf-go encodes", p, r.res)
			}
			return
		}
		if werr != nil {
			t.Fatalf("%+v %+v: hand encoder wrote a message protobuf-go refuses (%v)", p, r.res, werr)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("%+v %+v:\n hand        %x\n protobuf-go %x", p, r.res, out, want)
		}
	})
}

// TestGRPCHalfSentRPC: an RPC whose headers arrive but whose request message never
// does is ended after the listener's ReadTimeout (grpc-go has no such bound of its
// own: the handler's goroutine and stream slot would be held for ever), and an
// EventStream whose request arrived outlives it.
func TestGRPCHalfSentRPC(t *testing.T) {
	srv := serveWith(t, newService(withDefaults(t, Options{}), true), server.ListenConfig{ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 300 * time.Millisecond}, true)
	conn := grpcConn(t, srv.ln.Addr().String(), insecure.NewCredentials())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}
	half, err := conn.NewStream(ctx, desc, "/flagd.evaluation.v2.Service/ResolveBoolean", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	events, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/flagd.evaluation.v2.Service/EventStream", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := events.SendMsg(&rawFrame{}); err != nil {
		t.Fatal(err)
	}
	_ = events.CloseSend()
	var f rawFrame
	if err := events.RecvMsg(&f); err != nil {
		t.Fatalf("provider_ready: %v", err)
	}
	err = half.RecvMsg(&f) // the request is never sent
	if st, _ := status.FromError(err); err == nil || ctx.Err() != nil || st.Code() == codes.OK {
		t.Fatalf("half-sent RPC: %v (test context: %v), want it ended by the server", err, ctx.Err())
	}
	// the EventStream is still open: a change reaches it
	if err := srv.st.Apply("src-plain", []byte(`{"flags": {}}`)); err != nil {
		t.Fatal(err)
	}
	if err := events.RecvMsg(&f); err != nil {
		t.Fatalf("EventStream after the read timeout: %v", err)
	}
}

// gatherMetrics is "name{label=value,...}" → a counter's value or a histogram's
// sample count and, for the size histograms, "…#sum" → its sum.
func gatherMetrics(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case mt.GetCounter() != nil:
				got[key] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				got[key] = float64(mt.GetHistogram().GetSampleCount())
				if strings.HasSuffix(f.GetName(), "_size_bytes") {
					got[key+"#sum"] = mt.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return got
}

// TestGRPCMetrics: the same gRPC calls leave the same metrics (evaluation counters,
// and the HTTP server series: route, status, scheme, response sizes) whether
// grpc-go or connect-go answers them.
func TestGRPCMetrics(t *testing.T) {
	st := newDiffStore(t)
	var regs [2]*prometheus.Registry
	var conns [2]*grpc.ClientConn
	for i, grpcGo := range []bool{true, false} {
		regs[i] = prometheus.NewRegistry()
		m, err := metrics.New(regs[i])
		if err != nil {
			t.Fatal(err)
		}
		srv := serveWith(t, newService(withDefaults(t, Options{Store: st, Metrics: m}), true), server.ListenConfig{}, grpcGo)
		conns[i] = grpcConn(t, srv.ln.Addr().String(), insecure.NewCredentials())
	}
	for _, conn := range conns {
		for _, a := range apis {
			for _, key := range []string{"plain", "targeted", "missing", "string-flag", "disabled"} {
				invokeRaw(t, conn, procPath(a.api, "bool"), encodeResolve(t, key, map[string]any{"email": "a@b.c"}), nil, grpc.ForceCodecV2(rawCodec{}))
			}
			invokeRaw(t, conn, procPath(a.api, "object"), encodeResolve(t, "objects", nil), nil, grpc.ForceCodecV2(rawCodec{}))
		}
		invokeRaw(t, conn, "/flagd.evaluation.v1.Service/ResolveAll", nil, metadata.Pairs("flagd-selector", "flagSetId=set-a"), grpc.ForceCodecV2(rawCodec{}))
		invokeRaw(t, conn, procPath(apiV2, "bool"), encodeResolve(t, "plain", nil), nil, grpc.ForceCodecV2(rawCodec{}), grpc.UseCompressor("gzip"))
	}
	fast, slow := gatherMetrics(t, regs[0]), gatherMetrics(t, regs[1])
	if diff := cmp.Diff(slow, fast); diff != "" {
		t.Errorf("metrics (-connect-go +grpc-go):\n%s", diff)
	}
	if len(fast) < 10 {
		t.Errorf("only %d series recorded: %v", len(fast), fast)
	}
}

// checkResolveAllEncoder: a ResolveAll answer of the fuzzed resolution (and a
// second flag keyed by key), encoded by hand, is byte for byte protobuf-go's
// deterministic encoding of the message connect-go sends, or declined where
// protobuf-go refuses it.
func checkResolveAllEncoder(t *testing.T, svc *Service, a api, r result, key string) {
	t.Helper()
	if a == apiV2 {
		a = apiV1
	}
	it := bulkItem{key: "f", reason: string(r.res.Reason), variant: r.res.Variant, meta: r.meta.msg, metaC: r.meta}
	switch v := r.res.Value.(type) {
	case bool, string, float64:
		it.value = v
	case map[string]any:
		o, err := svc.cache.object(r.gen, r.entry, r.res.Variant, v)
		if err != nil {
			return
		}
		it.value, it.objC = o.msg, o
	case int64:
		it.value = &structpb.Struct{} // the zero object of a failed evaluation
	}
	items := []bulkItem{it, {key: key, reason: "STATIC", value: true, meta: r.meta.msg, metaC: r.meta}}
	if key <= "f" {
		return // items are sorted by key, as the store lists them
	}
	sel := selectorOf(t, "")
	var msg proto.Message = schemaAllResponse(items)
	var selMeta []byte
	if a == apiV1 {
		msg = v1AllResponse(items, sel)
		selMeta = []byte{}
	}
	out, exact := appendResolveAll(nil, a, items, selMeta)
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if !exact {
		if err == nil {
			t.Fatalf("ResolveAll %v %+v: hand encoder declined a message protobuf-go encodes", a, items)
		}
		return
	}
	if err != nil {
		t.Fatalf("ResolveAll %v %+v: hand encoder wrote a message protobuf-go refuses (%v)", a, items, err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("ResolveAll %v %+v:\n hand        %x\n protobuf-go %x", a, items, out, want)
	}
}
