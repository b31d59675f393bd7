package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/kube"
)

// DefaultAudience is the audience of the ServiceAccount tokens the proxy accepts
// (the webhook mounts the sidecar's projected token with it).
const DefaultAudience = "flagpole-flagd-proxy"

// Reviewer asks the API server about callers. NewReviewer's answers come from
// TokenReview and SubjectAccessReview; tests use fakes.
type Reviewer interface {
	// ReviewToken verifies a bearer token for the audiences.
	ReviewToken(ctx context.Context, token string, audiences []string) (authenticationv1.TokenReviewStatus, error)
	// ReviewAccess asks whether user may get the FeatureFlag ref.
	ReviewAccess(ctx context.Context, user authenticationv1.UserInfo, ref Ref) (authorizationv1.SubjectAccessReviewStatus, error)
}

// NewReviewer returns a Reviewer over REST clients of authentication.k8s.io/v1 and
// authorization.k8s.io/v1 (schemes of only those types).
func NewReviewer(cfg *rest.Config) (Reviewer, error) {
	authn, err := kube.RESTClient(cfg, authenticationv1.SchemeGroupVersion, authenticationv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	authz, err := kube.RESTClient(cfg, authorizationv1.SchemeGroupVersion, authorizationv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	return restReviewer{authn: authn, authz: authz}, nil
}

type restReviewer struct{ authn, authz rest.Interface }

func (r restReviewer) ReviewToken(ctx context.Context, token string, audiences []string) (authenticationv1.TokenReviewStatus, error) {
	in := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences}}
	out := &authenticationv1.TokenReview{}
	err := r.authn.Post().Resource("tokenreviews").Body(in).Do(ctx).Into(out)
	return out.Status, err
}

func (r restReviewer) ReviewAccess(ctx context.Context, user authenticationv1.UserInfo, ref Ref) (authorizationv1.SubjectAccessReviewStatus, error) {
	in := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, UID: user.UID, Groups: user.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ref.Namespace, Verb: "get",
			Group: v1beta1.GroupName, Version: v1beta1.SchemeGroupVersion.Version, Resource: "featureflags", Name: ref.Name},
	}}
	out := &authorizationv1.SubjectAccessReview{}
	err := r.authz.Post().Resource("subjectaccessreviews").Body(in).Do(ctx).Into(out)
	return out.Status, err
}

// AuthOptions configure an Authorizer.
type AuthOptions struct {
	// Audience is the audience a token must be valid for; "" is DefaultAudience.
	Audience string
	// TokenTTL is how long a verified token is trusted before it is reviewed again
	// (never beyond its expiry); 0 is 2 minutes.
	TokenTTL time.Duration
	// AccessTTL is how long an access decision is kept; 0 is 30 seconds. Open streams
	// are re-checked this often, so a revoked grant ends them within about twice it.
	AccessTTL time.Duration
	// DeniedTTL is how long a refusal (a token the API server rejects, access
	// denied) is kept; 0 is 5 seconds.
	DeniedTTL time.Duration
	// MaxEntries bounds each cache; 0 is 10,000.
	MaxEntries int
	// ReviewTimeout bounds one review; 0 is 10 seconds.
	ReviewTimeout time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Authorizer decides whether a caller may read a FeatureFlag.
type Authorizer struct {
	reviewer Reviewer
	opts     AuthOptions
	metrics  *Metrics
	tokens   *decisionCache[[sha256.Size]byte, tokenDecision]
	access   *decisionCache[accessKey, accessDecision]
}

// Caller is an authenticated caller.
type Caller struct {
	User authenticationv1.UserInfo
	// Expires is when its token expires (zero when unknown).
	Expires time.Time
	token   string
}

// Name is the caller's user name (a ServiceAccount is
// system:serviceaccount:<namespace>:<name>).
func (c *Caller) Name() string { return c.User.Username }

type tokenDecision struct {
	caller *Caller
	denied string // why the token was refused; "" when accepted
}

type accessDecision struct {
	allowed bool
	reason  string
}

// accessKey identifies an access decision: the user, uid and groups (what the
// SubjectAccessReview carries; extra, such as the pod name of a bound token, is not
// sent, so all pods of a ServiceAccount share a decision) and the FeatureFlag.
type accessKey struct {
	user, uid, groups string
	ref               Ref
}

// NewAuthorizer returns an Authorizer asking reviewer.
func NewAuthorizer(reviewer Reviewer, opts AuthOptions, metrics *Metrics) *Authorizer {
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = 2 * time.Minute
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 30 * time.Second
	}
	if opts.DeniedTTL <= 0 {
		opts.DeniedTTL = 5 * time.Second
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.ReviewTimeout <= 0 {
		opts.ReviewTimeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Authorizer{reviewer: reviewer, opts: opts, metrics: metrics,
		tokens: newDecisionCache[[sha256.Size]byte, tokenDecision](opts.MaxEntries, opts.Now),
		access: newDecisionCache[accessKey, accessDecision](opts.MaxEntries, opts.Now)}
}

// Audience is the audience tokens must be valid for.
func (a *Authorizer) Audience() string { return a.opts.Audience }

// RecheckEvery is how often an open stream's caller is checked again.
func (a *Authorizer) RecheckEvery() time.Duration { return a.opts.AccessTTL }

// denied is the error of every refusal: PermissionDenied and a message that says
// what to fix, never the token.
func denied(format string, args ...any) error {
	return status.Errorf(codes.PermissionDenied, format, args...)
}

// Authenticate verifies the "authorization: Bearer <token>" value of a request
// (authorization is the metadata's values). Errors are gRPC statuses:
// PermissionDenied for a missing or refused token, Unavailable when the API server
// cannot be asked.
func (a *Authorizer) Authenticate(ctx context.Context, authorization []string) (*Caller, error) {
	if len(authorization) == 0 {
		return nil, denied("no ServiceAccount token: flagpole's flagd-proxy requires \"authorization: Bearer <token>\" metadata with a ServiceAccount token for audience %q (flagpole's webhook mounts one in injected sidecars; pods injected by the OpenFeature Operator must be re-created, or the proxy run with --auth=none)", a.opts.Audience)
	}
	if len(authorization) > 1 {
		return nil, denied("more than one authorization value")
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization[0]), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return nil, denied("the authorization metadata is not \"Bearer <token>\"")
	}
	return a.authenticate(ctx, token)
}

func (a *Authorizer) authenticate(ctx context.Context, token string) (*Caller, error) {
	d, cached, err := a.tokens.get(ctx, sha256.Sum256([]byte(token)), func() (tokenDecision, time.Duration, error) {
		return a.reviewToken(ctx, token)
	})
	a.metrics.authDecision("token", d.denied == "", err, cached)
	switch {
	case err != nil:
		return nil, err
	case d.denied != "":
		return nil, denied("%s", d.denied)
	}
	if !d.caller.Expires.IsZero() && !a.opts.Now().Before(d.caller.Expires) {
		return nil, denied("the token expired at %s: send the current one (the kubelet rotates projected tokens)", d.caller.Expires.UTC().Format(time.RFC3339))
	}
	return d.caller, nil
}

// reviewToken asks TokenReview, for a decision and how long it may be kept.
func (a *Authorizer) reviewToken(ctx context.Context, token string) (tokenDecision, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.ReviewTimeout)
	defer cancel()
	st, err := a.reviewer.ReviewToken(ctx, token, []string{a.opts.Audience})
	if err != nil {
		return tokenDecision{}, 0, unavailable("verifying the caller's token (TokenReview)", "create tokenreviews.authentication.k8s.io", err)
	}
	switch {
	case !st.Authenticated:
		why := "expired, revoked, its pod deleted, or issued for another audience"
		if st.Error != "" {
			why = st.Error
		}
		return tokenDecision{denied: fmt.Sprintf("the API server does not accept the token for audience %q: %s", a.opts.Audience, limit(why, 256))}, a.opts.DeniedTTL, nil
	case !slices.Contains(st.Audiences, a.opts.Audience):
		// authenticated without our audience: a token for the API server itself
		// (an empty list) must not be replayed here
		return tokenDecision{denied: fmt.Sprintf("the token is not for audience %q (a token for the API server or another service is refused): mount a projected ServiceAccount token with audience %q", a.opts.Audience, a.opts.Audience)}, a.opts.DeniedTTL, nil
	}
	c := &Caller{User: st.User, token: token, Expires: tokenExpiry(token)}
	ttl := a.opts.TokenTTL
	if !c.Expires.IsZero() {
		ttl = min(ttl, c.Expires.Sub(a.opts.Now()))
	}
	return tokenDecision{caller: c}, ttl, nil
}

