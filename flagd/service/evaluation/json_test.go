package evaluation

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/flagpole-dev/flagpole/server"
	"github.com/google/go-cmp/cmp"
)

// post sends a Connect JSON unary request the way curl does and returns the status
// and the compacted body (protojson varies whitespace on purpose).
func post(t *testing.T, hc *http.Client, url, contentType, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	maps.Copy(req.Header, header)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return resp.StatusCode, string(data)
	}
	return resp.StatusCode, b.String()
}

// TestJSONShapes checks flagd's exact Connect JSON bodies: v1 emits unpopulated
// fields, v2 omits unset optional value/variant, int64 values are strings, errors
// carry no result, only {"code","message"}.
func TestJSONShapes(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	hc := h1Client(t)
	const jsonCT = "application/json"
	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		header      http.Header
		wantStatus  int
		want        string
	}{
		{"v1 boolean (the README curl)", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"plain","context":{}}`, nil,
			200, `{"value":true,"reason":"STATIC","variant":"on","metadata":{}}`},
		{"charset content type", "/flagd.evaluation.v1.Service/ResolveBoolean", "application/json; charset=utf-8", `{"flagKey":"plain"}`, nil,
			200, `{"value":true,"reason":"STATIC","variant":"on","metadata":{}}`},
		{"unknown request fields are ignored", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"plain","context":{},"extra":[1]}`, nil,
			200, `{"value":true,"reason":"STATIC","variant":"on","metadata":{}}`},
		{"v1 int64 is a JSON string", "/flagd.evaluation.v1.Service/ResolveInt", jsonCT, `{"flagKey":"int-flag","context":{"max":true}}`, nil,
			200, `{"value":"9007199254740991","reason":"TARGETING_MATCH","variant":"max","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v1 false value is emitted", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"targeted"}`, nil,
			200, `{"value":false,"reason":"DEFAULT","variant":"off","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v1 disabled: zero value, empty variant", "/flagd.evaluation.v1.Service/ResolveString", jsonCT, `{"flagKey":"disabled"}`, nil,
			200, `{"value":"","reason":"DISABLED","variant":"","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v1 object", "/flagd.evaluation.v1.Service/ResolveObject", jsonCT, `{"flagKey":"object-flag"}`, nil,
			200, `{"value":{"a":1,"b":"x"},"reason":"STATIC","variant":"obj","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v1 code default is not found", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"no-default"}`, nil,
			404, `{"code":"not_found","message":"Flag not found"}`},
		{"v2 int64 is a JSON string", "/flagd.evaluation.v2.Service/ResolveInt", jsonCT, `{"flagKey":"int-flag"}`, nil,
			200, `{"value":"10","reason":"DEFAULT","variant":"ten","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v2 false value is kept", "/flagd.evaluation.v2.Service/ResolveBoolean", jsonCT, `{"flagKey":"targeted"}`, nil,
			200, `{"value":false,"reason":"DEFAULT","variant":"off","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v2 code default omits value and variant", "/flagd.evaluation.v2.Service/ResolveBoolean", jsonCT, `{"flagKey":"no-default"}`, nil,
			200, `{"reason":"DEFAULT","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"v2 disabled omits value and variant", "/flagd.evaluation.v2.Service/ResolveObject", jsonCT, `{"flagKey":"disabled"}`, nil,
			200, `{"reason":"DISABLED","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"schema.v1 code default: zero value, reason DEFAULT", "/schema.v1.Service/ResolveFloat", jsonCT, `{"flagKey":"no-default"}`, nil,
			200, `{"value":0,"reason":"DEFAULT","variant":"","metadata":{"flagSetId":"set-a","team":"core"}}`},
		{"not found", "/flagd.evaluation.v2.Service/ResolveBoolean", jsonCT, `{"flagKey":"missing"}`, nil,
			404, `{"code":"not_found","message":"Flag not found"}`},
		{"type mismatch", "/flagd.evaluation.v1.Service/ResolveString", jsonCT, `{"flagKey":"plain"}`, nil,
			400, `{"code":"invalid_argument","message":"Type mismatch error"}`},
		{"parse error", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"parse-error"}`, nil,
			500, `{"code":"data_loss","message":"Error parsing input or configuration"}`},
		{"general error", "/flagd.evaluation.v2.Service/ResolveBoolean", jsonCT, `{"flagKey":"general-error"}`, nil,
			500, `{"code":"unknown","message":"General error"}`},
		{"invalid selector", "/flagd.evaluation.v1.Service/ResolveBoolean", jsonCT, `{"flagKey":"plain"}`, http.Header{"Flagd-Selector": {"x=y"}},
			400, `{"code":"invalid_argument","message":"invalid selector key \"x\", valid keys: \"flagSetId\", \"source\""}`},
		{"v1 ResolveAll with a selector", "/flagd.evaluation.v1.Service/ResolveAll", jsonCT, `{}`, http.Header{"Flagd-Selector": {"flagSetId=set-b"}},
			200, `{"flags":{"b-only":{"reason":"STATIC","variant":"on","boolValue":true,"metadata":{"flagSetId":"set-b"}},"shared":{"reason":"STATIC","variant":"b","stringValue":"from-b","metadata":{"flagSetId":"set-b"}}},"metadata":{"flagSetId":"set-b"}}`},
		{"event stream is not unary", "/flagd.evaluation.v1.Service/EventStream", jsonCT, `{}`, nil,
			415, ``},
		{"unknown path", "/nope", jsonCT, `{}`, nil, 404, `404 page not found`},
	}
	// malformed input is refused with invalid_argument (protojson's message varies)
	for _, body := range []string{``, `{"flagKey":`, `{"flagKey":5}`, `{"context":[]}`, `[]`, "\xff\xfe"} {
		t.Run("malformed "+body, func(t *testing.T) {
			status, got := post(t, hc, srv.url+"/flagd.evaluation.v2.Service/ResolveBoolean", jsonCT, body, nil)
			if status != http.StatusBadRequest || !strings.HasPrefix(got, `{"code":"invalid_argument","message":`) {
				t.Errorf("status %d body %s, want 400 invalid_argument", status, got)
			}
		})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(t, hc, srv.url+tc.path, tc.contentType, tc.body, tc.header)
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", status, tc.wantStatus, body)
			}
			if diff := cmp.Diff(tc.want, strings.TrimSpace(body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}
