// Package grpcsource is the grpc flag source: a flagd.sync.v1 SyncFlags client of
// another flagpole or flagd (e.g. a central deployment). Every flag_configuration
// the server streams replaces the source's flags; a stream that fails or ends is
// reported as an Update with Err (the store keeps the last good flags, or keeps the
// source not ready) and reopened with exponential backoff and jitter, from 250 ms up
// to 30 s. The first connection failing is no different: flagd exits then.
//
// Targets: grpc://host:port (plaintext), grpcs://host:port (TLS with the system
// roots, plus certPath's CAs, read again for every connection), and in --sources a
// bare host:port (tls: true for TLS), dns:[//authority/]host[:port], unix:path or
// unix:///path, and uds: as an alias of unix:. envoy:// and xds: are refused.
package grpcsource

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server/protolimit"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// Reconnect backoff bounds (before jitter); flagd waits 4 s, 16 s, 64 s, then 60 s.
const (
	MinBackoff = 250 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// selectorHeader carries the selector as flagd's sync server reads it first. (No
// gRPC keepalive pings are sent: a flagd without an enforcement policy allows one
// per 5 minutes and answers more with GOAWAY, which would cut the stream. A dead
// peer is noticed through Go's TCP keepalive, which the dialer enables by default.)
const selectorHeader = "flagd-selector"

// Source streams flags from one sync server.
type Source struct {
	cfg     flagsync.SourceConfig
	target  string
	secure  bool
	log     zerolog.Logger
	opts    []grpc.DialOption
	headers metadata.MD

	minBackoff, maxBackoff time.Duration
}

// New builds the grpc source of cfg. It checks the target, the TLS settings, the
// credentials and the options flagpole does not support; errors name the source and
// the field. Nothing connects before Run.
func New(cfg flagsync.SourceConfig, log zerolog.Logger) (*Source, error) {
	s := &Source{cfg: cfg, minBackoff: MinBackoff, maxBackoff: MaxBackoff}
	fail := func(format string, args ...any) (*Source, error) {
		return nil, fmt.Errorf("grpc source %s: "+format, append([]any{store.Redact(cfg.URI)}, args...)...)
	}
	target, secure, local, err := check(cfg)
	if err != nil {
		return fail("%w", err)
	}
	s.target, s.secure = target, secure
	auth, err := cfg.AuthHeaderValue()
	if err != nil {
		return fail("%w", err)
	}
	if err := checkAuthTransport(auth, secure, local, cfg.AllowInsecure); err != nil {
		return fail("%w", err)
	}
	s.log = log.With().Str("source", store.Redact(cfg.URI)).Str("provider", "grpc").Logger()
	creds := insecure.NewCredentials()
	switch {
	case s.secure && cfg.CertPath != "":
		if creds, err = newReloadingTLS(cfg.CertPath, s.log); err != nil {
			return fail("%w", err)
		}
	case s.secure:
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	s.opts = []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: MinBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: MaxBackoff},
			MinConnectTimeout: 20 * time.Second,
		}),
		// responses nesting their sync_context deeper than protolimit allows are
		// refused without being decoded (protobuf-go alone allows 10,000 levels)
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(protolimit.GRPCCodec{})),
	}
	if cfg.MaxMsgSize > 0 {
		s.opts = append(s.opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cfg.MaxMsgSize)))
	}
	s.headers = metadata.MD{}
	for k, v := range cfg.Headers {
		s.headers.Set(k, v)
	}
	return s, nil
}

// Check runs every check New makes that needs nothing but cfg itself (no file and
// no environment variable is read): the common --sources rules, the target syntax
// (as grpc-go parses it), the options flagpole does not support, certPath without
// TLS, and a literal authHeader or a bearerTokenFile over plaintext to a host that
// is not loopback. The admission webhook runs it on the sources a FeatureFlagSource
// renders, so that it never admits a grpc source the sidecar would refuse. Errors
// start with the field name (uri, certPath, ...) and never quote a credential.
func Check(cfg flagsync.SourceConfig) error {
	_, secure, local, err := check(cfg)
	if err != nil {
		return err
	}
	auth := cfg.AuthHeader
	if cfg.BearerTokenFile != "" { // a token will be sent, whatever the file holds
		auth = "Bearer"
	}
	return checkAuthTransport(auth, secure, local, cfg.AllowInsecure)
}

