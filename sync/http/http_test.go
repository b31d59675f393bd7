package httpsource

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/fnv"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/store"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/sync/sourcetest"
)

// waitFor bounds the polls of eventually, as sourcetest.DefaultWait bounds the waits for
// updates; they never assert timing.
const waitFor = sourcetest.DefaultWait

const (
	doc1 = `{"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}}}`
	doc2 = `{"flags": {"a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}`
)

// logBuffer collects a source's log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newSource builds a source that logs everything into logs (if not nil), polls
// every few milliseconds and retries without waiting long.
func newSource(t *testing.T, cfg flagsync.SourceConfig, logs *logBuffer) *Source {
	t.Helper()
	if cfg.Provider == "" {
		cfg.Provider = flagsync.ProviderHTTP
	}
	log := zerolog.Nop()
	if logs != nil {
		log = zerolog.New(logs).Level(zerolog.TraceLevel)
	}
	s, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.next = func(now time.Time) time.Time { return now.Add(2 * time.Millisecond) }
	s.client.RetryWaitMin, s.client.RetryWaitMax = time.Millisecond, 2*time.Millisecond
	return s
}

// eventually polls cond until it holds, failing the test after waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitFor)
		}
		time.Sleep(time.Millisecond)
	}
}

// etagServer serves a document with its ETag and answers If-None-Match with 304.
type etagServer struct {
	mu          sync.Mutex
	doc, etag   string
	requests    int
	conditional int // requests with a matching If-None-Match
	last        http.Header
	lastHost    string
}

func (e *etagServer) set(doc, etag string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.doc, e.etag = doc, etag
}

func (e *etagServer) counts() (requests, conditional int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests, e.conditional
}

func (e *etagServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	e.last, e.lastHost = r.Header.Clone(), r.Host
	if e.etag != "" {
		w.Header().Set("ETag", e.etag)
		if r.Header.Get("If-None-Match") == e.etag {
			e.conditional++
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(e.doc))
}

func TestETagAndHeaders(t *testing.T) {
	es := &etagServer{doc: doc1, etag: `"v1"`}
	srv := httptest.NewServer(es)
	defer srv.Close()
	t.Setenv("FLAGPOLE_HTTP_TEST_AUTH", "Bearer env-token")
	s := newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags", AuthHeaderEnv: "FLAGPOLE_HTTP_TEST_AUTH",
		Headers: map[string]string{"X-Team": "core", "Host": "flags.internal"}}, nil)
	out := sourcetest.Run(t, s)

	out.Data(doc1)
	eventually(t, "three 304 answers", func() bool { _, c := es.counts(); return c >= 3 })
	out.Quiet() // 304 = no change

	es.mu.Lock()
	got := map[string]any{"accept": es.last.Values("Accept"), "team": es.last.Get("X-Team"), "auth": es.last.Get("Authorization"),
		"if-none-match": es.last.Get("If-None-Match"), "host": es.lastHost}
	es.mu.Unlock()
	want := map[string]any{"accept": []string{"application/json", "application/yaml"}, "team": "core", "auth": "Bearer env-token",
		"if-none-match": `"v1"`, "host": "flags.internal"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request headers (-want +got):\n%s", diff)
	}

	es.set(doc2, `"v2"`)
	out.Data(doc2)
}

func TestIdenticalBodyNotResent(t *testing.T) {
	var requests atomic.Int64
	var mu sync.Mutex
	doc := doc1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_, _ = w.Write([]byte(doc)) // no ETag, no Content-Type
	}))
	defer srv.Close()
	out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json"}, nil))
	out.Data(doc1)
	eventually(t, "five polls", func() bool { return requests.Load() >= 5 })
	out.Quiet()
	mu.Lock()
	doc = doc2
	mu.Unlock()
	out.Data(doc2)
}

// writeCA writes the TLS test server's certificate as a PEM CA file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTLS(t *testing.T) {
	srv := httptest.NewTLSServer(&etagServer{doc: doc1})
	defer srv.Close()
	t.Run("certPath trusted", func(t *testing.T) {
		out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json", CertPath: writeCA(t, srv)}, nil))
		out.Data(doc1)
	})
	t.Run("unknown CA", func(t *testing.T) {
		var requests atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
		srv.StartTLS()
		defer srv.Close()
		out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json"}, nil))
		err := out.Err("certificate signed by unknown authority")
		if !strings.Contains(err.Error(), "(1 attempt)") {
			t.Errorf("a TLS verification failure must not be retried: %v", err)
		}
		if requests.Load() != 0 {
			t.Errorf("the server answered %d requests", requests.Load())
		}
	})
}

