package evaluation

import (
	"net/http"
	"testing"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
)

// bulkFlag is one AnyFlag, comparable across v1 and schema.v1. Value is nil when
// the oneof is unset.
type bulkFlag struct {
	Reason   string
	Variant  string
	Value    any
	Metadata map[string]any
}

func v1Bulk(r *evalv1.ResolveAllResponse) (map[string]bulkFlag, map[string]any) {
	out := map[string]bulkFlag{}
	for k, f := range r.Flags {
		b := bulkFlag{Reason: f.Reason, Variant: f.Variant, Metadata: f.Metadata.AsMap()}
		switch v := f.Value.(type) {
		case *evalv1.AnyFlag_BoolValue:
			b.Value = v.BoolValue
		case *evalv1.AnyFlag_StringValue:
			b.Value = v.StringValue
		case *evalv1.AnyFlag_DoubleValue:
			b.Value = v.DoubleValue
		case *evalv1.AnyFlag_ObjectValue:
			b.Value = v.ObjectValue.AsMap()
		}
		out[k] = b
	}
	return out, r.Metadata.AsMap()
}

func schemaBulk(r *schemav1.ResolveAllResponse) map[string]bulkFlag {
	out := map[string]bulkFlag{}
	for k, f := range r.Flags {
		b := bulkFlag{Reason: f.Reason, Variant: f.Variant}
		switch v := f.Value.(type) {
		case *schemav1.AnyFlag_BoolValue:
			b.Value = v.BoolValue
		case *schemav1.AnyFlag_StringValue:
			b.Value = v.StringValue
		case *schemav1.AnyFlag_DoubleValue:
			b.Value = v.DoubleValue
		case *schemav1.AnyFlag_ObjectValue:
			b.Value = v.ObjectValue.AsMap()
		}
		out[k] = b
	}
	return out
}

// TestResolveAll checks flagd's bulk rules: v1 leaves out flags without a default
// variant and flags whose default is an array, lists disabled flags with reason
// DISABLED and no value, lists failures with reason ERROR and the zero value of
// the default's type; top-level metadata is the selector reflection only.
func TestResolveAll(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	hc := h2cClient(t)
	mdA := map[string]any{"flagSetId": "set-a", "team": "core"}
	// left out: no-default, no-default-targeted (no default variant), array-flag
	allV1 := map[string]bulkFlag{
		"b-only":        {Reason: "STATIC", Variant: "on", Value: true, Metadata: map[string]any{"flagSetId": "set-b"}},
		"bool-static":   {Reason: "STATIC", Variant: "on", Value: true, Metadata: map[string]any{"flagSetId": "set-a", "team": "flags", "owner": "alice"}},
		"disabled":      {Reason: "DISABLED", Metadata: mdA},
		"float-flag":    {Reason: "STATIC", Variant: "half", Value: 0.5, Metadata: mdA},
		"general-error": {Reason: "ERROR", Value: false, Metadata: mdA},
		"header-ctx":    {Reason: "TARGETING_MATCH", Variant: "on", Value: true, Metadata: mdA},
		"int-flag":      {Reason: "DEFAULT", Variant: "ten", Value: 10.0, Metadata: mdA},
		"object-flag":   {Reason: "STATIC", Variant: "obj", Value: map[string]any{"a": 1.0, "b": "x"}, Metadata: mdA},
		"parse-error":   {Reason: "ERROR", Value: false, Metadata: mdA},
		"plain":         {Reason: "STATIC", Variant: "on", Value: true, Metadata: map[string]any{}},
		"shared":        {Reason: "STATIC", Variant: "b", Value: "from-b", Metadata: map[string]any{"flagSetId": "set-b"}},
		"static-ctx":    {Reason: "TARGETING_MATCH", Variant: "on", Value: true, Metadata: mdA},
		"string-flag":   {Reason: "STATIC", Variant: "red", Value: "r", Metadata: mdA},
		"targeted":      {Reason: "TARGETING_MATCH", Variant: "on", Value: true, Metadata: mdA},
	}
	evalCtx := map[string]any{"email": "a@b.c", "vip": true}
	header := http.Header{"X-User": {"bob"}}

	t.Run("v1", func(t *testing.T) {
		for _, p := range protocols() {
			t.Run(p.name, func(t *testing.T) {
				c := evaluationv1connect.NewServiceClient(hc, srv.url, p.opts...)
				resp, err := c.ResolveAll(testContext(t), withHeader(connect.NewRequest(&evalv1.ResolveAllRequest{Context: mustStruct(t, evalCtx)}), header))
				if err != nil {
					t.Fatal(err)
				}
				flags, md := v1Bulk(resp.Msg)
				if diff := cmp.Diff(allV1, flags); diff != "" {
					t.Errorf("flags (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(map[string]any{}, md); diff != "" {
					t.Errorf("metadata (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("v1 selector", func(t *testing.T) {
		c := evaluationv1connect.NewServiceClient(hc, srv.url, connect.WithProtoJSON())
		resp, err := c.ResolveAll(testContext(t), withHeader(connect.NewRequest(&evalv1.ResolveAllRequest{}), http.Header{"Flagd-Selector": {"source=src-plain"}}))
		if err != nil {
			t.Fatal(err)
		}
		flags, md := v1Bulk(resp.Msg)
		want := map[string]bulkFlag{"plain": {Reason: "STATIC", Variant: "on", Value: true, Metadata: map[string]any{"source": "src-plain"}}}
		if diff := cmp.Diff(want, flags); diff != "" {
			t.Errorf("flags (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]any{"source": "src-plain"}, md); diff != "" {
			t.Errorf("metadata (-want +got):\n%s", diff)
		}
	})

	t.Run("v1 invalid selector", func(t *testing.T) {
		c := evaluationv1connect.NewServiceClient(hc, srv.url, connect.WithGRPC())
		_, err := c.ResolveAll(testContext(t), withHeader(connect.NewRequest(&evalv1.ResolveAllRequest{}), http.Header{"Flagd-Selector": {"a=b"}}))
		if diff := cmp.Diff(outcome{Code: "invalid_argument", Message: `invalid selector key "a", valid keys: "flagSetId", "source"`}, errOutcome(err)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("schema.v1", func(t *testing.T) {
		// no metadata; disabled flags left out; -H does not apply; a flag without a
		// default that targeting resolves is listed (flagd resolves it untyped)
		want := map[string]bulkFlag{}
		for k, f := range allV1 {
			if k == "disabled" {
				continue
			}
			f.Metadata = nil
			want[k] = f
		}
		want["header-ctx"] = bulkFlag{Reason: "DEFAULT", Variant: "off", Value: false}
		want["no-default-targeted"] = bulkFlag{Reason: "TARGETING_MATCH", Variant: "on", Value: true}
		c := schemav1connect.NewServiceClient(hc, srv.url, connect.WithProtoJSON())
		resp, err := c.ResolveAll(testContext(t), withHeader(connect.NewRequest(&schemav1.ResolveAllRequest{Context: mustStruct(t, evalCtx)}), header))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, schemaBulk(resp.Msg)); diff != "" {
			t.Errorf("flags (-want +got):\n%s", diff)
		}
	})
}
