package proxy

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
)

// fakeReviewer answers like the API server for a fixed set of tokens and grants.
type fakeReviewer struct {
	mu sync.Mutex
	// tokens: token → the identity and audiences it is valid for
	tokens map[string]fakeToken
	// grants: "user namespace/name" the user may get
	grants map[string]bool
	// tokenErr, accessErr: the API server's failures
	tokenErr, accessErr error

	tokenReviews, accessReviews int
	lastAccess                  authenticationv1.UserInfo
}

type fakeToken struct {
	user      string
	audiences []string
}

func newFakeReviewer() *fakeReviewer {
	return &fakeReviewer{tokens: map[string]fakeToken{}, grants: map[string]bool{}}
}

func (f *fakeReviewer) addToken(token, user string, audiences ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = fakeToken{user: user, audiences: audiences}
}

func (f *fakeReviewer) grant(user string, ref Ref, allowed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.grants[user+" "+ref.String()] = allowed
}

func (f *fakeReviewer) counts() (tokens, access int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokenReviews, f.accessReviews
}

func (f *fakeReviewer) ReviewToken(_ context.Context, token string, audiences []string) (authenticationv1.TokenReviewStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenReviews++
	if f.tokenErr != nil {
		return authenticationv1.TokenReviewStatus{}, f.tokenErr
	}
	tok, ok := f.tokens[token]
	if !ok {
		return authenticationv1.TokenReviewStatus{Error: "invalid bearer token"}, nil
	}
	// the API server returns the requested audiences the token is valid for; none
	// for a token that is only for the API server itself
	var valid []string
	for _, a := range audiences {
		if slices.Contains(tok.audiences, a) {
			valid = append(valid, a)
		}
	}
	if len(valid) == 0 && len(tok.audiences) > 0 {
		return authenticationv1.TokenReviewStatus{Error: "token audiences is invalid for the target audiences"}, nil
	}
	return authenticationv1.TokenReviewStatus{Authenticated: true, Audiences: valid,
		User: authenticationv1.UserInfo{Username: tok.user, UID: "uid-" + tok.user, Groups: []string{"system:serviceaccounts"},
			Extra: map[string]authenticationv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"pod-1"}}}}, nil
}

func (f *fakeReviewer) ReviewAccess(_ context.Context, user authenticationv1.UserInfo, ref Ref) (authorizationv1.SubjectAccessReviewStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accessReviews++
	f.lastAccess = user
	if f.accessErr != nil {
		return authorizationv1.SubjectAccessReviewStatus{}, f.accessErr
	}
	if f.grants[user.Username+" "+ref.String()] {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed by RoleBinding"}, nil
	}
	return authorizationv1.SubjectAccessReviewStatus{}, nil
}

// jwt is a token shaped like a ServiceAccount JWT that expires at exp (the fake
// reviewer does not check signatures; the proxy reads exp only after a review).
func jwt(name string, exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, name, exp.Unix())) + "." + enc([]byte("sig-"+name))
}