func TestSlowServerTimesOutThenRecovers(t *testing.T) {
	release := make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = w.Write([]byte(doc1))
	}))
	defer srv.Close()
	defer close(release)
	s := newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json"}, nil)
	s.client.HTTPClient.Timeout = 20 * time.Millisecond
	out := sourcetest.Run(t, s)
	err := out.Err("Client.Timeout exceeded")
	if !strings.Contains(err.Error(), "http source "+srv.URL+"/flags.json: GET:") {
		t.Errorf("the error does not name the source: %v", err)
	}
	slow.Store(false)
	for {
		u := out.Next()
		if u.Err == nil {
			if string(u.Data) != doc1 {
				t.Fatalf("update = %q", u.Data)
			}
			break
		}
	}
}

func TestServerErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		statuses []int // answered in turn, then the last one forever
		body     string
		ctype    string
		maxSize  int
		wantErr  string // "" = the poll succeeds
		wantReqs int64  // requests of the first poll
	}{
		"500 twice then 200":   {statuses: []int{500, 500, 200}, body: doc1, wantReqs: 3},
		"500 always":           {statuses: []int{500}, wantErr: "GET: 500 Internal Server Error (3 attempts)", wantReqs: 3},
		"503 always":           {statuses: []int{503}, wantErr: "GET: 503 Service Unavailable (3 attempts)", wantReqs: 3},
		"404 is not retried":   {statuses: []int{404}, wantErr: "GET: 404 Not Found", wantReqs: 1},
		"401 names the cause":  {statuses: []int{401}, wantErr: "GET: 401 Unauthorized (check the source's credentials)", wantReqs: 1},
		"oversized body":       {statuses: []int{200}, body: strings.Repeat(" ", 101) + "{}", maxSize: 100, wantErr: "the response is larger than the 100 byte limit (raise maxMsgSize to allow more)", wantReqs: 1},
		"empty body":           {statuses: []int{200}, body: " \n", wantErr: "the response body is empty; keeping the last good flags", wantReqs: 1},
		"html login page":      {statuses: []int{200}, body: "<html></html>", ctype: "text/html; charset=utf-8", wantErr: `unsupported Content-Type "text/html"`, wantReqs: 1},
		"yaml by content type": {statuses: []int{200}, body: "flags: {}\n", ctype: "application/yaml", wantReqs: 1},
	} {
		t.Run(name, func(t *testing.T) {
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				n := int(requests.Add(1))
				code := tc.statuses[min(n, len(tc.statuses))-1]
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(code)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			s := newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags", MaxMsgSize: tc.maxSize}, nil)
			s.next = func(time.Time) time.Time { return time.Now().Add(time.Hour) } // one poll
			out := sourcetest.Run(t, s)
			if tc.wantErr != "" {
				out.Err(tc.wantErr)
			} else {
				out.Data(tc.body)
			}
			if got := requests.Load(); got != tc.wantReqs {
				t.Errorf("%d requests, want %d", got, tc.wantReqs)
			}
		})
	}
}

