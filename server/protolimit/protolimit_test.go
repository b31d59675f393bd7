package protolimit

import (
	"errors"
	"strings"
	"testing"

	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// nestedContext is a request body whose context nests depth levels: the context
// object, then depth-1 levels alternating arrays and objects.
func nestedContext(depth int) string {
	var open, closing strings.Builder
	for i := 1; i < depth; i++ {
		if i%2 == 1 {
			open.WriteString(`[`)
			closing.WriteString(`]`)
		} else {
			open.WriteString(`{"k":`)
			closing.WriteString(`}`)
		}
	}
	c := closing.String()
	rev := []rune(c)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	return `{"flagKey":"f","context":{"x":` + open.String() + `1` + string(rev) + `}}`
}

// TestDepthLimits: a context of MaxContextDepth levels decodes from JSON and from
// binary; one level more is ErrTooDeep for both, before protobuf-go decodes it, and
// protobuf-go's own limit agrees with the check.
func TestDepthLimits(t *testing.T) {
	for _, depth := range []int{1, 2, MaxContextDepth - 1, MaxContextDepth, MaxContextDepth + 1, 100, 10000} {
		body := nestedContext(depth)
		wantErr := depth > MaxContextDepth
		var fromJSON evalv1.ResolveBooleanRequest
		err := UnmarshalJSON([]byte(body), &fromJSON)
		if got := err != nil; got != wantErr || (wantErr && !errors.Is(err, ErrTooDeep)) {
			t.Fatalf("depth %d: UnmarshalJSON error = %v, want too deep: %v", depth, err, wantErr)
		}
		// the same message in binary (encoded without limits)
		var m evalv1.ResolveBooleanRequest
		if err := (protojson.UnmarshalOptions{RecursionLimit: 100000}).Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		bin, err := proto.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		var fromBinary evalv1.ResolveBooleanRequest
		err = UnmarshalBinary(bin, &fromBinary)
		if got := err != nil; got != wantErr || (wantErr && !errors.Is(err, ErrTooDeep)) {
			t.Fatalf("depth %d: UnmarshalBinary error = %v, want too deep: %v", depth, err, wantErr)
		}
		if !wantErr && !proto.Equal(&fromJSON, &fromBinary) {
			t.Fatalf("depth %d: JSON and binary decode differently", depth)
		}
		// protojson's own limit, alone, draws the line at the same place; binary's
		// backstop counts map entries too, so an all-object context is the worst case
		err = protojson.UnmarshalOptions{RecursionLimit: jsonRecursionLimit}.Unmarshal([]byte(body), &evalv1.ResolveBooleanRequest{})
		if got := err != nil; got != wantErr {
			t.Errorf("depth %d: protojson with RecursionLimit %d: error %v, the check says too deep: %v", depth, jsonRecursionLimit, err, wantErr)
		}
		allObjects := `{"flagKey":"f","context":` + strings.Repeat(`{"k":`, depth-1) + `{}` + strings.Repeat(`}`, depth-1) + `}`
		var objects evalv1.ResolveBooleanRequest
		if err := (protojson.UnmarshalOptions{RecursionLimit: 100000}).Unmarshal([]byte(allObjects), &objects); err != nil {
			t.Fatal(err)
		}
		bin, _ = proto.Marshal(&objects)
		if err := UnmarshalBinary(bin, &evalv1.ResolveBooleanRequest{}); (err != nil) != wantErr || (wantErr && !errors.Is(err, ErrTooDeep)) {
			t.Errorf("depth %d, objects only: UnmarshalBinary error %v, want too deep: %v", depth, err, wantErr)
		}
		err = proto.UnmarshalOptions{RecursionLimit: binaryRecursionLimit}.Unmarshal(bin, &evalv1.ResolveBooleanRequest{})
		if wantErr != (err != nil) && depth <= MaxContextDepth+1 {
			t.Errorf("depth %d, objects only: protobuf-go with RecursionLimit %d: error %v, want too deep: %v", depth, binaryRecursionLimit, err, wantErr)
		}
	}
}

// TestCheckJSON: only objects and arrays outside strings count, wherever they are.
func TestCheckJSON(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	for _, tc := range []struct {
		doc  string
		want bool // too deep
	}{
		{`{"a":"` + deep + `"}`, false},
		{`{"a":"\"` + deep + `"}`, false},
		{`{"a":"\\", "b":` + deep + `}`, true},
		{`{"unknown":` + deep + `,"flagKey":"f"}`, true},
		{strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth), false},
		{`{"unterminated`, false},
		{`]]]]`, false},
	} {
		if got := CheckJSON([]byte(tc.doc)) != nil; got != tc.want {
			t.Errorf("%.60q: too deep = %v, want %v", tc.doc, got, tc.want)
		}
	}
}

// TestCheckBinaryGroupsAndMalformed: unknown groups count as protobuf-go counts them
// (it skips them recursively); malformed input is left to the decoder.
func TestCheckBinaryGroupsAndMalformed(t *testing.T) {
	md := (&evalv1.ResolveBooleanRequest{}).ProtoReflect().Descriptor()
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
	if err := CheckBinary(groups(MaxMessageDepth-1), md); err != nil {
		t.Errorf("%d nested unknown groups: %v", MaxMessageDepth-1, err)
	}
	if err := CheckBinary(groups(10000), md); !errors.Is(err, ErrTooDeep) {
		t.Errorf("10,000 nested unknown groups: %v, want too deep", err)
	}
	for _, bad := range [][]byte{{0x0a}, {0x0a, 0x05, 'a'}, {0x12, 0x02, 0x0a, 0x7f}, {0x4b}, {0x4c}, {0xff}} {
		if err := CheckBinary(bad, md); err != nil {
			t.Errorf("malformed %x: %v, want nil (the decoder reports it)", bad, err)
		}
		if err := UnmarshalBinary(bad, &evalv1.ResolveBooleanRequest{}); err == nil || errors.Is(err, ErrTooDeep) {
			t.Errorf("malformed %x: UnmarshalBinary error %v, want the decoder's", bad, err)
		}
	}
}
