package evaluation

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v1/evaluationv1connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	"buf.build/gen/go/open-feature/flagd/connectrpc/go/schema/v1/schemav1connect"
	evalv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v1"
	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/protolimit"
)

// corsHeaders returns the CORS response headers of a request.
func corsHeaders(t *testing.T, hc *http.Client, method, url string, header http.Header) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), method, url, strings.NewReader(`{"flagKey":"plain"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	maps.Copy(req.Header, header)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	out := map[string]string{}
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = resp.Header.Get(k)
		}
	}
	return resp.StatusCode, out
}

func TestCORS(t *testing.T) {
	const path = "/flagd.evaluation.v2.Service/ResolveBoolean"
	configured := start(t, Options{CORSOrigins: []string{"https://app.example"}}, server.ListenConfig{})
	wildcard := start(t, Options{CORSOrigins: []string{"*"}}, server.ListenConfig{})
	pattern := start(t, Options{CORSOrigins: []string{"https://*.example.com"}}, server.ListenConfig{}) // as OFREP: one policy
	none := start(t, Options{}, server.ListenConfig{})
	hc := h1Client(t)
	preflight := func(origin string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type,flagd-selector"}}
	}
	tests := []struct {
		name       string
		url        string
		method     string
		header     http.Header
		wantStatus int
		want       map[string]string
	}{
		{"configured origin", configured.url, http.MethodPost, http.Header{"Origin": {"https://app.example"}}, 200,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Expose-Headers": corsExposed}},
		{"other origin gets no allow header", configured.url, http.MethodPost, http.Header{"Origin": {"https://evil.example"}}, 200,
			map[string]string{}},
		{"no origin (not a browser)", configured.url, http.MethodPost, nil, 200, map[string]string{}},
		{"preflight of the configured origin", configured.url, http.MethodOptions, preflight("https://app.example"), 204,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example", "Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "content-type,flagd-selector"}},
		{"preflight of another origin", configured.url, http.MethodOptions, preflight("https://evil.example"), 204, map[string]string{}},
		{"wildcard", wildcard.url, http.MethodPost, http.Header{"Origin": {"https://any.example"}}, 200,
			map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": corsExposed}},
		{"pattern", pattern.url, http.MethodPost, http.Header{"Origin": {"https://app.example.com"}}, 200,
			map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Expose-Headers": corsExposed}},
		{"pattern, other origin", pattern.url, http.MethodPost, http.Header{"Origin": {"https://example.com.evil.org"}}, 200, map[string]string{}},
		{"no origins configured: no CORS at all", none.url, http.MethodPost, http.Header{"Origin": {"https://app.example"}}, 200, map[string]string{}},
		{"no origins configured: no preflight", none.url, http.MethodOptions, preflight("https://app.example"), 405, map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got := corsHeaders(t, hc, tc.method, tc.url+path, tc.header)
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d", status, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CORS headers (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBodyLimit: a body over MaxRequestBody, or a compressed message that inflates
// beyond it, is refused with ResourceExhausted and the server keeps serving.
func TestBodyLimit(t *testing.T) {
	const limit = 64 << 10
	srv := start(t, Options{MaxRequestBody: limit}, server.ListenConfig{})
	big := map[string]any{"blob": strings.Repeat("x", 2*limit)}
	hc := h2cClient(t)
	for _, p := range protocols() {
		t.Run(p.name, func(t *testing.T) {
			c := evaluationv2connect.NewServiceClient(hc, srv.url, p.opts...)
			got := callV2(testContext(t), t, c, "bool", "plain", big, nil)
			if got.Code != "resource_exhausted" || !strings.Contains(got.Message, "65536") {
				t.Errorf("oversized body: %+v, want resource_exhausted naming the 65536 byte limit", got)
			}
			gz := evaluationv2connect.NewServiceClient(hc, srv.url, append(p.opts, connect.WithSendGzip())...)
			bomb := map[string]any{"blob": strings.Repeat("a", 8<<20)} // ~8 KiB compressed: under the body limit
			got = callV2(testContext(t), t, gz, "bool", "plain", bomb, nil)
			if got.Code != "resource_exhausted" || !strings.Contains(got.Message, "65536") {
				t.Errorf("compressed message inflating beyond the limit: %+v, want resource_exhausted naming the limit", got)
			}
			want := outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{}}
			if diff := cmp.Diff(want, callV2(testContext(t), t, c, "bool", "plain", map[string]any{"small": 1.0}, nil)); diff != "" {
				t.Errorf("a normal request afterwards (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("plain JSON POST", func(t *testing.T) {
		status, body := post(t, h1Client(t), srv.url+"/flagd.evaluation.v1.Service/ResolveBoolean", "application/json",
			`{"flagKey":"plain","context":{"blob":"`+strings.Repeat("x", 2*limit)+`"}}`, nil)
		if status != http.StatusTooManyRequests || !strings.Contains(body, `"code":"resource_exhausted"`) {
			t.Errorf("status %d body %s, want 429 resource_exhausted", status, body)
		}
	})
}

// TestMetrics: evaluations are counted under flagd's names, HTTP metrics carry the
// real status code, and the route label is the procedure or "other", never a raw
// path.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := start(t, Options{Metrics: m}, server.ListenConfig{})
	hc := h1Client(t)
	post(t, hc, srv.url+"/flagd.evaluation.v1.Service/ResolveBoolean", "application/json", `{"flagKey":"plain"}`, nil)
	post(t, hc, srv.url+"/flagd.evaluation.v2.Service/ResolveBoolean", "application/json", `{"flagKey":"missing-1"}`, nil)
	post(t, hc, srv.url+"/flagd.evaluation.v2.Service/ResolveBoolean", "application/json", `{"flagKey":"missing-2"}`, nil)
	post(t, hc, srv.url+"/random/user/path", "application/json", `{}`, nil)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			labels := []string{}
			for _, l := range mt.GetLabel() {
				if l.GetValue() != "" {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
			}
			key := f.GetName() + "{" + strings.Join(labels, ",") + "}" // prometheus sorts label names
			switch {
			case mt.GetCounter() != nil:
				got[key] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				got[key] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"feature_flag_flagd_impression_total{feature_flag_key=plain,feature_flag_provider_name=flagd,feature_flag_reason=STATIC,feature_flag_result_variant=on}": 1,
		"feature_flag_flagd_result_reason_total{feature_flag_key=plain,feature_flag_provider_name=flagd,feature_flag_reason=STATIC}":                             1,
		// unknown keys never become label values
		"feature_flag_flagd_result_reason_total{error_type=FLAG_NOT_FOUND,feature_flag_provider_name=flagd,feature_flag_reason=ERROR}":                                                           2,
		"http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=200,http_route=/flagd.evaluation.v1.Service/ResolveBoolean,service_name=flagd,url_scheme=http}": 1,
		"http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=404,http_route=/flagd.evaluation.v2.Service/ResolveBoolean,service_name=flagd,url_scheme=http}": 2,
		"http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=404,http_route=other,service_name=flagd,url_scheme=http}":                                       1,
		"http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=200,http_route=/flagd.evaluation.v1.Service/ResolveBoolean,service_name=flagd,url_scheme=http}": 1,
		"http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=404,http_route=/flagd.evaluation.v2.Service/ResolveBoolean,service_name=flagd,url_scheme=http}": 2,
		"http_server_response_body_size_bytes{http_request_method=POST,http_response_status_code=404,http_route=other,service_name=flagd,url_scheme=http}":                                       1,
	}
	for k := range got {
		if strings.HasPrefix(k, "http_server_active_requests") {
			delete(got, k) // gauges back at 0
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestContextNeverLogged: even at trace level, no log line carries a value of the
// evaluation context or of a mapped header.
func TestContextNeverLogged(t *testing.T) {
	const secret = "jane.doe@example.com"
	var logs syncBuffer
	srv := start(t, Options{Log: zerolog.New(&logs).Level(zerolog.TraceLevel)}, server.ListenConfig{})
	hc := h2cClient(t)
	v2 := evaluationv2connect.NewServiceClient(hc, srv.url, connect.WithGRPC())
	old := schemav1connect.NewServiceClient(hc, srv.url)
	ctx := map[string]any{"email": secret, "nested": map[string]any{"email": secret}}
	h := http.Header{"X-User": {secret}}
	for _, key := range []string{"targeted", "missing", "parse-error", "general-error", "no-default", "disabled"} {
		callV2(testContext(t), t, v2, "bool", key, ctx, h)
		callV2(testContext(t), t, v2, "string", key, ctx, h)
		callSchemaV1(testContext(t), t, old, "bool", key, ctx, h)
	}
	out := logs.String()
	if !strings.Contains(out, `"flag":"parse-error"`) {
		t.Fatalf("expected debug lines about the failed evaluations, got:\n%s", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the logs contain a context value:\n%s", out)
	}
}

// nestedContext is an evaluation context nesting depth levels of objects and arrays
// (the context itself is level 1).
func nestedContext(depth int) map[string]any {
	var v any = 1.0
	for i := depth - 1; i >= 1; i-- {
		if i%2 == 1 {
			v = []any{v}
		} else {
			v = map[string]any{"k": v}
		}
	}
	return map[string]any{"x": v}
}

// TestDeepContextRefused: a context nested deeper than protolimit.MaxContextDepth
// is refused with InvalidArgument before protobuf-go decodes it (whose default
// limit, 10,000 levels, costs a request ~64 MB of stack), on every protocol and
// codec, the fast path included; a context at the limit is evaluated.
func TestDeepContextRefused(t *testing.T) {
	srv := start(t, Options{}, server.ListenConfig{})
	hc := h2cClient(t)
	ok := outcome{Value: true, Reason: "STATIC", Variant: "on", Metadata: map[string]any{}}
	for _, p := range protocols() {
		t.Run(p.name, func(t *testing.T) {
			c := evaluationv2connect.NewServiceClient(hc, srv.url, p.opts...)
			if diff := cmp.Diff(ok, callV2(testContext(t), t, c, "bool", "plain", nestedContext(protolimit.MaxContextDepth), nil)); diff != "" {
				t.Errorf("context at the limit (-want +got):\n%s", diff)
			}
			for _, depth := range []int{protolimit.MaxContextDepth + 1, 10000} {
				got := callV2(testContext(t), t, c, "bool", "plain", nestedContext(depth), nil)
				if got.Code != "invalid_argument" || !strings.Contains(got.Message, "nested too deeply") {
					t.Errorf("context of depth %d: %+v, want invalid_argument saying it is nested too deeply", depth, got)
				}
			}
			all := evaluationv1connect.NewServiceClient(hc, srv.url, p.opts...)
			_, err := all.ResolveAll(testContext(t), connect.NewRequest(&evalv1.ResolveAllRequest{Context: mustStruct(t, nestedContext(10000))}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("ResolveAll with a context of depth 10000: %v, want invalid_argument", err)
			}
		})
	}
	for name, hc := range map[string]*http.Client{"plain JSON POST": h1Client(t), "plain JSON POST, h2c": h2cClient(t)} {
		t.Run(name, func(t *testing.T) {
			url := srv.url + "/flagd.evaluation.v1.Service/ResolveBoolean"
			for depth, want := range map[int]int{protolimit.MaxContextDepth: http.StatusOK, protolimit.MaxContextDepth + 1: http.StatusBadRequest, 10000: http.StatusBadRequest} {
				ctx, _ := json.Marshal(nestedContext(depth))
				status, body := post(t, hc, url, "application/json", `{"flagKey":"plain","context":`+string(ctx)+`}`, nil)
				if status != want || (want != http.StatusOK && !strings.Contains(body, `"code":"invalid_argument"`)) {
					t.Errorf("depth %d: status %d body %.200s, want %d", depth, status, body, want)
				}
			}
		})
	}
}

// TestEvaluationCountsPerOutcome: counting through the per-flag counter cache
// (entryCache.count, filled concurrently as outcomes appear) gives every outcome
// its own series with exact counts.
func TestEvaluationCountsPerOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(withDefaults(t, Options{Metrics: m}), true)
	h := svc.Handler()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				email := "x@y.z"
				if (g+i)%2 == 0 {
					email = "a@b.c"
				}
				req := httptest.NewRequest(http.MethodPost, "/flagd.evaluation.v1.Service/ResolveBoolean",
					strings.NewReader(`{"flagKey":"targeted","context":{"email":"`+email+`"}}`))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					t.Errorf("status %d: %s", w.Code, w.Body.String())
				}
			}
		})
	}
	wg.Wait()
	got := map[string]float64{}
	for k, v := range gatherMetrics(t, reg) {
		if strings.HasPrefix(k, "feature_flag_") {
			got[k] = v
		}
	}
	want := map[string]float64{
		"feature_flag_flagd_impression_total{feature_flag_key=targeted,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH,feature_flag_result_variant=on}": 200,
		"feature_flag_flagd_impression_total{feature_flag_key=targeted,feature_flag_provider_name=flagd,feature_flag_reason=DEFAULT,feature_flag_result_variant=off}":        200,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=targeted,feature_flag_provider_name=flagd,feature_flag_reason=TARGETING_MATCH}":                 200,
		"feature_flag_flagd_result_reason_total{error_type=,feature_flag_key=targeted,feature_flag_provider_name=flagd,feature_flag_reason=DEFAULT}":                         200,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("evaluation counters (-want +got):\n%s", diff)
	}
}