// Authorize asks whether the caller may get the FeatureFlag ref. Errors are gRPC
// statuses: PermissionDenied, or Unavailable when the API server cannot be asked.
func (a *Authorizer) Authorize(ctx context.Context, c *Caller, ref Ref) error {
	key := accessKey{user: c.User.Username, uid: c.User.UID, groups: strings.Join(c.User.Groups, "\x00"), ref: ref}
	d, cached, err := a.access.get(ctx, key, func() (accessDecision, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.opts.ReviewTimeout)
		defer cancel()
		st, err := a.reviewer.ReviewAccess(ctx, authenticationv1.UserInfo{Username: c.User.Username, UID: c.User.UID, Groups: c.User.Groups}, ref)
		if err != nil {
			return accessDecision{}, 0, unavailable("checking the caller's access (SubjectAccessReview)", "create subjectaccessreviews.authorization.k8s.io", err)
		}
		if st.Allowed && !st.Denied {
			return accessDecision{allowed: true}, a.opts.AccessTTL, nil
		}
		return accessDecision{reason: st.Reason}, a.opts.DeniedTTL, nil
	})
	a.metrics.authDecision("access", d.allowed, err, cached)
	if err != nil {
		return err
	}
	if !d.allowed {
		return denied("%s may not get FeatureFlag %s (flagpole's webhook grants a pod's ServiceAccount the FeatureFlags its FeatureFlagSources name, in namespaces that admit it)", c.User.Username, ref)
	}
	return nil
}

// Recheck authenticates the caller's token again and asks for its access to ref
// (both through the caches): an open stream ends when either is refused.
func (a *Authorizer) Recheck(ctx context.Context, c *Caller, ref Ref) error {
	again, err := a.authenticate(ctx, c.token)
	if err != nil {
		return err
	}
	return a.Authorize(ctx, again, ref)
}

// unavailable is the error when the API server cannot be asked: the caller retries.
func unavailable(what, verbs string, err error) error {
	if apierrors.IsForbidden(err) {
		return status.Errorf(codes.Unavailable, "%s: the flagd-proxy's ServiceAccount lacks RBAC (%s): %v", what, verbs, err)
	}
	return status.Errorf(codes.Unavailable, "%s: %v", what, err)
}

// tokenExpiry reads the exp claim of a JWT the API server has just accepted (so
// its claims are the issuer's), or zero for a token that is not a JWT.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Int64()
	if err != nil || exp <= 0 {
		return time.Time{}
	}
	return time.Unix(exp, 0)
}

// limit cuts s to n bytes.
func limit(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
