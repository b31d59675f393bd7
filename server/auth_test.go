package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func tokenFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTokensHandler(t *testing.T) {
	path := tokenFile(t, "# tokens of the apps\nalpha-token\n\n  beta-token  \n")
	tokens, err := NewTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := tokens.CountFailures(reg); err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	tokens.now = func() time.Time { return clock }
	h := tokens.Handler("evaluation", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	call := func(auth string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/flagd.evaluation.v1.Service/ResolveBoolean", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	cases := []struct {
		auth string
		code int
		body string
	}{
		{"Bearer alpha-token", 418, ""},
		{"bearer beta-token", 418, ""},
		{"", 401, "a bearer token is required"},
		{"Basic YWxwaGE=", 401, "a bearer token is required"},
		{"Bearer alpha", 401, "the bearer token is not valid"},
		{"Bearer # tokens of the apps", 401, "the bearer token is not valid"},
	}
	for _, tc := range cases {
		if code, body := call(tc.auth); code != tc.code || body != tc.body {
			t.Errorf("%q: %d %q, want %d %q", tc.auth, code, body, tc.code, tc.body)
		}
	}
	if got := testutil.ToFloat64(tokens.failures.WithLabelValues("evaluation", "missing")); got != 2 {
		t.Errorf("missing failures = %v", got)
	}
	if got := testutil.ToFloat64(tokens.failures.WithLabelValues("evaluation", "invalid")); got != 2 {
		t.Errorf("invalid failures = %v", got)
	}
	// rotation: the new token works after the next check, the old one stops working
	if err := os.WriteFile(path, []byte("gamma-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if code, _ := call("Bearer gamma-token"); code != 418 {
		t.Errorf("rotated token refused: %d", code)
	}
	if code, _ := call("Bearer alpha-token"); code != 401 {
		t.Errorf("old token still accepted: %d", code)
	}
	// a broken rotation keeps the tokens
	if err := os.WriteFile(path, []byte("\n# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Second)
	if code, _ := call("Bearer gamma-token"); code != 418 {
		t.Errorf("after an empty token file the last tokens must stay: %d", code)
	}
	if _, err := NewTokens(tokenFile(t, "\n")); err == nil || strings.Contains(err.Error(), "gamma") {
		t.Errorf("empty file: %v", err)
	}
}

func TestTokensGRPC(t *testing.T) {
	tokens, err := NewTokens(tokenFile(t, "s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	unary, _ := tokens.GRPCInterceptors("sync")
	handler := func(context.Context, any) (any, error) { return "ok", nil }
	for _, tc := range []struct {
		md   metadata.MD
		code codes.Code
	}{
		{metadata.Pairs("authorization", "Bearer s3cret"), codes.OK},
		{metadata.Pairs("authorization", "Bearer nope"), codes.Unauthenticated},
		{nil, codes.Unauthenticated},
	} {
		ctx := metadata.NewIncomingContext(context.Background(), tc.md)
		_, err := unary(ctx, nil, &grpc.UnaryServerInfo{}, handler)
		if status.Code(err) != tc.code {
			t.Errorf("%v: %v, want %v", tc.md, err, tc.code)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error names the token: %v", err)
		}
	}
}
