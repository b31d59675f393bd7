package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCORSAllowed(t *testing.T) {
	cases := []struct {
		origins []string
		origin  string
		want    bool
	}{
		{nil, "https://app.example.com", false},
		{[]string{"", " "}, "https://app.example.com", false},
		{[]string{"https://app.example.com"}, "https://APP.example.com", true},
		{[]string{"https://app.example.com"}, "https://app.example.com.evil.org", false},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "https://example.com", false},
		{[]string{"https://*.example.com"}, "http://a.example.com", false},
		{[]string{"*"}, "null", true},
		{[]string{"*"}, "", false},
	}
	for _, tc := range cases {
		if got := NewCORS(tc.origins).Allowed(tc.origin); got != tc.want {
			t.Errorf("origins %q, origin %q: allowed = %v, want %v", tc.origins, tc.origin, got, tc.want)
		}
	}
}

// TestCORSHandler: preflights are answered in front of the handler, only for allowed
// origins and methods; other requests pass through with the allow headers added.
func TestCORSHandler(t *testing.T) {
	rules := CORSRules{Methods: []string{"post"}, ExposeHeaders: "ETag", MaxAge: 600}
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	type result struct {
		Status int
		Header map[string]string
	}
	run := func(p *CORS, method string, header map[string]string) result {
		req := httptest.NewRequest(method, "/", nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		p.Handler(rules, next).ServeHTTP(rec, req)
		got := result{Status: rec.Code, Header: map[string]string{}}
		for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Access-Control-Expose-Headers"} {
			if v := rec.Header().Get(k); v != "" {
				got.Header[k] = v
			}
		}
		return got
	}
	policy := NewCORS([]string{"https://*.example.com"})
	preflight := func(origin, method string) map[string]string {
		return map[string]string{"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"}
	}
	cases := []struct {
		name   string
		p      *CORS
		method string
		header map[string]string
		want   result
	}{
		{"preflight, allowed", policy, http.MethodOptions, preflight("https://a.example.com", "POST"), result{204, map[string]string{
			"Access-Control-Allow-Origin": "https://a.example.com", "Access-Control-Allow-Methods": "POST",
			"Access-Control-Allow-Headers": "content-type", "Access-Control-Max-Age": "600"}}},
		{"preflight, method not allowed", policy, http.MethodOptions, preflight("https://a.example.com", "DELETE"), result{204, map[string]string{}}},
		{"preflight, origin not allowed", policy, http.MethodOptions, preflight("https://evil.org", "POST"), result{204, map[string]string{}}},
		{"request, allowed", policy, http.MethodPost, map[string]string{"Origin": "https://a.example.com"}, result{418, map[string]string{
			"Access-Control-Allow-Origin": "https://a.example.com", "Access-Control-Expose-Headers": "ETag"}}},
		{"request, not allowed", policy, http.MethodPost, map[string]string{"Origin": "https://evil.org"}, result{418, map[string]string{}}},
		{"no policy: the handler answers preflights itself", nil, http.MethodOptions, preflight("https://a.example.com", "POST"), result{418, map[string]string{}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, run(tc.p, tc.method, tc.header)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