// TestStoreReadiness runs the source under sync.Feed with a real store: a failing
// first fetch keeps the source not ready without stopping anything, the first good
// fetch makes it ready, and a good fetch after a failure clears the error even when
// the document did not change (so it is sent again, without If-None-Match).
func TestStoreReadiness(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var conditionalAfterError atomic.Bool
	var sawError atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			sawError.Store(true)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if sawError.Load() && r.Header.Get("If-None-Match") != "" {
			conditionalAfterError.Store(true)
		}
		sawError.Store(false)
		w.Header().Set("ETag", `"same"`)
		if r.Header.Get("If-None-Match") == `"same"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = w.Write([]byte(doc1))
	}))
	defer srv.Close()
	s := newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json"}, nil)
	st, err := store.New([]string{s.Name()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fed := make(chan struct{})
	go func() { flagsync.Feed(ctx, st, []flagsync.Source{s}); close(fed) }()
	defer func() {
		cancel()
		<-fed
	}()
	status := func() store.SourceStatus { return st.Status()[0] }

	eventually(t, "a failure recorded", func() bool { return status().Failures > 0 })
	if st.Ready() {
		t.Fatal("the store is ready without a payload")
	}
	if got := status().LastError; !strings.Contains(got, "503 Service Unavailable") {
		t.Errorf("LastError = %q", got)
	}
	failing.Store(false)
	eventually(t, "ready", st.Ready)
	applied := status().Applied

	failing.Store(true)
	eventually(t, "the new failure recorded", func() bool { return status().LastError != "" })
	failing.Store(false)
	eventually(t, "the error cleared", func() bool { return status().LastError == "" && status().Applied > applied })
	if conditionalAfterError.Load() {
		t.Error("If-None-Match was sent right after a failure (a 304 would leave the error standing)")
	}
}

func TestCredentials(t *testing.T) {
	const envSecret, fileSecret1, fileSecret2, literal = "Bearer env-s3cret", "Bearer file-s3cret-1", "Bearer file-s3cret-2", "Bearer literal-s3cret"
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") == fileSecret1 || r.Header.Get("Authorization") == literal {
			w.WriteHeader(http.StatusUnauthorized) // an error path must not leak it either
			return
		}
		_, _ = w.Write([]byte(doc1))
	}))
	defer srv.Close()
	saw := func(v string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(seen, v)
	}
	var logs logBuffer
	var errs []string

	t.Setenv("FLAGPOLE_HTTP_TEST_SECRET", envSecret)
	out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/env.json", AuthHeaderEnv: "FLAGPOLE_HTTP_TEST_SECRET"}, &logs))
	out.NextData()
	if !saw(envSecret) {
		t.Error("authHeaderEnv was not sent")
	}

	file := filepath.Join(t.TempDir(), "auth")
	writeAtomic(t, file, fileSecret1+"\n")
	out = sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/file.json", AuthHeaderFile: file}, &logs))
	errs = append(errs, out.Err("401 Unauthorized").Error())
	// Rotation: the file is re-read before every poll.
	writeAtomic(t, file, fileSecret2+"\n")
	for u := out.Next(); u.Err != nil; u = out.Next() {
		errs = append(errs, u.Err.Error())
	}
	if !saw(fileSecret2) {
		t.Error("the rotated authHeaderFile was not sent")
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	errs = append(errs, out.Err("authHeaderFile: open "+file).Error())

	out = sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/literal.json", AuthHeader: literal}, &logs))
	errs = append(errs, out.Err("401").Error())

	text := logs.String() + strings.Join(errs, "\n")
	for _, secret := range []string{"env-s3cret", "file-s3cret", "literal-s3cret"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q appears in the logs or errors:\n%s", secret, text)
		}
	}
	if n := strings.Count(logs.String(), "authHeader is given literally"); n != 1 {
		t.Errorf("the literal authHeader warning was logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `"level":"debug"`) {
		t.Errorf("debug logging was not captured, so the check proves nothing:\n%s", logs.String())
	}
}

// writeAtomic replaces a file by renaming a new one over it, as Kubernetes updates
// mounted Secrets, so that a reader never sees it half written.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestOAuth(t *testing.T) {
	var tokenRequests atomic.Int64
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenRequests.Add(1)
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != "flagpole" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var token string
		switch r.PostForm.Get("client_secret") {
		case "secret-1":
			token = "tok-1"
		case "secret-2":
			token = "tok-2"
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","error_description":"bad secret","echo":"` + r.PostForm.Get("client_secret") + `"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": token, "token_type": "Bearer", "expires_in": 3600})
	}))
	defer tokenSrv.Close()
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Header.Get("Authorization")]++
		mu.Unlock()
		_, _ = w.Write([]byte(doc1))
	}))
	defer srv.Close()
	seenCount := func(v string) int {
		mu.Lock()
		defer mu.Unlock()
		return seen[v]
	}

	folder := t.TempDir()
	write := func(name, v string) { writeAtomic(t, filepath.Join(folder, name), v+"\n") }
	write("client-id", "flagpole")
	write("client-secret", "secret-1")
	var logs logBuffer
	out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: srv.URL + "/flags.json",
		OAuth: &flagsync.OAuth{TokenURL: tokenSrv.URL + "/token", Folder: folder}}, &logs))
	out.NextData()
	eventually(t, "several polls with tok-1", func() bool { return seenCount("Bearer tok-1") >= 3 })
	if n := tokenRequests.Load(); n != 1 {
		t.Errorf("%d token requests for one unexpired token, want 1", n)
	}
	write("client-secret", "secret-2")
	eventually(t, "the rotated secret used", func() bool { return seenCount("Bearer tok-2") >= 1 })
	write("client-secret", "wrong-secret")
	err := out.Err("oauth: the token endpoint (oauth.tokenUrl) answered 401 Unauthorized: invalid_client (bad secret)")
	text := logs.String() + err.Error()
	for _, secret := range []string{"secret-1", "secret-2", "wrong-secret", "tok-1", "tok-2"} {
		if strings.Contains(text, secret) {
			t.Errorf("%q appears in the logs or errors:\n%s", secret, text)
		}
	}
}

func TestInsecureAndRedirects(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg     flagsync.SourceConfig
		wantErr string
	}{
		"http to a remote host": {cfg: flagsync.SourceConfig{URI: "http://flags.example.com/f.json"},
			wantErr: `http source http://flags.example.com/f.json: uri: plain http:// to flags.example.com sends flags (and credentials) unencrypted: use https://, or set "allowInsecure": true on this source in --sources`},
		"allowed":         {cfg: flagsync.SourceConfig{URI: "http://flags.example.com/f.json", AllowInsecure: true}},
		"loopback":        {cfg: flagsync.SourceConfig{URI: "http://127.0.0.1:8080/f.json"}},
		"localhost":       {cfg: flagsync.SourceConfig{URI: "http://localhost:8080/f.json"}},
		"https":           {cfg: flagsync.SourceConfig{URI: "https://flags.example.com/f.json"}},
		"oauth token url": {cfg: flagsync.SourceConfig{URI: "https://h/f.json", OAuth: &flagsync.OAuth{TokenURL: "http://idp.example.com/token", ClientID: "i", ClientSecret: "s"}}, wantErr: "oauth.tokenUrl: plain http:// to idp.example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Provider = flagsync.ProviderHTTP
			_, err := New(tc.cfg, zerolog.Nop())
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr && !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}

	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Redirect(w, r, "http://flags.example.com/f.json", http.StatusFound)
	}))
	defer srv.Close()
	s := newSource(t, flagsync.SourceConfig{URI: srv.URL + "/f.json"}, nil)
	s.next = func(time.Time) time.Time { return time.Now().Add(time.Hour) }
	sourcetest.Run(t, s).Err("redirect to http://flags.example.com/f.json refused: plain http:// to flags.example.com")
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests: a refused redirect must not be retried", n)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		cfg     flagsync.SourceConfig
		wantErr string
	}{
		"not a URL":           {cfg: flagsync.SourceConfig{URI: "https://exa mple.com/x?token=abc"}, wantErr: `http source "https://exa mple.com/x?redacted": uri:`},
		"not http":            {cfg: flagsync.SourceConfig{URI: "ftp://h/x"}, wantErr: "uri: must be an absolute http:// or https:// URL"},
		"missing CA":          {cfg: flagsync.SourceConfig{URI: "https://h/x?token=abc", CertPath: filepath.Join(dir, "ca.pem")}, wantErr: "http source https://h/x?redacted: certPath: open"},
		"env unset":           {cfg: flagsync.SourceConfig{URI: "https://h/x", AuthHeaderEnv: "FLAGPOLE_HTTP_TEST_UNSET"}, wantErr: "http source https://h/x: authHeaderEnv: environment variable FLAGPOLE_HTTP_TEST_UNSET is not set"},
		"file missing":        {cfg: flagsync.SourceConfig{URI: "https://h/x", AuthHeaderFile: filepath.Join(dir, "auth")}, wantErr: "http source https://h/x: authHeaderFile: open"},
		"oauth folder":        {cfg: flagsync.SourceConfig{URI: "https://h/x", OAuth: &flagsync.OAuth{TokenURL: "https://t/token", Folder: dir}}, wantErr: "oauth.folder: open " + filepath.Join(dir, "client-id")},
		"two auths":           {cfg: flagsync.SourceConfig{URI: "https://h/x", AuthHeader: "a", AuthHeaderEnv: "B"}, wantErr: "http source https://h/x: authHeader: give one of"},
		"incrementalUpdates":  {cfg: flagsync.SourceConfig{URI: "https://h/x", IncrementalUpdates: true}, wantErr: "http source https://h/x: incrementalUpdates:"},
		"user info redacted":  {cfg: flagsync.SourceConfig{URI: "https://user:pw@h/x", TimeoutS: -1}, wantErr: "http source https://redacted@h/x: timeoutS: must not be negative"},
		"interval over a day": {cfg: flagsync.SourceConfig{URI: "https://h/x", Interval: 90000}, wantErr: "http source https://h/x: interval:"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.cfg.Provider = flagsync.ProviderHTTP
			_, err := New(tc.cfg, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "token=abc") || strings.Contains(err.Error(), "pw@") {
				t.Errorf("the error reveals the query or password: %v", err)
			}
		})
	}
}

