package evaluation

import (
	"fmt"
	"net/http"
	"testing"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	schemav1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/schema/v1"
	"connectrpc.com/connect"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/store"
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

// sharedRulesDoc has flags whose rules are equal: shared decisions, decisions that
// read the flag's key (fractional, $flagd.flagKey), failing ones, and types that
// differ within a group.
const sharedRulesDoc = `{"$evaluators": {"isExample": {"ends_with": [{"var": "email"}, "@example.com"]}}, "flags": {
  "ref":      {"state": "ENABLED", "variants": {"yes": "yes", "no": "no"}, "defaultVariant": "no", "targeting": {"if": [{"$ref": "isExample"}, "yes", null]}},
  "inline":   {"state": "ENABLED", "variants": {"yes": {"o": 1}, "no": {"o": 0}}, "defaultVariant": "no", "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "yes", null]}},
  "bool":     {"state": "ENABLED", "variants": {"yes": true, "no": false}, "defaultVariant": "no", "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "yes", null]}},
  "roll-a":   {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}},
  "roll-b":   {"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}},
  "key-a":    {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "key-a"]}, "on", "off"]}},
  "key-b":    {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": {"if": [{"==": [{"var": "$flagd.flagKey"}, "key-a"]}, "on", "off"]}},
  "broken-a": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"$ref": "missing"}},
  "broken-b": {"state": "ENABLED", "variants": {"on": "on"}, "defaultVariant": "on", "targeting": {"$ref": "missing"}},
  "off":      {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on", "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", null]}}
}}`

// TestResolveAllSharedRules: ResolveAll with decisions shared between flags of
// equal rules answers every flag as its own evaluation does, in every API.
func TestResolveAllSharedRules(t *testing.T) {
	st := storeOf(t, "shared", []byte(sharedRulesDoc))
	svc := newService(Options{Store: st, Log: zerolog.Nop()}, false)
	all, _ := store.ParseSelector("")
	snap := st.Current()
	if rg := svc.cache.ruleGroups(snap.Generation, all, snap.List(all)); rg.n != 4 {
		t.Errorf("%d rule groups, want 4 (ends_with, fractional, flagKey, missing $ref)", rg.n)
	}
	rollsDiffer := false
	for i := range 30 {
		ctx, err := structpb.NewStruct(map[string]any{"targetingKey": fmt.Sprintf("user-%d", i), "email": fmt.Sprintf("u%d@%s", i, []string{"example.com", "other.org"}[i%2])})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []api{apiV1, apiSchemaV1} {
			items := svc.resolveAllIn(all, nil, ctx, a)
			got := map[string][2]string{}
			for _, it := range items {
				got[it.key] = [2]string{it.reason, it.variant}
			}
			want := map[string][2]string{}
			for _, e := range snap.List(all) {
				f := e.Flag
				res := f.EvaluateAs(defaultType(f), svc.evalContext(ctx.AsMap(), nil, a), nil)
				if _, listed := got[f.Key]; listed {
					variant := res.Variant
					if res.Failed() {
						variant = ""
					}
					want[f.Key] = [2]string{string(res.Reason), variant}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" || len(got) < 8 {
				t.Fatalf("context %d, api %d: %d flags (-each alone +ResolveAll):\n%s", i, a, len(got), diff)
			}
			rollsDiffer = rollsDiffer || got["roll-a"] != got["roll-b"]
		}
	}
	if !rollsDiffer {
		t.Error("roll-a and roll-b agree for every targeting key: the test cannot tell a shared decision from their own")
	}
}