// check is Check without the credentials: it returns the grpc-go target, whether
// the connection uses TLS and whether the target is this machine.
func check(cfg flagsync.SourceConfig) (target string, secure, local bool, err error) {
	if err := flagsync.Validate([]flagsync.SourceConfig{cfg}); err != nil {
		return "", false, false, errors.New(strings.TrimPrefix(err.Error(), "sources[0]."))
	}
	target, secure, local, err = parseTarget(cfg.URI)
	if err != nil {
		return "", false, false, fmt.Errorf("uri: %w", err)
	}
	secure = secure || cfg.TLS
	switch {
	case cfg.IncrementalUpdates:
		return "", false, false, errors.New("incrementalUpdates: not supported; flagpole's and flagd's sync servers send the whole flag configuration in every message")
	case cfg.OAuth != nil:
		return "", false, false, errors.New("oauth: only http sources support it")
	case cfg.CertPath != "" && !secure:
		return "", false, false, errors.New("certPath: needs TLS: use grpcs://, or \"tls\": true in --sources")
	}
	// Building a client checks the target syntax; it connects only when used.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", false, false, fmt.Errorf("uri: %w", err)
	}
	_ = conn.Close()
	return target, secure, local, nil
}

// checkAuthTransport refuses an Authorization value over plaintext to a host that is
// not this machine, unless allowInsecure.
func checkAuthTransport(auth string, secure, local, allowInsecure bool) error {
	if auth != "" && !secure && !local && !allowInsecure {
		return errors.New("the Authorization header would travel unencrypted: use grpcs://, or set \"allowInsecure\": true on this source in --sources")
	}
	return nil
}

// parseTarget turns the configured URI into a grpc-go target. secure is true for
// grpcs://; local is true when the target is this machine (loopback or a unix socket).
func parseTarget(uri string) (target string, secure, local bool, err error) {
	lower := strings.ToLower(uri)
	switch {
	case strings.HasPrefix(lower, "grpcs://"):
		target, secure = uri[len("grpcs://"):], true
	case strings.HasPrefix(lower, "grpc://"):
		target = uri[len("grpc://"):]
	case strings.HasPrefix(lower, "envoy:"), strings.HasPrefix(lower, "xds:"):
		return "", false, false, fmt.Errorf("%s targets are not supported by flagpole; give the sync server as grpc(s)://host:port or dns:///host:port", uri[:strings.IndexByte(uri, ':')])
	case strings.HasPrefix(lower, "uds:"):
		target = "unix:" + uri[len("uds:"):]
	default:
		target = uri
	}
	if target == "" {
		return "", false, false, errors.New("no host:port")
	}
	switch {
	case strings.HasPrefix(target, "unix:"), strings.HasPrefix(target, "unix-abstract:"):
		return target, secure, true, nil
	case strings.HasPrefix(target, "dns:"):
		u, perr := url.Parse(target)
		if perr != nil {
			return "", false, false, perr
		}
		hostport := strings.TrimPrefix(u.Path, "/")
		if hostport == "" {
			hostport = u.Opaque
		}
		host, _, serr := net.SplitHostPort(hostport)
		if serr != nil {
			host = hostport
		}
		return target, secure, flagsync.IsLoopbackHost(host), nil
	}
	host, _, serr := net.SplitHostPort(target)
	if serr != nil {
		return "", false, false, fmt.Errorf("want host:port, got %q", target)
	}
	return target, secure, flagsync.IsLoopbackHost(host), nil
}

// Name is the source as configured (host:port for grpc:// and grpcs:// --uri values,
// as flagd; followed by the selector when there is one, see
// flagsync.SourceConfig.Name): flags are tagged with it.
func (s *Source) Name() string { return s.cfg.Name() }