// TestCheckIsNewWithoutFiles: Check refuses what New refuses, with the same message
// after New's "http source <uri>: " prefix, for everything that reads no file and no
// environment variable; what New accepts, Check accepts. Neither quotes a query or
// a password.
func TestCheckIsNewWithoutFiles(t *testing.T) {
	for _, cfg := range []flagsync.SourceConfig{
		{URI: "ftp://h/x"},
		{URI: "https://h/x", AuthHeader: "a", AuthHeaderEnv: "B"},
		{URI: "https://h/x", IncrementalUpdates: true},
		{URI: "https://user:pw@h/x", TimeoutS: -1},
		{URI: "https://h/x", Interval: 90000},
		{URI: "http://flags.example.com/f.json?token=abc"},
		{URI: "https://h/x", OAuth: &flagsync.OAuth{TokenURL: "http://idp.example.com/token", ClientID: "i", ClientSecret: "s"}},
		{URI: "https://h/x", OAuth: &flagsync.OAuth{TokenURL: "token", ClientID: "i", ClientSecret: "s"}},
		{URI: "https://h/x", Headers: map[string]string{"a b": "c"}},
		{URI: "https://h/x?token=abc", AuthHeader: "Bearer x"},
		{URI: "http://127.0.0.1:8080/f.json"},
		{URI: "http://flags.example.com/f.json", AllowInsecure: true},
		{URI: "https://h/x", OAuth: &flagsync.OAuth{TokenURL: "https://t/token", ClientID: "i", ClientSecret: "s"}},
	} {
		cfg.Provider = flagsync.ProviderHTTP
		_, newErr := New(cfg, zerolog.Nop())
		checkErr := Check(cfg)
		switch {
		case newErr == nil && checkErr == nil:
		case newErr == nil || checkErr == nil:
			t.Errorf("%+v: New: %v, Check: %v", cfg, newErr, checkErr)
		default:
			// New quotes the URL when it does not parse as one.
			want, wantQuoted := fmt.Sprintf("http source %s: %s", store.Redact(cfg.URI), checkErr), fmt.Sprintf("http source %q: %s", store.Redact(cfg.URI), checkErr)
			if newErr.Error() != want && newErr.Error() != wantQuoted {
				t.Errorf("%+v:\n   New: %v\n Check: %s", cfg, newErr, want)
			}
			if strings.Contains(checkErr.Error(), "token=abc") || strings.Contains(checkErr.Error(), "pw@") {
				t.Errorf("the error reveals the query or password: %v", checkErr)
			}
		}
	}
	if err := Check(flagsync.SourceConfig{URI: "https://exa mple.com/x?token=abc", Provider: flagsync.ProviderHTTP}); err == nil || strings.Contains(err.Error(), "token=abc") {
		t.Errorf("a URL that does not parse: %v", err)
	}
}

