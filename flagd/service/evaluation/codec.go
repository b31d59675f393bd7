package evaluation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// jsonCodec is connect's JSON codec with flagd's options: unpopulated fields are
// emitted (v1 always carries value, reason, variant and metadata; unset proto3
// optional fields of v2 stay omitted), unknown request fields are ignored, int64
// values are JSON strings (protojson's rule).
type jsonCodec struct {
	name    string
	marshal protojson.MarshalOptions
}

// Name is the codec name connect matches against the content type.
func (c *jsonCodec) Name() string { return c.name }

// IsBinary reports false: JSON is text.
func (c *jsonCodec) IsBinary() bool { return false }

// Marshal encodes a protobuf message.
func (c *jsonCodec) Marshal(message any) ([]byte, error) { return c.MarshalAppend(nil, message) }

// MarshalAppend encodes a protobuf message after dst.
func (c *jsonCodec) MarshalAppend(dst []byte, message any) ([]byte, error) {
	m, ok := message.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", message)
	}
	return c.marshal.MarshalAppend(dst, m)
}

// MarshalStable encodes with whitespace normalised (protojson varies it on purpose).
func (c *jsonCodec) MarshalStable(message any) ([]byte, error) {
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

// Unmarshal decodes a request, ignoring unknown fields, within protolimit's bounds
// (a context nested deeper than protolimit.MaxContextDepth is refused before
// protojson decodes it).
func (c *jsonCodec) Unmarshal(data []byte, message any) error {
	m, ok := message.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", message)
	}
	if len(data) == 0 {
		return errors.New("zero-length payload is not a valid JSON object")
	}
	if err := protolimit.UnmarshalJSON(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", message, err)
	}
	return nil
}
