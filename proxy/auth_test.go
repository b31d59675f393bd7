package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	userA = "system:serviceaccount:team-a:web"
	userB = "system:serviceaccount:team-b:web"
)

var (
	flagA = Ref{Namespace: "team-a", Name: "checkout"}
	flagB = Ref{Namespace: "team-b", Name: "search"}
)

func wantCode(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("error %v, want %s containing %q", err, code, msg)
	}
}

// TestAuthDecisions: every way a caller is refused is PermissionDenied with a
// message that says what to fix and never holds the token; the API server's
// failures are Unavailable (the sidecar retries).
func TestAuthDecisions(t *testing.T) {
	r := newFakeReviewer()
	r.addToken("token-a", userA, DefaultAudience)
	r.addToken("token-b", userB, DefaultAudience)
	r.addToken("api-token", userA) // valid for the API server only
	r.addToken("other-aud", userA, "vault")
	r.grant(userA, flagA, true)
	r.grant(userB, flagB, true)
	a := NewAuthorizer(r, AuthOptions{}, nil)
	ctx := context.Background()
	check := func(authz []string, ref Ref) error {
		c, err := a.Authenticate(ctx, authz)
		if err != nil {
			return err
		}
		return a.Authorize(ctx, c, ref)
	}
	if err := check([]string{"Bearer token-a"}, flagA); err != nil {
		t.Fatalf("own flag: %v", err)
	}
	if err := check([]string{"bearer  token-b "}, flagB); err != nil {
		t.Fatalf("own flag (case and spaces): %v", err)
	}
	for name, tc := range map[string]struct {
		authz []string
		ref   Ref
		msg   string
	}{
		"no token":         {nil, flagA, `no ServiceAccount token: flagpole's flagd-proxy requires "authorization: Bearer <token>" metadata with a ServiceAccount token for audience "flagpole-flagd-proxy"`},
		"two tokens":       {[]string{"Bearer token-a", "Bearer token-b"}, flagA, "more than one authorization value"},
		"basic":            {[]string{"Basic dG9rZW4tYQ=="}, flagA, `the authorization metadata is not "Bearer <token>"`},
		"empty bearer":     {[]string{"Bearer "}, flagA, `is not "Bearer <token>"`},
		"unknown token":    {[]string{"Bearer forged"}, flagA, `the API server does not accept the token for audience "flagpole-flagd-proxy": invalid bearer token`},
		"api server token": {[]string{"Bearer api-token"}, flagA, `the token is not for audience "flagpole-flagd-proxy" (a token for the API server or another service is refused)`},
		"other audience":   {[]string{"Bearer other-aud"}, flagA, "token audiences is invalid"},
		"other namespace":  {[]string{"Bearer token-a"}, flagB, "system:serviceaccount:team-a:web may not get FeatureFlag team-b/search"},
		"other flag":       {[]string{"Bearer token-b"}, flagA, "system:serviceaccount:team-b:web may not get FeatureFlag team-a/checkout"},
	} {
		t.Run(name, func(t *testing.T) {
			err := check(tc.authz, tc.ref)
			wantCode(t, err, codes.PermissionDenied, tc.msg)
			if strings.Contains(err.Error(), "token-a") || strings.Contains(err.Error(), "forged") {
				t.Errorf("the error holds the token: %v", err)
			}
		})
	}
	// SubjectAccessReviews carry the user, uid and groups, not extra (pod-bound
	// tokens of one ServiceAccount share a decision)
	if u := r.lastAccess; u.Username == "" || u.UID == "" || len(u.Groups) == 0 || u.Extra != nil {
		t.Errorf("access reviewed for %+v", u)
	}

	t.Run("api server away", func(t *testing.T) {
		down := newFakeReviewer()
		down.tokenErr = errors.New("connection refused")
		wantCode(t, check2(NewAuthorizer(down, AuthOptions{}, nil), "Bearer t", flagA), codes.Unavailable, "verifying the caller's token (TokenReview): connection refused")
		down.tokenErr = apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "", errors.New("no"))
		wantCode(t, check2(NewAuthorizer(down, AuthOptions{}, nil), "Bearer t", flagA), codes.Unavailable, "the flagd-proxy's ServiceAccount lacks RBAC (create tokenreviews.authentication.k8s.io)")
		down.tokenErr = nil
		down.addToken("t", userA, DefaultAudience)
		down.accessErr = errors.New("timeout")
		wantCode(t, check2(NewAuthorizer(down, AuthOptions{}, nil), "Bearer t", flagA), codes.Unavailable, "checking the caller's access (SubjectAccessReview): timeout")
	})
}

