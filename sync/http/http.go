// Package httpsource is the http(s) flag source: it polls a URL for a JSON or YAML
// flag document, as flagd's http sync does, with these properties:
//
//   - polls are aligned to the wall clock like flagd's (seconds since midnight ≡
//     fnv32a(intervalSeed) mod interval), so replicas with different seeds spread
//     their load and replicas with the same seed poll together;
//   - each poll retries transient failures (connection errors, 429, 5xx) with
//     exponential backoff and jitter (go-retryablehttp), honouring Retry-After;
//   - ETag / If-None-Match: a 304 means no change; an identical body is not
//     re-sent either;
//   - every request has a timeout (10 s unless timeoutS says otherwise; flagd has
//     none) and the body a size limit (10 MiB unless maxMsgSize says otherwise);
//   - credentials come from authHeader (flagd's, visible in pod specs: a warning
//     says so), authHeaderEnv, authHeaderFile (re-read before every poll) or OAuth
//     client credentials, and are never logged;
//   - certPath adds a CA to the system roots for private TLS;
//   - plain http:// to a host that is not loopback is refused unless allowInsecure;
//   - a failure, the first one included, is reported as an Update with Err (the
//     store keeps the source not ready, or keeps its last good flags) and the next
//     poll tries again: flagd exits when the first fetch fails.
package httpsource

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// Defaults of the http source.
const (
	// DefaultInterval is flagd's poll interval.
	DefaultInterval = 5 * time.Second
	// DefaultTimeout bounds each request attempt when timeoutS is 0 (flagd: no timeout).
	DefaultTimeout = 10 * time.Second
	// DefaultMaxBodyBytes bounds a response body when maxMsgSize is 0.
	DefaultMaxBodyBytes = 10 << 20
	// DefaultRetries is how many times one poll retries a transient failure.
	DefaultRetries = 2
	// Backoff bounds between the attempts of one poll (before jitter).
	minRetryWait = 250 * time.Millisecond
	maxRetryWait = 5 * time.Second
	// maxRedirects bounds redirects, as net/http's default.
	maxRedirects = 10
)

// Source polls one URL.
type Source struct {
	cfg     flagsync.SourceConfig
	url     *url.URL
	display string // the URL without credentials or query, for logs and errors
	log     zerolog.Logger
	client  *retryablehttp.Client
	header  http.Header // custom headers and Accept
	host    string      // a Host entry of headers
	maxBody int64
	oauth   *oauthAuth

	interval time.Duration
	offset   time.Duration
	// next returns when the poll after now happens (tests replace it).
	next func(now time.Time) time.Time
}

// New builds the http source of cfg. It checks the URL (https, or http to a loopback
// host, or allowInsecure), the CA file, the credentials and the limits; errors name
// the source and the field.
func New(cfg flagsync.SourceConfig, log zerolog.Logger) (*Source, error) {
	u, err := parseURL(cfg.URI)
	if err != nil {
		return nil, fmt.Errorf("http source %q: uri: %w", store.Redact(cfg.URI), err)
	}
	s := &Source{cfg: cfg, url: u, display: store.Redact(cfg.URI)}
	fail := func(format string, args ...any) (*Source, error) {
		return nil, fmt.Errorf("http source %s: "+format, append([]any{s.display}, args...)...)
	}
	if err := check(cfg, u); err != nil {
		return fail("%w", err)
	}
	s.log = log.With().Str("source", s.display).Str("provider", "http").Logger()
	roots, err := cfg.RootCAs()
	if err != nil {
		return fail("%w", err)
	}
	if _, err := cfg.AuthHeaderValue(); err != nil {
		return fail("%w", err)
	}

	s.interval = DefaultInterval
	if cfg.Interval > 0 {
		s.interval = time.Duration(cfg.Interval) * time.Second
	}
	if cfg.IntervalSeed != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(cfg.IntervalSeed))
		s.offset = time.Duration(h.Sum32()%uint32(s.interval/time.Second)) * time.Second //nolint:gosec // G115: the interval is a uint32 count of seconds (cfg.Interval) or the default
	}
	s.next = func(now time.Time) time.Time { return nextPoll(now, s.interval, s.offset) }
	timeout := DefaultTimeout
	if cfg.TimeoutS > 0 {
		timeout = time.Duration(cfg.TimeoutS) * time.Second
	}
	s.maxBody = DefaultMaxBodyBytes
	if cfg.MaxMsgSize > 0 {
		s.maxBody = int64(cfg.MaxMsgSize)
	}

	// Accept as flagd (two values); custom headers are set after it and win.
	s.header = http.Header{"Accept": {"application/json", "application/yaml"}}
	for k, v := range cfg.Headers {
		if strings.EqualFold(k, "Host") {
			s.host = v
			continue
		}
		s.header.Set(k, v)
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	httpClient := &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if err := checkTransport(req.URL, cfg.AllowInsecure); err != nil {
				return &redirectError{fmt.Errorf("redirect to %s refused: %w", store.Redact(req.URL.String()), err)}
			}
			return nil
		},
	}
	if cfg.OAuth != nil {
		s.oauth = &oauthAuth{cfg: *cfg.OAuth, client: httpClient}
		if _, _, err := s.oauth.credentials(); err != nil {
			return fail("%w", err)
		}
	}
	s.client = &retryablehttp.Client{
		HTTPClient:   httpClient,
		RetryWaitMin: minRetryWait,
		RetryWaitMax: maxRetryWait,
		RetryMax:     DefaultRetries,
		CheckRetry:   checkRetry,
		Backoff:      jitterBackoff,
		ErrorHandler: giveUp,
		RequestLogHook: func(_ retryablehttp.Logger, _ *http.Request, attempt int) {
			if attempt > 0 {
				s.log.Debug().Int("attempt", attempt+1).Msg("retrying the request")
			}
		},
	}
	return s, nil
}

