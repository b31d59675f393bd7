package protolimit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ConnectProto is connect-go's binary protobuf codec ("proto": Connect, gRPC and
// gRPC-Web) with the bounds of this package. Pass it with connect.WithCodec.
type ConnectProto struct{}

// Name is the codec name connect-go matches against the content type.
func (ConnectProto) Name() string { return "proto" }

// IsBinary reports true.
func (ConnectProto) IsBinary() bool { return true }

// Marshal encodes a message.
func (c ConnectProto) Marshal(message any) ([]byte, error) { return c.MarshalAppend(nil, message) }

// MarshalAppend encodes a message after dst.
func (ConnectProto) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, err := asMessage(message)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable encodes deterministically.
func (ConnectProto) MarshalStable(message any) ([]byte, error) {
	m, err := asMessage(message)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Unmarshal decodes with UnmarshalBinary.
func (ConnectProto) Unmarshal(data []byte, message any) error {
	m, err := asMessage(message)
	if err != nil {
		return err
	}
	if err := UnmarshalBinary(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", message, err)
	}
	return nil
}

// ConnectJSON is connect-go's JSON codec with the bounds of this package: it decodes
// with UnmarshalJSON (unknown fields ignored) and encodes with the given options.
type ConnectJSON struct {
	name    string
	marshal protojson.MarshalOptions
}

// NewConnectJSON returns the codec for name: "json" or "json; charset=utf-8"
// (connect-go registers both; replace both).
func NewConnectJSON(name string, marshal protojson.MarshalOptions) *ConnectJSON {
	return &ConnectJSON{name: name, marshal: marshal}
}

// Name is the codec name connect-go matches against the content type.
func (c *ConnectJSON) Name() string { return c.name }

// IsBinary reports false: JSON is text.
func (c *ConnectJSON) IsBinary() bool { return false }

// Marshal encodes a message.
func (c *ConnectJSON) Marshal(message any) ([]byte, error) { return c.MarshalAppend(nil, message) }

// MarshalAppend encodes a message after dst.
func (c *ConnectJSON) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, err := asMessage(message)
	if err != nil {
		return nil, err
	}
	return c.marshal.MarshalAppend(dst, m)
}

// MarshalStable encodes with whitespace normalised (protojson varies it on purpose).
func (c *ConnectJSON) MarshalStable(message any) ([]byte, error) {
	data, err := c.Marshal(message)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Unmarshal decodes with UnmarshalJSON.
func (c *ConnectJSON) Unmarshal(data []byte, message any) error {
	m, err := asMessage(message)
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	if err := UnmarshalJSON(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", message, err)
	}
	return nil
}

func asMessage(message any) (proto.Message, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", message)
	}
	return m, nil
}

// GRPCCodec is grpc-go's "proto" codec with the bounds of this package, for
// grpc.ForceServerCodecV2 and grpc.ForceCodecV2. It encodes with grpc-go's own codec.
type GRPCCodec struct{}

// Name is the codec's content subtype.
func (GRPCCodec) Name() string { return grpcproto.Name }

// Marshal encodes with grpc-go's proto codec (buffer pooling included); an
// *Encoded message is sent as it is.
func (GRPCCodec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*Encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(e.b)}, nil
	}
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

// Encoded is a message encoded once, for a server that sends the same message on
// many streams (SendMsg(encoded) with GRPCCodec or GRPCServerCodec): each send
// references the same bytes instead of marshalling and holding a copy per stream
// until the stream's flow control lets it go. It is immutable.
type Encoded struct{ b []byte }

// Encode encodes m (deterministically) for sending many times.
func Encode(m proto.Message) (*Encoded, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &Encoded{b: b}, nil
}

// Len is the size of the encoded message.
func (e *Encoded) Len() int { return len(e.b) }

// Unmarshal decodes with UnmarshalBinary.
func (GRPCCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, err := asMessage(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return UnmarshalBinary(buf.ReadOnlyData(), m)
}

// GRPCServerCodec is GRPCCodec for a grpc-go server whose services are registered
// through GRPCService and whose streams pass StreamInterceptor: grpc-go reports
// every codec error as Internal (and a stream's before any interceptor sees it), so
// instead of failing, a message refused as too deep decodes to an empty message
// marked with an unknown field, which those wrappers turn into InvalidArgument
// naming the limit. Anywhere else use GRPCCodec: a handler would see the empty
// message.
type GRPCServerCodec struct{ GRPCCodec }

// Unmarshal decodes with UnmarshalBinary, or marks m when it is too deep.
func (GRPCServerCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, err := asMessage(v)
	if err != nil {
		return err
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	err = UnmarshalBinary(buf.ReadOnlyData(), m)
	if errors.Is(err, ErrTooDeep) {
		proto.Reset(m)
		m.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, markerField, protowire.BytesType), err.Error()))
		return nil
	}
	return err
}

// markerField is the unknown field GRPCServerCodec leaves in a refused message.
const markerField = protowire.MaxValidNumber

// refused returns the InvalidArgument status for a message GRPCServerCodec marked.
func refused(v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return nil
	}
	unknown := m.ProtoReflect().GetUnknown()
	num, typ, n := protowire.ConsumeTag(unknown)
	if n < 0 || num != markerField || typ != protowire.BytesType {
		return nil
	}
	text, _ := protowire.ConsumeString(unknown[n:])
	return status.Error(codes.InvalidArgument, "grpc: error unmarshalling request: "+text)
}

// GRPCService returns a copy of desc whose unary handlers answer InvalidArgument for
// a request GRPCServerCodec refused.
func GRPCService(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	out := *desc
	out.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		handler := m.Handler
		m.Handler = func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			return handler(srv, ctx, func(v any) error {
				if err := dec(v); err != nil {
					return err
				}
				return refused(v)
			}, interceptor)
		}
		out.Methods[i] = m
	}
	return &out
}

// StreamInterceptor answers InvalidArgument for a stream message GRPCServerCodec
// refused.
func StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	return next(srv, checkedStream{ss})
}

type checkedStream struct{ grpc.ServerStream }

func (s checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return refused(m)
}