func check2(a *Authorizer, authz string, ref Ref) error {
	c, err := a.Authenticate(context.Background(), []string{authz})
	if err != nil {
		return err
	}
	return a.Authorize(context.Background(), c, ref)
}

// TestAuthCaches: decisions are kept for their TTLs (a token never beyond its exp
// claim), refusals shortly, failures not at all; a revoked grant is noticed once
// its decision expires.
func TestAuthCaches(t *testing.T) {
	clk := &clock{t: time.Unix(1_000_000, 0)}
	r := newFakeReviewer()
	short := jwt("short", clk.now().Add(90*time.Second))
	r.addToken("token-a", userA, DefaultAudience)
	r.addToken(short, userA, DefaultAudience)
	r.grant(userA, flagA, true)
	a := NewAuthorizer(r, AuthOptions{TokenTTL: 2 * time.Minute, AccessTTL: 30 * time.Second, DeniedTTL: 5 * time.Second, Now: clk.now}, nil)
	for range 5 {
		if err := check2(a, "Bearer token-a", flagA); err != nil {
			t.Fatal(err)
		}
	}
	if tok, acc := r.counts(); tok != 1 || acc != 1 {
		t.Fatalf("5 checks made %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", tok, acc)
	}
	// another pod's token of the same ServiceAccount: its own TokenReview, the shared access decision
	if err := check2(a, "Bearer "+short, flagA); err != nil {
		t.Fatal(err)
	}
	if tok, acc := r.counts(); tok != 2 || acc != 1 {
		t.Fatalf("counts %d, %d after a second token, want 2, 1", tok, acc)
	}
	c, err := a.Authenticate(context.Background(), []string{"Bearer " + short})
	if err != nil || !c.Expires.Equal(clk.now().Add(90*time.Second)) {
		t.Fatalf("caller %+v, %v: want the exp claim as expiry", c, err)
	}

	r.grant(userA, flagA, false) // the grant is revoked
	clk.advance(29 * time.Second)
	if err := check2(a, "Bearer token-a", flagA); err != nil {
		t.Fatalf("within the access TTL: %v", err)
	}
	clk.advance(2 * time.Second)
	wantCode(t, a.Recheck(context.Background(), c, flagA), codes.PermissionDenied, "may not get FeatureFlag team-a/checkout")
	_, acc := r.counts()
	wantCode(t, check2(a, "Bearer token-a", flagA), codes.PermissionDenied, "may not get")
	if _, again := r.counts(); again != acc {
		t.Errorf("a refusal was reviewed again at once (%d → %d SubjectAccessReviews)", acc, again)
	}
	r.grant(userA, flagA, true)
	clk.advance(6 * time.Second)
	if err := check2(a, "Bearer token-a", flagA); err != nil {
		t.Fatalf("granted again, after the refusal's TTL: %v", err)
	}

	// the short token's decision is not kept beyond its expiry (90 s < 2 min)
	clk.advance(60 * time.Second) // 97 s after the review
	wantCode(t, a.Recheck(context.Background(), c, flagA), codes.PermissionDenied, "")
	tok, _ := r.counts()
	if tok < 3 {
		t.Errorf("the expired token was not reviewed again (%d TokenReviews)", tok)
	}

	// an unknown token is refused for DeniedTTL without asking again
	for range 3 {
		wantCode(t, check2(a, "Bearer forged", flagA), codes.PermissionDenied, "does not accept the token")
	}
	if after, _ := r.counts(); after != tok+1 {
		t.Errorf("3 checks of a forged token made %d TokenReviews, want 1", after-tok)
	}
}

// TestAuthCacheBounded: a flood of distinct tokens does not grow the cache beyond
// MaxEntries.
func TestAuthCacheBounded(t *testing.T) {
	a := NewAuthorizer(newFakeReviewer(), AuthOptions{MaxEntries: 100}, nil)
	for i := range 1000 {
		_, _ = a.Authenticate(context.Background(), []string{"Bearer forged-" + strconv.Itoa(i)})
	}
	if n := a.tokens.len(); n > 100 {
		t.Errorf("%d cached token decisions, want at most 100", n)
	}
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(1_700_000_000, 0)
	if got := tokenExpiry(jwt("x", exp)); !got.Equal(exp) {
		t.Errorf("expiry %v, want %v", got, exp)
	}
	for _, tok := range []string{"opaque", "a.b", "a.!!!.c", "a." + "eyJleHAiOiJzb29uIn0" + ".c", "a.e30.c"} {
		if got := tokenExpiry(tok); !got.IsZero() {
			t.Errorf("tokenExpiry(%q) = %v, want zero", tok, got)
		}
	}
}
