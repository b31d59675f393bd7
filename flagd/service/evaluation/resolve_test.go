package evaluation

import (
	"net/http"
	"testing"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
)

// decisionCase is one row of the decision table. want is what every API answers
// unless v1 / schemaV1 override it.
type decisionCase struct {
	name     string
	typ      string
	key      string
	ctx      map[string]any
	header   http.Header
	want     outcome
	v1       *outcome
	schemaV1 *outcome
}

func decisionTable() []decisionCase {
	sel := func(s string) http.Header { return http.Header{"Flagd-Selector": {s}} }
	ptr := func(o outcome) *outcome { return &o }
	mdA := map[string]any{"flagSetId": "set-a", "team": "core"}
	mdBoolA := map[string]any{"flagSetId": "set-a", "team": "flags", "owner": "alice"}
	mdNone := map[string]any{}
	notFound := outcome{Code: "not_found", Message: "Flag not found"}
	mismatch := outcome{Code: "invalid_argument", Message: "Type mismatch error"}
	parseErr := outcome{Code: "data_loss", Message: "Error parsing input or configuration"}
	generalEr := outcome{Code: "unknown", Message: "General error"}
	return []decisionCase{
		{name: "static boolean with merged metadata", typ: "bool", key: "bool-static",
			want: outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: mdBoolA}},
		{name: "static without metadata", typ: "bool", key: "plain",
			want: outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: mdNone}},
		{name: "targeting match", typ: "bool", key: "targeted", ctx: map[string]any{"email": "a@b.c"},
			want: outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: mdA}},
		{name: "targeting falls back to the default variant", typ: "bool", key: "targeted", ctx: map[string]any{"email": "x@y.z"},
			want: outcome{Value: false, Reason: "DEFAULT", Variant: "off", Metadata: mdA}},
		{name: "string", typ: "string", key: "string-flag",
			want: outcome{Value: "r", Reason: "STATIC", Variant: "red", Metadata: mdA}},
		{name: "integer", typ: "int", key: "int-flag",
			want: outcome{Value: int64(10), Reason: "DEFAULT", Variant: "ten", Metadata: mdA}},
		{name: "largest safe integer", typ: "int", key: "int-flag", ctx: map[string]any{"max": true},
			want: outcome{Value: int64(9007199254740991), Reason: "TARGETING_MATCH", Variant: "max", Metadata: mdA}},
		{name: "integer flag as float", typ: "float", key: "int-flag",
			want: outcome{Value: 10.0, Reason: "DEFAULT", Variant: "ten", Metadata: mdA}},
		{name: "float", typ: "float", key: "float-flag",
			want: outcome{Value: 0.5, Reason: "STATIC", Variant: "half", Metadata: mdA}},
		{name: "object", typ: "object", key: "object-flag",
			want: outcome{Value: map[string]any{"a": 1.0, "b": "x"}, Reason: "STATIC", Variant: "obj", Metadata: mdA}},
		{name: "code default", typ: "bool", key: "no-default",
			want:     outcome{Reason: "DEFAULT", Metadata: mdA},
			v1:       ptr(notFound),
			schemaV1: ptr(outcome{Value: false, Reason: "DEFAULT", Metadata: mdA})},
		{name: "code default after targeting returned null", typ: "bool", key: "no-default-targeted",
			want:     outcome{Reason: "DEFAULT", Metadata: mdA},
			v1:       ptr(notFound),
			schemaV1: ptr(outcome{Value: false, Reason: "DEFAULT", Metadata: mdA})},
		{name: "targeting match on a flag without default", typ: "bool", key: "no-default-targeted", ctx: map[string]any{"vip": true},
			want: outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: mdA}},
		{name: "code default object", typ: "object", key: "no-default",
			want:     outcome{Reason: "DEFAULT", Metadata: mdA},
			v1:       ptr(notFound),
			schemaV1: ptr(outcome{Value: map[string]any{}, Reason: "DEFAULT", Metadata: mdA})},
		{name: "disabled", typ: "bool", key: "disabled",
			want:     outcome{Reason: "DISABLED", Metadata: mdA},
			v1:       ptr(outcome{Value: false, Reason: "DISABLED", Metadata: mdA}),
			schemaV1: ptr(outcome{Value: false, Reason: "DISABLED", Metadata: mdA})},
		{name: "disabled object", typ: "object", key: "disabled",
			want:     outcome{Reason: "DISABLED", Metadata: mdA},
			v1:       ptr(outcome{Value: map[string]any{}, Reason: "DISABLED", Metadata: mdA}),
			schemaV1: ptr(outcome{Value: map[string]any{}, Reason: "DISABLED", Metadata: mdA})},
		{name: "not found", typ: "bool", key: "missing", want: notFound},
		{name: "type mismatch", typ: "string", key: "bool-static", want: mismatch},
		{name: "non-integral number as integer", typ: "int", key: "float-flag", want: mismatch},
		{name: "array variant", typ: "object", key: "array-flag", want: mismatch},
		{name: "parse error", typ: "bool", key: "parse-error", want: parseErr},
		{name: "general error", typ: "bool", key: "general-error", want: generalEr},
		{name: "no selector: highest priority copy", typ: "string", key: "shared",
			want: outcome{Value: "from-b", Reason: "STATIC", Variant: "b", Metadata: map[string]any{"flagSetId": "set-b"}}},
		{name: "flagSetId selector", typ: "string", key: "shared", header: sel("flagSetId=set-a"),
			want: outcome{Value: "from-a", Reason: "STATIC", Variant: "a", Metadata: mdA}},
		{name: "source selector reflects the source", typ: "string", key: "shared", header: sel("source=src-a"),
			want: outcome{Value: "from-a", Reason: "STATIC", Variant: "a", Metadata: map[string]any{"source": "src-a", "flagSetId": "set-a", "team": "core"}}},
		{name: "legacy bare selector is a source", typ: "string", key: "shared", header: sel("src-a"),
			want: outcome{Value: "from-a", Reason: "STATIC", Variant: "a", Metadata: map[string]any{"source": "src-a", "flagSetId": "set-a", "team": "core"}}},
		{name: "empty flagSetId selects flags without a flag set", typ: "bool", key: "plain", header: sel("flagSetId="),
			want: outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{"flagSetId": ""}}},
		{name: "selector hides other flag sets", typ: "bool", key: "bool-static", header: sel("flagSetId=set-b"), want: notFound},
		{name: "invalid selector", typ: "bool", key: "bool-static", header: sel("team=core"),
			want: outcome{Code: "invalid_argument", Message: `invalid selector key "team", valid keys: "flagSetId", "source"`}},
		{name: "-X overrides the request context", typ: "bool", key: "static-ctx", ctx: map[string]any{"env": "dev"},
			want: outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: mdA}},
		{name: "-H maps a header (not on schema.v1)", typ: "bool", key: "header-ctx", header: http.Header{"X-User": {"bob"}},
			want:     outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: mdA},
			schemaV1: ptr(outcome{Value: false, Reason: "DEFAULT", Variant: "off", Metadata: mdA})},
		{name: "-H overrides the request context (not on schema.v1)", typ: "bool", key: "header-ctx", ctx: map[string]any{"user": "bob"}, header: http.Header{"X-User": {"alice"}},
			want:     outcome{Value: false, Reason: "DEFAULT", Variant: "off", Metadata: mdA},
			schemaV1: ptr(outcome{Value: true, Reason: "TARGETING_MATCH", Variant: "on", Metadata: mdA})},
	}
}