// Run streams until ctx ends, reconnecting after every failure. It returns nil when
// ctx ends, or an error when the client cannot be built at all.
func (s *Source) Run(ctx context.Context, out chan<- flagsync.Update) error {
	if s.cfg.AuthHeader != "" {
		s.log.Warn().Msg("authHeader is given literally: it is visible in pod specs and process arguments; prefer authHeaderEnv or authHeaderFile")
	}
	conn, err := grpc.NewClient(s.target, s.opts...)
	if err != nil {
		return fmt.Errorf("grpc source %s: %w", store.Redact(s.cfg.URI), err)
	}
	defer conn.Close()
	client := syncv1grpc.NewFlagSyncServiceClient(conn)
	s.log.Info().Bool("tls", s.secure).Str("selector", s.cfg.Selector).Str("provider_id", s.cfg.ProviderID).Msg("syncing")
	var st state
	wait := s.minBackoff
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		received, err := s.stream(ctx, client, &st, out)
		if ctx.Err() != nil {
			return nil
		}
		if received {
			wait = s.minBackoff
		}
		st.dirty = true
		send(ctx, out, flagsync.Update{Source: s.Name(), Err: fmt.Errorf("grpc source %s: %w", store.Redact(s.cfg.URI), err)})
		d := jitter(wait)
		s.log.Debug().Err(err).Dur("retry_in", d).Msg("sync stream failed")
		if wait *= 2; wait > s.maxBackoff {
			wait = s.maxBackoff
		}
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// state is what a stream leaves for the next.
type state struct {
	sum   [sha256.Size]byte
	sent  bool // a document has been sent
	dirty bool // an error was sent after it: send the next document even if identical
	lost  bool // the last stream failed after connecting (log the reconnection)
}

// stream opens one SyncFlags stream and forwards its messages until it fails. It
// returns whether a message arrived, and why the stream ended.
func (s *Source) stream(ctx context.Context, client syncv1grpc.FlagSyncServiceClient, st *state, out chan<- flagsync.Update) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	md := s.headers.Copy()
	if s.cfg.Selector != "" {
		md.Set(selectorHeader, s.cfg.Selector)
	}
	auth, err := s.cfg.AuthHeaderValue() // re-read: the file may have been rotated
	if err != nil {
		return false, err
	}
	if auth != "" {
		md.Set("authorization", auth)
	}
	ctx = metadata.NewOutgoingContext(ctx, md)
	stream, err := client.SyncFlags(ctx, &syncv1.SyncFlagsRequest{ProviderId: s.cfg.ProviderID, Selector: s.cfg.Selector})
	if err != nil {
		return false, fmt.Errorf("opening the SyncFlags stream: %w", describe(err))
	}
	received := false
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return received, errors.New("the server ended the SyncFlags stream")
		}
		if err != nil {
			return received, fmt.Errorf("SyncFlags stream: %w", describe(err))
		}
		if !received && st.lost {
			s.log.Info().Msg("sync stream re-established")
		}
		received, st.lost = true, true
		data := stripSource([]byte(msg.GetFlagConfiguration()))
		sum := sha256.Sum256(data)
		if st.sent && !st.dirty && sum == st.sum {
			s.log.Debug().Msg("identical flag configuration received; not re-applied")
			continue
		}
		st.sum, st.sent, st.dirty = sum, true, false
		send(ctx, out, flagsync.Update{Source: s.Name(), Data: data})
	}
}

// describe renders a gRPC status as "Code: message", with a hint when a message was
// over the receive limit.
func describe(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max") {
		return fmt.Errorf("%s: %s (raise maxMsgSize to allow larger flag configurations)", st.Code(), st.Message())
	}
	return fmt.Errorf("%s: %s", st.Code(), st.Message())
}

// stripSource removes the "source" member the sync API adds to every flag (the
// upstream's own source name): it is not part of a flag definition, and this
// source's flags are tagged with its own name. Anything that is not
// {"flags": {key: {...}}} is returned unchanged, for the store to judge.
func stripSource(payload []byte) []byte {
	var doc map[string]json.RawMessage
	if json.Unmarshal(payload, &doc) != nil {
		return payload
	}
	var flags map[string]map[string]json.RawMessage
	if raw, ok := doc["flags"]; !ok || json.Unmarshal(raw, &flags) != nil {
		return payload
	}
	changed := false
	for _, f := range flags {
		if _, ok := f["source"]; ok {
			delete(f, "source")
			changed = true
		}
	}
	if !changed {
		return payload
	}
	raw, err := json.Marshal(flags)
	if err != nil {
		return payload
	}
	doc["flags"] = raw
	out, err := json.Marshal(doc)
	if err != nil {
		return payload
	}
	return out
}

// jitter returns a random duration between half and all of d.
func jitter(d time.Duration) time.Duration {
	half := d / 2
	return half + rand.N(d-half+1) //nolint:gosec // G404: backoff jitter needs no cryptographic randomness
}

func send(ctx context.Context, out chan<- flagsync.Update, u flagsync.Update) {
	select {
	case out <- u:
	case <-ctx.Done():
	}
}
