package evaluation

import (
	"context"
	"fmt"
	"net/http"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// resolveMessage serves a typed Resolve* method of any of the services: it
// evaluates and builds the response message.
func (s *Service) resolveMessage(ctx context.Context, header http.Header, key string, reqCtx *structpb.Struct, t eval.Type, a api) (proto.Message, error) {
	r, err := s.resolve(ctx, httpMeta(header), key, reqCtx, t, a)
	if err != nil {
		return nil, err
	}
	return s.responseMessage(a, t, r)
}

// reply wraps a response message built by resolveMessage for connect-go.
func reply[T any](m proto.Message, err error) (*connect.Response[T], error) {
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(any(m).(*T)), nil
}

// responseMessage builds the response of a typed Resolve* method:
//   - v1 and schema.v1 always carry value, reason, variant and metadata (a code
//     default has the zero value and an empty variant; an object's zero value is
//     {}, as flagd's structpb.NewStruct(nil));
//   - v2's value and variant are proto3 optional and stay unset for a code default
//     (flagd also leaves an empty variant name unset).
//
// The fast path writes the same JSON by hand and falls back to this message when
// it cannot (protojson refuses a value).
func (s *Service) responseMessage(a api, t eval.Type, r result) (proto.Message, error) {
	var obj *structpb.Struct
	if t == eval.TypeObject {
		v, err := s.objectValue(r)
		if err != nil {
			return nil, err
		}
		if v != nil {
			obj = v.msg
		}
	}
	reason, variant, meta := string(r.res.Reason), r.res.Variant, r.meta.msg
	if a == apiV2 {
		if m := v2Message(t, r, reason, meta, obj); m != nil {
			return m, nil
		}
		return nil, unknownMethod(a, t)
	}
	if obj == nil {
		obj = &structpb.Struct{}
	}
	b, _ := r.res.Value.(bool)
	str, _ := r.res.Value.(string)
	i, _ := r.res.Value.(int64)
	f, _ := r.res.Value.(float64)
	switch a {
	case apiV1:
		switch t {
		case eval.TypeBoolean:
			return &evalv1.ResolveBooleanResponse{Value: b, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeString:
			return &evalv1.ResolveStringResponse{Value: str, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeInteger:
			return &evalv1.ResolveIntResponse{Value: i, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeFloat:
			return &evalv1.ResolveFloatResponse{Value: f, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeObject:
			return &evalv1.ResolveObjectResponse{Value: obj, Reason: reason, Variant: variant, Metadata: meta}, nil
		}
	case apiSchemaV1:
		switch t {
		case eval.TypeBoolean:
			return &schemav1.ResolveBooleanResponse{Value: b, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeString:
			return &schemav1.ResolveStringResponse{Value: str, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeInteger:
			return &schemav1.ResolveIntResponse{Value: i, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeFloat:
			return &schemav1.ResolveFloatResponse{Value: f, Reason: reason, Variant: variant, Metadata: meta}, nil
		case eval.TypeObject:
			return &schemav1.ResolveObjectResponse{Value: obj, Reason: reason, Variant: variant, Metadata: meta}, nil
		}
	}
	return nil, unknownMethod(a, t)
}

// unknownMethod cannot happen: every typed method has a response message.
func unknownMethod(a api, t eval.Type) error {
	return connect.NewError(connect.CodeInternal, fmt.Errorf("no response message for api %d, type %v", a, t))
}

func v2Message(t eval.Type, r result, reason string, meta, obj *structpb.Struct) proto.Message {
	switch t {
	case eval.TypeBoolean:
		out := &evalv2.ResolveBooleanResponse{Reason: reason, Metadata: meta}
		if v, ok := r.res.Value.(bool); ok {
			out.Value, out.Variant = &v, variantOf(r)
		}
		return out
	case eval.TypeString:
		out := &evalv2.ResolveStringResponse{Reason: reason, Metadata: meta}
		if v, ok := r.res.Value.(string); ok {
			out.Value, out.Variant = &v, variantOf(r)
		}
		return out
	case eval.TypeInteger:
		out := &evalv2.ResolveIntResponse{Reason: reason, Metadata: meta}
		if v, ok := r.res.Value.(int64); ok {
			out.Value, out.Variant = &v, variantOf(r)
		}
		return out
	case eval.TypeFloat:
		out := &evalv2.ResolveFloatResponse{Reason: reason, Metadata: meta}
		if v, ok := r.res.Value.(float64); ok {
			out.Value, out.Variant = &v, variantOf(r)
		}
		return out
	case eval.TypeObject:
		out := &evalv2.ResolveObjectResponse{Reason: reason, Metadata: meta, Value: obj}
		if obj != nil {
			out.Variant = variantOf(r)
		}
		return out
	}
	return nil
}

// variantOf is the optional variant of a resolution with a value (flagd leaves an
// empty variant name unset).
func variantOf(r result) *string {
	if r.res.Variant == "" {
		return nil
	}
	v := r.res.Variant
	return &v
}