// TestDecisionTable runs every row over every API and every protocol with the
// generated connect-go clients against a live server.
func TestDecisionTable(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	hc := h2cClient(t)
	for _, p := range protocols() {
		v1 := evaluationv1connect.NewServiceClient(hc, srv.url, p.opts...)
		v2 := evaluationv2connect.NewServiceClient(hc, srv.url, p.opts...)
		old := schemav1connect.NewServiceClient(hc, srv.url, p.opts...)
		for _, tc := range decisionTable() {
			t.Run(p.name+"/"+tc.name, func(t *testing.T) {
				ctx := testContext(t)
				wantV1, wantOld := tc.want, tc.want
				if tc.v1 != nil {
					wantV1 = *tc.v1
				}
				if tc.schemaV1 != nil {
					wantOld = *tc.schemaV1
				}
				if wantV1.Code == "" && wantV1.Value == nil {
					t.Fatalf("bad table row: v1 always has a value")
				}
				if diff := cmp.Diff(tc.want, callV2(ctx, t, v2, tc.typ, tc.key, tc.ctx, tc.header)); diff != "" {
					t.Errorf("v2 (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantV1, callV1(ctx, t, v1, tc.typ, tc.key, tc.ctx, tc.header)); diff != "" {
					t.Errorf("v1 (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantOld, callSchemaV1(ctx, t, old, tc.typ, tc.key, tc.ctx, tc.header)); diff != "" {
					t.Errorf("schema.v1 (-want +got):\n%s", diff)
				}
			})
		}
	}
}