func TestSchedule(t *testing.T) {
	utc := func(h, m, s int) time.Time { return time.Date(2026, 3, 1, h, m, s, 0, time.UTC) }
	for name, tc := range map[string]struct {
		now              time.Time
		interval, offset time.Duration
		want             time.Time
	}{
		"aligned, no offset":           {now: utc(10, 0, 1), interval: 5 * time.Second, want: utc(10, 0, 5)},
		"exactly on a tick":            {now: utc(10, 0, 5), interval: 5 * time.Second, want: utc(10, 0, 10)},
		"with offset":                  {now: utc(10, 0, 1), interval: 5 * time.Second, offset: 3 * time.Second, want: utc(10, 0, 3)},
		"with offset, past it":         {now: utc(10, 0, 3).Add(time.Millisecond), interval: 5 * time.Second, offset: 3 * time.Second, want: utc(10, 0, 8)},
		"before the first offset":      {now: utc(0, 0, 1), interval: time.Minute, offset: 30 * time.Second, want: utc(0, 0, 30)},
		"restarts at midnight":         {now: utc(23, 59, 58), interval: 7 * time.Second, want: utc(0, 0, 0).AddDate(0, 0, 1)},
		"midnight with offset":         {now: utc(23, 59, 59), interval: 10 * time.Second, offset: 4 * time.Second, want: utc(0, 0, 4).AddDate(0, 0, 1)},
		"a day":                        {now: utc(12, 0, 0), interval: 24 * time.Hour, offset: 3 * time.Hour, want: utc(3, 0, 0).AddDate(0, 0, 1)},
		"hourly at 17 minutes past":    {now: utc(12, 20, 0), interval: time.Hour, offset: 17 * time.Minute, want: utc(13, 17, 0)},
		"sub-second now before a tick": {now: utc(10, 0, 4).Add(999 * time.Millisecond), interval: 5 * time.Second, want: utc(10, 0, 5)},
	} {
		t.Run(name, func(t *testing.T) {
			if got := nextPoll(tc.now, tc.interval, tc.offset); !got.Equal(tc.want) {
				t.Errorf("nextPoll = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestIntervalAndSeed(t *testing.T) {
	fnvMod := func(seed string, n uint32) time.Duration {
		h := fnv.New32a()
		_, _ = h.Write([]byte(seed))
		return time.Duration(h.Sum32()%n) * time.Second
	}
	got := map[string][2]time.Duration{}
	want := map[string][2]time.Duration{}
	for _, tc := range []struct {
		name     string
		interval uint32
		seed     string
	}{{"defaults", 0, ""}, {"interval", 60, ""}, {"seed", 0, "pod-a"}, {"seed and interval", 3600, "pod-b"}} {
		s, err := New(flagsync.SourceConfig{URI: "https://h/f.json", Provider: flagsync.ProviderHTTP, Interval: tc.interval, IntervalSeed: tc.seed}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		got[tc.name] = [2]time.Duration{s.interval, s.offset}
		interval := tc.interval
		if interval == 0 {
			interval = 5
		}
		var offset time.Duration
		if tc.seed != "" {
			offset = fnvMod(tc.seed, interval)
		}
		want[tc.name] = [2]time.Duration{time.Duration(interval) * time.Second, offset}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interval and offset (-want +got):\n%s", diff)
	}
}

func TestCheckFormat(t *testing.T) {
	got := map[string]string{}
	for _, tc := range [][2]string{
		{"/f.json", "text/html"}, {"/f.YAML", ""}, {"/f.yml", "text/html"}, {"/flags", ""}, {"/flags", "application/json; charset=utf-8"},
		{"/flags", "application/vnd.flags+json"}, {"/flags", "application/x-yaml"}, {"/flags", "text/yaml"}, {"/flags", "text/plain"},
		{"/flags", "application/octet-stream"}, {"/flags", "text/html"}, {"/flags", "image/png"}, {"/flags", "a/b; ="},
	} {
		err := checkFormat(tc[0], tc[1])
		got[tc[0]+" "+tc[1]] = fmt.Sprint(err)
	}
	want := map[string]string{
		"/f.json text/html": "<nil>", "/f.YAML ": "<nil>", "/f.yml text/html": "<nil>", "/flags ": "<nil>", "/flags application/json; charset=utf-8": "<nil>",
		"/flags application/vnd.flags+json": "<nil>", "/flags application/x-yaml": "<nil>", "/flags text/yaml": "<nil>", "/flags text/plain": "<nil>",
		"/flags application/octet-stream": "<nil>",
		"/flags text/html":                `unsupported Content-Type "text/html": the flag document must be JSON or YAML`,
		"/flags image/png":                `unsupported Content-Type "image/png": the flag document must be JSON or YAML`,
		"/flags a/b; =":                   `unreadable Content-Type "a/b; =": mime: invalid media parameter`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestBackoffBounds(t *testing.T) {
	for attempt := range 40 {
		for range 20 {
			d := jitterBackoff(minRetryWait, maxRetryWait, attempt, nil)
			full := maxRetryWait
			if attempt < 5 {
				full = minRetryWait << attempt
			}
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: %s is outside [%s, %s]", attempt, d, full/2, full)
			}
		}
	}
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{"Retry-After": []string{"2"}}}
	if d := jitterBackoff(minRetryWait, maxRetryWait, 0, resp); d != 2*time.Second {
		t.Errorf("Retry-After 2: waited %s", d)
	}
	resp.Header.Set("Retry-After", "3600")
	if d := jitterBackoff(minRetryWait, maxRetryWait, 0, resp); d != maxRetryWait {
		t.Errorf("Retry-After 3600: waited %s, want the cap %s", d, maxRetryWait)
	}
}

// TestUnreachable checks that a refused connection is an error update, retried by
// the next poll, and that Run still ends cleanly.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	out := sourcetest.Run(t, newSource(t, flagsync.SourceConfig{URI: "http://" + addr + "/flags.json"}, nil))
	out.Err("connection refused")
	out.Err("connection refused")
}
