package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Tokens are the bearer tokens a listener accepts, read from a file (one token per
// line; blank lines and lines starting with # ignored), e.g. a mounted Secret. The
// file is re-read when it changes (checked at most once a second, on a request),
// so a rotated Secret takes effect without a restart; a file that cannot be read
// or holds no token keeps the previous tokens. Only SHA-256 digests are kept, and a
// presented token is compared with every one of them in constant time, so neither
// the comparison nor the number of tokens gives a timing signal.
type Tokens struct {
	path      string
	digests   atomic.Pointer[[][sha256.Size]byte]
	mu        sync.Mutex
	content   []byte
	lastCheck time.Time
	now       func() time.Time
	failures  *prometheus.CounterVec
}

// maxTokenFile bounds the token file: tokens, not a document.
const maxTokenFile = 64 << 10

// NewTokens reads the token file once; the error names the file, never its content.
func NewTokens(path string) (*Tokens, error) {
	t := &Tokens{path: path, now: time.Now}
	if err := t.reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// CountFailures registers flagpole_auth_failures_total{listener,reason} with reg:
// refused requests, counted, never logged with what they presented.
func (t *Tokens) CountFailures(reg prometheus.Registerer) error {
	t.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flagpole_auth_failures_total",
		Help: "Requests refused for a missing or wrong bearer token, by listener and reason (missing, invalid)."}, []string{"listener", "reason"})
	return reg.Register(t.failures)
}

func (t *Tokens) reload() error {
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	if len(data) > maxTokenFile {
		return fmt.Errorf("token file %s: larger than %d bytes", t.path, maxTokenFile)
	}
	if bytes.Equal(data, t.content) {
		return nil
	}
	var digests [][sha256.Size]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		digests = append(digests, sha256.Sum256([]byte(line)))
	}
	if len(digests) == 0 {
		return fmt.Errorf("token file %s: holds no token", t.path)
	}
	t.content = data
	t.digests.Store(&digests)
	return nil
}

// refresh re-reads the file at most once a second; a failed read keeps the tokens.
func (t *Tokens) refresh() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := t.now(); now.Sub(t.lastCheck) >= time.Second {
		t.lastCheck = now
		_ = t.reload()
	}
}

// errMissing and errInvalid are the two ways to fail; neither says anything about
// the tokens.
var (
	errMissing = errors.New("a bearer token is required")
	errInvalid = errors.New("the bearer token is not valid")
)

// check verifies an Authorization header value ("Bearer <token>").
func (t *Tokens) check(authorization string) error {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errMissing
	}
	t.refresh()
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for _, d := range *t.digests.Load() {
		match |= subtle.ConstantTimeCompare(sum[:], d[:])
	}
	if match != 1 {
		return errInvalid
	}
	return nil
}

func (t *Tokens) fail(listener string, err error) {
	if t.failures == nil {
		return
	}
	reason := "invalid"
	if errors.Is(err, errMissing) {
		reason = "missing"
	}
	t.failures.WithLabelValues(listener, reason).Inc()
}

// Handler requires a valid bearer token on every request of an HTTP listener
// (evaluation, OFREP): a request without one is answered 401 (gRPC and Connect
// clients read it as Unauthenticated) with a WWW-Authenticate challenge. CORS
// preflights, which browsers send without credentials, pass through to the CORS
// policy in front of this handler. A nil *Tokens returns next.
func (t *Tokens) Handler(listener string, next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := t.check(r.Header.Get("Authorization")); err != nil {
			t.fail(listener, err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="flagd"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// GRPCInterceptors require a valid bearer token ("authorization" metadata) on every
// RPC of a grpc-go server (the sync listener): Unauthenticated otherwise.
func (t *Tokens) GRPCInterceptors(listener string) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	verify := func(ctx context.Context) error { return t.VerifyGRPC(ctx, listener) }
	unary := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := verify(ctx); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := verify(ss.Context()); err != nil {
			return err
		}
		return handler(srv, ss)
	}
	return unary, stream
}

// VerifyGRPC checks the bearer token ("authorization" metadata) of the RPC of ctx,
// as GRPCInterceptors do, for handlers that check it themselves: an Unauthenticated
// status error without one. A nil *Tokens accepts every RPC.
func (t *Tokens) VerifyGRPC(ctx context.Context, listener string) error {
	if t == nil {
		return nil
	}
	var value string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		value = v[0]
	}
	if err := t.check(value); err != nil {
		t.fail(listener, err)
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return nil
}
