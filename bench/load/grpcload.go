package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// The gRPC workloads use grpc-go clients, as the SDK providers in rpc mode do
// (Java, JS, Python, .NET: their gRPC libraries), with a codec that sends
// pre-encoded requests and keeps responses as bytes: the first answer of each
// client is decoded and checked, later ones are checked by length and a known
// fragment, so that the load generator leaves the cores to the server.

// frame is a message as bytes.
type frame struct{ b []byte }

// rawClientCodec sends frame bytes as they are and receives into a frame,
// reusing its buffer.
type rawClientCodec struct{}

func (rawClientCodec) Name() string { return "proto" }

func (rawClientCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("rawClientCodec: %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
}

func (rawClientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("rawClientCodec: %T", v)
	}
	f.b = f.b[:0]
	for _, b := range data {
		f.b = append(f.b, b.ReadOnlyData()...)
	}
	return nil
}

// grpcTarget is how a gRPC workload reaches a server's evaluation listener.
type grpcTarget struct {
	target string // grpc-go target: host:port or unix://path
	creds  credentials.TransportCredentials
}

// evalTarget is the evaluation listener of s the workload's transport needs.
func evalTarget(s *server, t transport) (grpcTarget, error) {
	switch t {
	case transportTLS:
		if s.evalTLS == "" {
			return grpcTarget{}, errors.New("the server has no TLS evaluation listener")
		}
		return grpcTarget{target: s.evalTLS, creds: credentials.NewTLS(s.clientTLS)}, nil
	case transportUnix:
		if s.evalUnix == "" {
			return grpcTarget{}, errors.New("the server has no unix socket evaluation listener")
		}
		return grpcTarget{target: "unix://" + s.evalUnix, creds: insecure.NewCredentials()}, nil
	}
	return grpcTarget{target: s.eval, creds: insecure.NewCredentials()}, nil
}

// dialGRPC opens a client connection (connected on first use) with the raw codec.
func dialGRPC(t grpcTarget) (*grpc.ClientConn, error) {
	return grpc.NewClient(t.target, grpc.WithTransportCredentials(t.creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawClientCodec{})))
}

// grpcCall is a gRPC workload's request and how its answer is checked.
type grpcCall struct {
	method   string
	request  proto.Message
	validate func(body []byte) error // the first answer, decoded
	fragment []byte                  // in every later answer
}

// smallContext is the evaluation context of the targeting workloads.
func smallContext() *structpb.Struct {
	s, _ := structpb.NewStruct(map[string]any{"targetingKey": "user-1", "email": "ada" + flaggen.TargetingEmailSuffix, "country": "de"})
	return s
}

