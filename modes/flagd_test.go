package modes

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// parseStart parses "flagd start" arguments the way main does (with the --config resolver).
func parseStart(t *testing.T, args ...string) (*FlagdStartCmd, error) {
	t.Helper()
	var root struct {
		Flagd FlagdCmd `cmd:""`
	}
	parser, err := kong.New(&root, kong.Resolvers(ConfigResolver()), kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = parser.Parse(append([]string{"flagd", "start"}, args...))
	return &root.Flagd.Start, err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFlagdStartPrecedence(t *testing.T) {
	config := writeFile(t, "config.yaml", `
sources:
  - uri: from-config.json
    provider: file
port: 9013
management-port: 9014
context-value:
  injectedmetadata: set
disable-sync-metadata: true
`)
	type view struct {
		Port, ManagementPort uint16
		Sources              startconfig.SourceList
		ContextValue         map[string]string
		DisableSyncMetadata  bool
	}
	cases := map[string]struct {
		args []string
		env  map[string]string
		want view
	}{
		"defaults": {
			args: []string{"-f", "file:a.json"},
			want: view{Port: 8013, ManagementPort: 8014},
		},
		"config file below defaults": {
			args: []string{"--config", config},
			want: view{Port: 9013, ManagementPort: 9014, Sources: startconfig.SourceList{{URI: "from-config.json", Provider: "file"}},
				ContextValue: map[string]string{"injectedmetadata": "set"}, DisableSyncMetadata: true},
		},
		"env wins over config, flag wins over env": {
			args: []string{"--config", config, "-m", "7014"},
			env:  map[string]string{"FLAGD_PORT": "7013", "FLAGD_MANAGEMENT_PORT": "6014"},
			want: view{Port: 7013, ManagementPort: 7014, Sources: startconfig.SourceList{{URI: "from-config.json", Provider: "file"}},
				ContextValue: map[string]string{"injectedmetadata": "set"}, DisableSyncMetadata: true},
		},
		"flagd short flags and comma maps": {
			args: []string{"-p", "1234", "-X", "a=1,b=2", "-f", "file:x.json"},
			want: view{Port: 1234, ManagementPort: 8014, ContextValue: map[string]string{"a": "1", "b": "2"}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseStart(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := view{c.Port, c.ManagementPort, c.Sources, c.ContextValue, c.DisableSyncMetadata}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlagdStartRejectsBadConfiguration(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"cert without key":   {[]string{"-f", "file:a.json", "-c", "cert.pem"}, "--server-cert-path and --server-key-path must be given together"},
		"same port twice":    {[]string{"-f", "file:a.json", "-p", "9000", "-r", "9000"}, "--port and --ofrep-port are both 9000"},
		"otel exporter":      {[]string{"-f", "file:a.json", "-t", "otel"}, `--metrics-exporter otel needs --otel-collector-uri`},
		"unknown provider":   {[]string{"-s", `[{"uri":"x","provider":"ftp"}]`}, `sources[0].provider: unknown provider "ftp"`},
		"config that is bad": {[]string{"--config", writeFile(t, "bad.json", "{")}, "--config"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parseStart(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no sources":     {nil, "no flag sources: give at least one --uri/-f or --sources/-s"},
		"unknown prefix": {[]string{"-f", "ftp://x"}, "invalid sync uri argument: ftp://x, must start with"},
		"twice":          {[]string{"-f", "file:a.json", "-s", `[{"uri":"a.json","provider":"file"}]`}, `source "a.json" is configured twice`},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := parseStart(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.SourceConfigs(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseURIPrefixes(t *testing.T) {
	cases := map[string]flagsync.SourceConfig{
		"file:/etc/flags.json":              {URI: "/etc/flags.json", Provider: "file"},
		"core.openfeature.dev/ns/name":      {URI: "ns/name", Provider: "kubernetes"},
		"https://flags.example.com/f.json":  {URI: "https://flags.example.com/f.json", Provider: "http"},
		"grpc://flagd:8015":                 {URI: "flagd:8015", Provider: "grpc"},
		"grpcs://flagd:8015":                {URI: "flagd:8015", Provider: "grpc", TLS: true},
		"dns:///flagd:8015":                 {URI: "dns:///flagd:8015", Provider: "grpc"},
		"s3://bucket/flags.json?region=x-1": {URI: "s3://bucket/flags.json?region=x-1", Provider: "s3"},
	}
	for uri, want := range cases {
		got, err := flagsync.ParseURI(uri)
		if err != nil {
			t.Fatalf("%s: %v", uri, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", uri, diff)
		}
	}
}

// TestFlagdServesExampleFlags runs flagd mode in-process on free ports and checks
// that it answers over Connect JSON and OFREP, becomes ready, and shuts down.
func TestFlagdServesExampleFlags(t *testing.T) {
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	waitReady(t, "http://"+a.Management+"/readyz")
	post := func(url, body string) string {
		resp, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	got := []string{
		post("http://"+a.Evaluation+"/flagd.evaluation.v1.Service/ResolveBoolean", `{"flagKey":"new-checkout","context":{"email":"ada@example.com"}}`),
		post("http://"+a.OFREP+"/ofrep/v1/evaluate/flags/search-page-size", `{}`),
	}
	want := []string{
		`{"value":true,"reason":"TARGETING_MATCH","variant":"on","metadata":{"flagSetId":"storefront","owner":"payments","team":"web","version":"2026-08-01"}}`,
		`{"value":25,"key":"search-page-size","reason":"STATIC","variant":"medium","metadata":{"flagSetId":"storefront","team":"web","version":"2026-08-01"}}`,
	}
	for i := range want { // protojson varies whitespace on purpose: compare decoded JSON
		var w, g any
		if err := json.Unmarshal([]byte(want[i]), &w); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(got[i]), &g); err != nil {
			t.Fatalf("response %d is not JSON: %s", i, got[i])
		}
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("response %d (-want +got):\n%s", i, diff)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// waitReady polls a readiness URL until it answers 200 (bounded, not a timing assertion).
func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never became ready", url)
}

// TestSourceCredentialsNeverLogged runs flagd mode with an http source whose URL
// carries user info and a token, against a server that fails, and reads every log
// line of start-up and of the failures (at trace level) and the /readyz report:
// the host is named, the credentials never are.
func TestSourceCredentialsNeverLogged(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer failing.Close()
	uri := strings.Replace(failing.URL, "http://", "http://ops:PASSWORD123@", 1) + "/flags.json?token=TOKEN456&env=prod"
	c, err := parseStart(t, "-f", uri, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Serve(ctx, zerolog.New(&logs).Level(zerolog.TraceLevel), BuildInfo{}, func(a Addresses) { addrs <- a })
	}()
	a := <-addrs
	var readyz string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(readyz, `"failures"`) {
		resp, err := http.Get("http://" + a.Management + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			readyz = string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for name, text := range map[string]string{"logs": out, "/readyz": readyz} {
		if strings.Contains(text, "PASSWORD123") || strings.Contains(text, "TOKEN456") {
			t.Errorf("%s leak the source's credentials:\n%s", name, text)
		}
		if !strings.Contains(text, "/flags.json") {
			t.Errorf("%s do not name the source:\n%s", name, text)
		}
	}
	for _, want := range []string{"flagd mode started", "500"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q (start-up and the failure must be logged):\n%s", want, out)
		}
	}
}

// syncBuffer is a strings.Builder safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// TestManagementBindAddress: management listens where --management-bind-address
// says (the sidecar's probes), the other listeners where --bind-address says.
func TestManagementBindAddress(t *testing.T) {
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0",
		"--bind-address", "127.0.0.1", "--management-bind-address", "127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	waitReady(t, "http://"+a.Management+"/readyz")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for name, addr := range map[string]string{"evaluation": a.Evaluation, "sync": a.Sync, "ofrep": a.OFREP, "management": a.Management} {
		want := "127.0.0.1:"
		if name == "management" {
			want = "127.0.0.2:"
		}
		if !strings.HasPrefix(addr, want) {
			t.Errorf("%s listens on %s, want %s*", name, addr, want)
		}
	}
}

// TestFlagdConnectionLimits: the evaluation, sync and OFREP listeners share
// --max-connections (a connection over it is refused at once, 503 on plaintext
// HTTP) while the management port keeps answering; idle keep-alive connections are
// closed after --idle-timeout, which frees their slots.
func TestFlagdConnectionLimits(t *testing.T) {
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1",
		"--max-connections", "2", "--idle-timeout", "300ms")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	waitReady(t, "http://"+a.Management+"/readyz")
	request := func(addr, path string) (net.Conn, string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", path)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			return nil, "error: " + err.Error()
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return conn, fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(body)))
	}
	const evalPath, ofrepPath = "/flagd.evaluation.v1.Service/ResolveBoolean", "/ofrep/v1/evaluate/flags/new-checkout"
	held := 0
	for _, addr := range []struct{ addr, path string }{{a.Evaluation, evalPath}, {a.OFREP, ofrepPath}} {
		conn, got := request(addr.addr, addr.path)
		if conn == nil || strings.HasPrefix(got, "503") {
			t.Fatalf("connection %d of 2: %s", held+1, got)
		}
		defer conn.Close()
		held++
	}
	if _, got := request(a.Evaluation, evalPath); got != "503 too many connections" {
		t.Errorf("a third connection: %q, want 503 too many connections", got)
	}
	waitReady(t, "http://"+a.Management+"/readyz") // management has its own cap
	// the idle timeout closes the two held connections, so a new one gets in
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, got := request(a.OFREP, ofrepPath)
		if conn != nil {
			conn.Close()
		}
		if strings.HasPrefix(got, "200") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle connections were not closed: still %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFlagdCutsHalfSentRequests: on the evaluation port (which serves long-lived
// EventStreams) a request whose body never comes is cut after the 5 s request read
// timeout instead of holding its goroutine and connection forever; on HTTP/2 the
// stream is reset and the connection stays.
func TestFlagdCutsHalfSentRequests(t *testing.T) {
	c, err := parseStart(t, "-f", "file:"+examplesJSON, "-p", "0", "-m", "0", "-g", "0", "-r", "0", "--bind-address", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan Addresses, 1)
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx, zerolog.Nop(), BuildInfo{}, func(a Addresses) { addrs <- a }) }()
	a := <-addrs
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	waitReady(t, "http://"+a.Management+"/readyz")
	conn, err := net.DialTimeout("tcp", a.Evaluation, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = fmt.Fprintf(conn, "POST /flagd.evaluation.v1.Service/ResolveBoolean HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // bounds the wait; the cut comes after 5 s
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Errorf("the half-sent request's connection was not closed: %v", err)
	}
}