// Name is the URL as configured: flags are tagged with it.
func (s *Source) Name() string { return s.cfg.URI }

// Run polls now and then at every aligned interval until ctx ends. Failures are
// sent as updates with Err; Run returns nil when ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- flagsync.Update) error {
	if s.cfg.AuthHeader != "" {
		s.log.Warn().Msg("authHeader is given literally: it is visible in pod specs and process arguments; prefer authHeaderEnv or authHeaderFile")
	}
	if s.cfg.OAuth != nil && s.cfg.OAuth.ClientSecret != "" {
		s.log.Warn().Msg("oauth.clientSecret is given literally: it is visible in pod specs and process arguments; prefer oauth.folder")
	}
	if s.url.User != nil {
		if _, has := s.url.User.Password(); has {
			s.log.Warn().Msg("the URL holds a password: it is visible in pod specs and process arguments; prefer authHeaderEnv or authHeaderFile")
		}
	}
	s.log.Info().Dur("interval", s.interval).Dur("offset", s.offset).Msg("polling")
	var st pollState
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.poll(ctx, &st, out)
		if ctx.Err() != nil {
			return nil
		}
		timer.Reset(time.Until(s.next(time.Now())))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// pollState is what one poll leaves for the next.
type pollState struct {
	etag  string
	sum   [sha256.Size]byte
	sent  bool // a document has been sent
	dirty bool // an error was sent after the last document: send the next one even if identical
}

// poll fetches once and sends the document if it changed, or the error.
func (s *Source) poll(ctx context.Context, st *pollState, out chan<- flagsync.Update) {
	data, err := s.fetch(ctx, st)
	switch {
	case ctx.Err() != nil:
		return
	case err != nil:
		st.dirty = true
		s.log.Debug().Err(err).Msg("poll failed")
		send(ctx, out, flagsync.Update{Source: s.Name(), Err: fmt.Errorf("http source %s: %w", s.display, err)})
	case data != nil:
		st.dirty = false
		send(ctx, out, flagsync.Update{Source: s.Name(), Data: data})
	default:
		s.log.Debug().Msg("no change")
	}
}

// fetch does one (retried) GET. It returns the document when it must be sent, nil
// when nothing changed, or the error.
func (s *Source) fetch(ctx context.Context, st *pollState) ([]byte, error) {
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, s.url.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = s.header.Clone()
	if s.host != "" {
		req.Host = s.host
	}
	auth, err := s.authorization(ctx)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	conditional := st.etag != "" && st.sent && !st.dirty
	if conditional {
		req.Header.Set("If-None-Match", st.etag)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return nil, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, fmt.Errorf("GET: %s (check the source's credentials)", resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return nil, fmt.Errorf("GET: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	if int64(len(body)) > s.maxBody {
		return nil, fmt.Errorf("the response is larger than the %d byte limit (raise maxMsgSize to allow more)", s.maxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, errors.New("the response body is empty; keeping the last good flags")
	}
	if err := checkFormat(s.url.Path, resp.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	st.etag = resp.Header.Get("ETag")
	if st.sent && !st.dirty && sum == st.sum {
		return nil, nil
	}
	st.sum, st.sent = sum, true
	return body, nil
}

// authorization returns the Authorization header value, if any. It reads
// authHeaderFile again every time and asks the OAuth token source (which caches the
// token until it expires).
func (s *Source) authorization(ctx context.Context) (string, error) {
	if s.oauth != nil {
		return s.oauth.header(ctx)
	}
	return s.cfg.AuthHeaderValue()
}

// checkFormat accepts what flagd accepts (a .json/.yaml/.yml path, or a JSON or YAML
// Content-Type) and also a body without a telling extension or Content-Type (the
// store parses JSON and YAML). A Content-Type that is neither, e.g. an HTML login
// page answered with 200, is an error.
func checkFormat(urlPath, contentType string) error {
	switch strings.ToLower(path.Ext(urlPath)) {
	case ".json", ".yaml", ".yml":
		return nil
	}
	if contentType == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("unreadable Content-Type %q: %w", contentType, err)
	}
	switch {
	case mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/yaml", mt == "application/x-yaml", mt == "text/yaml", mt == "text/x-yaml", strings.HasSuffix(mt, "+yaml"),
		mt == "text/plain", mt == "application/octet-stream":
		return nil
	}
	return fmt.Errorf("unsupported Content-Type %q: the flag document must be JSON or YAML", mt)
}

// Check runs every check New makes that needs nothing but cfg itself (no file and no
// environment variable is read): the URL, the common --sources rules, plaintext to a
// host that is not loopback, the options http sources do not have and the OAuth
// token URL. The admission webhook runs it on the sources a FeatureFlagSource
// renders, so that it never admits an http source the sidecar would refuse. Errors
// start with the field name (uri, interval, ...); none quotes the URL or a
// credential.
func Check(cfg flagsync.SourceConfig) error {
	u, err := parseURL(cfg.URI)
	if err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	return check(cfg, u)
}

// check is Check after the URL has been parsed.
func check(cfg flagsync.SourceConfig, u *url.URL) error {
	if err := flagsync.Validate([]flagsync.SourceConfig{cfg}); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "sources[0]."))
	}
	if err := checkTransport(u, cfg.AllowInsecure); err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	if cfg.IncrementalUpdates {
		return errors.New("incrementalUpdates: only grpc sources have it in flagd; http sources always deliver whole documents")
	}
	if cfg.OAuth != nil {
		tokenURL, err := parseURL(cfg.OAuth.TokenURL)
		if err == nil {
			err = checkTransport(tokenURL, cfg.AllowInsecure)
		}
		if err != nil {
			return fmt.Errorf("oauth.tokenUrl: %w", err)
		}
	}
	return nil
}