// grpcCalls are the gRPC workloads' calls by workload name.
func grpcCalls(flagCount int) map[string]grpcCall {
	static := func(got proto.Message, want map[string]any) func([]byte) error {
		return func(body []byte) error {
			m := proto.Clone(got)
			if err := proto.Unmarshal(body, m); err != nil {
				return fmt.Errorf("answer %x: %w", body, err)
			}
			r := m.(interface {
				GetReason() string
				GetVariant() string
			})
			if r.GetReason() != want["reason"] || r.GetVariant() != want["variant"] {
				return fmt.Errorf("answer %v, want %v", m, want)
			}
			var value any
			switch v := m.(type) {
			case *evalv1.ResolveBooleanResponse:
				value = v.GetValue()
			case *evalv2.ResolveStringResponse:
				value = v.GetValue()
			case *evalv2.ResolveIntResponse:
				value = v.GetValue()
			case *evalv2.ResolveFloatResponse:
				value = v.GetValue()
			case *evalv2.ResolveObjectResponse:
				value = v.GetValue().AsMap()
			}
			if diff := cmp.Diff(want["value"], value); diff != "" {
				return fmt.Errorf("answer %v: value (-want +got):\n%s", m, diff)
			}
			return nil
		}
	}
	want := func(value any, reason string) map[string]any {
		return map[string]any{"value": value, "reason": reason, "variant": "on"}
	}
	floorValidate := static(&evalv1.ResolveBooleanResponse{}, want(true, "STATIC"))
	return map[string]grpcCall{
		wlGRPCStatic: {"/flagd.evaluation.v1.Service/ResolveBoolean",
			&evalv1.ResolveBooleanRequest{FlagKey: flaggen.StaticBoolKey, Context: &structpb.Struct{}},
			floorValidate, []byte("STATIC")},
		wlGRPCTargeting: {"/flagd.evaluation.v1.Service/ResolveBoolean",
			&evalv1.ResolveBooleanRequest{FlagKey: flaggen.TargetingBoolKey, Context: smallContext()},
			static(&evalv1.ResolveBooleanResponse{}, want(true, "TARGETING_MATCH")), []byte("TARGETING_MATCH")},
		wlGRPCString: {"/flagd.evaluation.v2.Service/ResolveString",
			&evalv2.ResolveStringRequest{FlagKey: flaggen.StaticStringKey, Context: &structpb.Struct{}},
			static(&evalv2.ResolveStringResponse{}, want(flaggen.StaticString, "STATIC")), []byte(flaggen.StaticString)},
		wlGRPCInt: {"/flagd.evaluation.v2.Service/ResolveInt",
			&evalv2.ResolveIntRequest{FlagKey: flaggen.StaticIntKey, Context: &structpb.Struct{}},
			static(&evalv2.ResolveIntResponse{}, want(int64(flaggen.StaticInt), "STATIC")), []byte("STATIC")},
		wlGRPCFloat: {"/flagd.evaluation.v2.Service/ResolveFloat",
			&evalv2.ResolveFloatRequest{FlagKey: flaggen.StaticFloatKey, Context: &structpb.Struct{}},
			static(&evalv2.ResolveFloatResponse{}, want(flaggen.StaticFloat, "STATIC")), []byte("STATIC")},
		wlGRPCObject: {"/flagd.evaluation.v2.Service/ResolveObject",
			&evalv2.ResolveObjectRequest{FlagKey: flaggen.StaticObjectKey, Context: &structpb.Struct{}},
			static(&evalv2.ResolveObjectResponse{}, want(flaggen.StaticObject(), "STATIC")), []byte("acme")},
		wlGRPCAll: {"/flagd.evaluation.v1.Service/ResolveAll",
			&evalv1.ResolveAllRequest{Context: smallContext()},
			func(body []byte) error {
				var r evalv1.ResolveAllResponse
				if err := proto.Unmarshal(body, &r); err != nil {
					return err
				}
				// v1 leaves out flags whose default variant has no usable type; the
				// generated mix has none, so every flag is there
				if len(r.GetFlags()) != flagCount {
					return fmt.Errorf("ResolveAll answered %d flags, want %d", len(r.GetFlags()), flagCount)
				}
				if f := r.GetFlags()[flaggen.StaticBoolKey]; !f.GetBoolValue() || f.GetReason() != "STATIC" {
					return fmt.Errorf("ResolveAll: %s is %v", flaggen.StaticBoolKey, f)
				}
				if f := r.GetFlags()[flaggen.TargetingBoolKey]; !f.GetBoolValue() || f.GetReason() != "TARGETING_MATCH" {
					return fmt.Errorf("ResolveAll: %s is %v", flaggen.TargetingBoolKey, f)
				}
				return nil
			}, []byte(flaggen.StaticBoolKey)},
	}
}

// grpcCaller is a caller over one gRPC client connection.
type grpcCaller struct {
	conn      *grpc.ClientConn
	owned     bool // the caller closes conn
	spec      grpcCall
	req, resp frame
	timeout   time.Duration
	validated bool
	wantLen   int
}

// newGRPCCaller returns a caller of c on conn.
func newGRPCCaller(conn *grpc.ClientConn, owned bool, c grpcCall, timeout time.Duration) (*grpcCaller, error) {
	req, err := proto.Marshal(c.request)
	if err != nil {
		return nil, err
	}
	return &grpcCaller{conn: conn, owned: owned, spec: c, req: frame{b: req}, timeout: timeout}, nil
}

// call sends one request; the first answer is decoded, later ones checked cheaply.
func (c *grpcCaller) call(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.conn.Invoke(ctx, c.spec.method, &c.req, &c.resp); err != nil {
		return err
	}
	if !c.validated {
		if err := c.spec.validate(c.resp.b); err != nil {
			return err
		}
		c.validated, c.wantLen = true, len(c.resp.b)
		return nil
	}
	if len(c.resp.b) != c.wantLen || !bytes.Contains(c.resp.b, c.spec.fragment) {
		return fmt.Errorf("wrong answer: %d bytes, want %d containing %q", len(c.resp.b), c.wantLen, c.spec.fragment)
	}
	return nil
}

// close closes the caller's own connection.
func (c *grpcCaller) close() {
	if c.owned {
		_ = c.conn.Close()
	}
}