// parseURL parses an absolute http:// or https:// URL. Its errors do not repeat the
// URL (url.Error's text would, query and password included).
func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
		err = errors.New("must be an absolute http:// or https:// URL")
	}
	return u, err
}

// checkTransport refuses plaintext to a host that is not loopback unless allowed.
func checkTransport(u *url.URL, allowInsecure bool) error {
	if u.Scheme != "http" || allowInsecure || flagsync.IsLoopbackHost(u.Hostname()) {
		return nil
	}
	return fmt.Errorf("plain http:// to %s sends flags (and credentials) unencrypted: use https://, or set \"allowInsecure\": true on this source in --sources", u.Hostname())
}

// redirectError marks a refused redirect: it is not retried.
type redirectError struct{ err error }

func (e *redirectError) Error() string { return e.err.Error() }
func (e *redirectError) Unwrap() error { return e.err }

// checkRetry is go-retryablehttp's default policy (connection errors, 429, 5xx
// except 501; never TLS verification errors or a cancelled context) that also
// does not retry a refused redirect.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if _, ok := errors.AsType[*redirectError](err); ok {
		return false, nil
	}
	return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
}

// jitterBackoff waits base·2^attempt capped at ceiling, with "equal jitter" (a random
// duration between half and all of it), so that replicas that failed together do
// not retry together. A Retry-After of 429 and 503 answers is honoured up to ceiling
// (the next poll is the longer wait).
func jitterBackoff(base, ceiling time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) &&
		resp.Header.Get("Retry-After") != "" {
		if d := retryablehttp.DefaultBackoff(base, ceiling, attempt, resp); d < ceiling {
			return d
		}
		return ceiling
	}
	d := ceiling
	if attempt < 30 {
		d = base << attempt
	}
	if d > ceiling || d <= 0 {
		d = ceiling
	}
	half := d / 2
	return half + rand.N(d-half+1) //nolint:gosec // G404: backoff jitter needs no cryptographic randomness
}

// giveUp turns the last failure of a poll into an error that names the status or
// the cause without repeating the URL (which may hold a query with secrets).
func giveUp(resp *http.Response, err error, attempts int) (*http.Response, error) {
	if resp != nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}
	if ue, ok := errors.AsType[*url.Error](err); ok { // the client failed (connection, TLS, refused redirect)
		err = ue.Err
	} else if resp != nil { // the server answered with a status worth retrying
		return nil, fmt.Errorf("%s (%s)", resp.Status, plural(attempts, "attempt"))
	}
	if err == nil {
		err = errors.New("request failed")
	}
	return nil, fmt.Errorf("%w (%s)", err, plural(attempts, "attempt"))
}

// plural renders "1 attempt" or "3 attempts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// nextPoll returns the first time after now whose seconds since (local) midnight are
// offset modulo interval: flagd's wall-clock-aligned schedule. The sequence restarts
// at midnight when interval does not divide a day.
func nextPoll(now time.Time, interval, offset time.Duration) time.Time {
	y, m, d := now.Date()
	midnight := time.Date(y, m, d, 0, 0, 0, 0, now.Location())
	since := now.Sub(midnight)
	var t time.Time
	if since < offset {
		t = midnight.Add(offset)
	} else {
		t = midnight.Add(offset + (since - offset).Truncate(interval) + interval)
	}
	if nextMidnight := time.Date(y, m, d+1, 0, 0, 0, 0, now.Location()); !t.Before(nextMidnight) {
		t = nextMidnight.Add(offset)
	}
	return t
}

func send(ctx context.Context, out chan<- flagsync.Update, u flagsync.Update) {
	select {
	case out <- u:
	case <-ctx.Done():
	}
}
