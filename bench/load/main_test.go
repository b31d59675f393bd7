package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/bench/load/floor"
	"github.com/flagpole-dev/flagpole/modes"
)

// serveEnv makes the test binary act as `flagpole flagd start ...`, so that the
// end-to-end test runs the harness against a real subprocess without building
// bin/flagpole.
const serveEnv = "FLAGPOLE_LOAD_TEST_SERVE"

// floorEnv makes the test binary act as the floor server (bench/load/floorserve).
const floorEnv = "FLAGPOLE_LOAD_TEST_FLOOR"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(serveFlagd(os.Args[1:]))
	}
	if os.Getenv(floorEnv) == "1" {
		os.Exit(floor.Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// serveFlagd runs `flagd start` (or flagd's `start`) with args like the flagpole
// binary does.
func serveFlagd(args []string) int {
	var root struct {
		Flagd modes.FlagdCmd      `cmd:""`
		Start modes.FlagdStartCmd `cmd:""`
	}
	parser, err := kong.New(&root, kong.Name("flagpole"))
	if err != nil {
		panic(err)
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(zerolog.New(os.Stderr).Level(zerolog.InfoLevel), modes.BuildInfo{Version: "load-test"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestHarnessEndToEnd runs every workload briefly against a real server subprocess
// and checks that each measured correct answers and no errors.
func TestHarnessEndToEnd(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the harness reads /proc (Linux only)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{clients: 1, duration: 300 * time.Millisecond, warmup: 20 * time.Millisecond, settle: 20 * time.Millisecond,
		flagCount: 50, bin: self, workloads: allWorkloads(), maxPerClient: 1_000_000, timeout: 10 * time.Second, starts: 2,
		rounds: 1, fanout: 5, changes: 2,
		serverEnv: []string{serveEnv + "=1"}, floorBin: self, floorEnv: []string{floorEnv + "=1"},
		// the test binary again, started with flagd's command line
		compare: self, compareEnv: []string{serveEnv + "=1"}}
	var progress bytes.Buffer
	rep, err := measure(t.Context(), cfg, &progress)
	if err != nil {
		t.Fatalf("measure: %v\nprogress:\n%s", err, progress.String())
	}
	if err := rep.failures(); err != nil {
		t.Fatalf("failures: %v\n%s", err, rep.markdown())
	}
	type row struct {
		Name, Server                 string
		Clients                      int
		Answered, HasLatency, HasRSS bool
	}
	var got, want []row
	for _, r := range rep.results {
		got = append(got, row{r.name, r.server, r.clients, r.requests > 0, r.p50 > 0 && r.p99 >= r.p50, r.maxRSS > 0})
	}
	type fanoutRow struct {
		Name, Server        string
		Streams, Changes    int
		Opened, RSSMeasured bool
	}
	var gotFanout, wantFanout []fanoutRow
	for _, f := range rep.fanouts {
		gotFanout = append(gotFanout, fanoutRow{f.name, f.server, f.streams, len(f.last), f.openAll > 0, f.rssIdle > 0})
	}
	for _, w := range workloads() {
		switch {
		case w.fanout:
			for _, server := range []string{"floor", "flagpole", "compare"} {
				wantFanout = append(wantFanout, fanoutRow{w.name, server, 5, 2, true, true})
			}
		case w.onFloor:
			want = append(want, row{w.name, "floor", 1, true, true, true})
		default:
			for _, server := range []string{"flagpole", "compare"} {
				want = append(want, row{w.name, server, 1, true, true, true})
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s\n%s", diff, rep.markdown())
	}
	if diff := cmp.Diff(wantFanout, gotFanout); diff != "" {
		t.Errorf("fan-out results (-want +got):\n%s\n%s", diff, rep.markdown())
	}
	if len(rep.firstAnswers) != 2 || rep.firstAnswer <= 0 || rep.idleRSS <= 0 || rep.afterRSS <= 0 {
		t.Errorf("startup figures missing: first answer %v, idle RSS %d, RSS after load %d", rep.firstAnswer, rep.idleRSS, rep.afterRSS)
	}
	md := rep.markdown()
	for _, w := range workloads() {
		row := "| " + w.name + " | flagpole | 1 | 1 | "
		switch {
		case w.fanout:
			row = "| " + w.name + " | flagpole | 1 | 50 | 5 | " // round, flags, streams
		case w.onFloor:
			row = "| " + w.name + " | floor | 1 | 1 | "
		}
		if !strings.Contains(md, row) {
			t.Errorf("report has no row %q:\n%s", row, md)
		}
	}
	for _, want := range []string{"| `grpc-static` | ", "× floor", "compare ÷ flagpole"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestStartupOnly measures the sidecar budgets without any workload (make size):
// every figure is there and the report names each budget.
func TestStartupOnly(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the harness reads /proc (Linux only)")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config{clients: 1, duration: time.Second, settle: 20 * time.Millisecond, flagCount: 50, bin: self,
		maxPerClient: 1, timeout: 10 * time.Second, starts: 2, startupOnly: true, serverEnv: []string{serveEnv + "=1"},
		rounds: 1, fanout: 1, changes: 1}
	var progress bytes.Buffer
	rep, err := measure(t.Context(), cfg, &progress)
	if err != nil {
		t.Fatalf("measure: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.results) != 0 || len(rep.firstAnswers) != 2 || rep.firstAnswer <= 0 || rep.idleRSS <= 0 || rep.binBytes <= 0 {
		t.Errorf("figures: %d workloads run, first answers %v, idle RSS %d, binary %d bytes", len(rep.results), rep.firstAnswers, rep.idleRSS, rep.binBytes)
	}
	md := rep.sizeMarkdown()
	for _, want := range []string{"| binary size | ≤ 40 MB |", "| first correct answer after exec, 50 flags | ≤ 50.0 ms |", "| idle RSS, 50 flags"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestParseFlags checks defaults and rejections.
func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Clients, Flags int
		Duration       time.Duration
		Workloads      []string
	}
	if diff := cmp.Diff(summary{32, 1000, 10 * time.Second, allWorkloads()},
		summary{cfg.clients, cfg.flagCount, cfg.duration, cfg.workloads}); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	for _, args := range [][]string{
		{"-workloads", "connect-static,nope"},
		{"-workloads", ""},
		{"-clients", "0"},
		{"-flags", "1"},
		{"-duration", "0s"},
		{"-starts", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

// TestRawConn checks the HTTP/1.1 client against a real server: Content-Length and
// chunked bodies, ETag, Connection: close, bodiless statuses, keep-alive reuse.
func TestRawConn(t *testing.T) {
	big := strings.Repeat("0123456789", 10_000)
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("ETag", `"abc"`)
		_, _ = w.Write([]byte(`{"value":true}`))
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < len(big); i += 30_000 {
			_, _ = w.Write([]byte(big[i:min(i+30_000, len(big))]))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye"))
	})
	mux.HandleFunc("/not-modified", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotModified)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	type answer struct {
		Status     int
		Body, ETag string
	}
	c := newRawConn(addr, 5*time.Second)
	defer c.close()
	for _, tc := range []struct {
		path string
		want answer
	}{
		{"/small", answer{200, `{"value":true}`, `"abc"`}},
		{"/chunked", answer{200, big, ""}},
		{"/small", answer{200, `{"value":true}`, `"abc"`}},
		{"/close", answer{200, "bye", ""}},
		{"/not-modified", answer{304, "", ""}},
		{"/missing", answer{404, "404 page not found\n", ""}},
	} {
		status, body, etag, err := c.do(rawRequest(addr, tc.path, `{}`))
		if err != nil {
			t.Fatalf("%s: %v", tc.path, err)
		}
		if diff := cmp.Diff(tc.want, answer{status, string(body), string(etag)}); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.path, diff)
		}
	}
}

// TestFragment checks the fragment matcher used on every answer.
func TestFragment(t *testing.T) {
	for _, tc := range []struct {
		body, name, value string
		want              bool
	}{
		{`{"value":true,"reason":"STATIC"}`, "value", "true", true},
		{`{"value": true, "reason": "STATIC"}`, "reason", `"STATIC"`, true},
		{`{"value":false,"reason":"STATIC"}`, "value", "true", false},
		{`{"key":"value","value":true}`, "value", "true", true},
		{`{"reason":"TARGETING_MATCH"}`, "reason", `"STATIC"`, false},
		{``, "value", "true", false},
	} {
		if got := field(tc.name, tc.value).in([]byte(tc.body)); got != tc.want {
			t.Errorf("field(%s, %s).in(%s) = %v", tc.name, tc.value, tc.body, got)
		}
	}
}

// TestThousands checks the rate formatting.
func TestThousands(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 28800.4: "28,800", 1234567: "1,234,567"} {
		if got := thousands(in); got != want {
			t.Errorf("thousands(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestParseWrk checks the reading of wrk's --latency report.
func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8013/flagd.evaluation.v1.Service/ResolveBoolean
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  412.00us  20.12ms   85.00%
    Req/Sec    29.2k     1.2k    31.0k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.20ms
     90%    1.50ms
     99%    2.61ms
  290000 requests in 10.00s, 60.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  29000.00
Transfer/sec:      6.00MB
`
	var got result
	if err := parseWrk([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Requests, Errors  int64
		P50, P99, Elapsed time.Duration
	}
	want := summary{290000 - 8, 8, 812 * time.Microsecond, 2610 * time.Microsecond, 10 * time.Second}
	if diff := cmp.Diff(want, summary{got.requests, got.errors, got.p50, got.p99, got.elapsed}); diff != "" {
		t.Errorf("parseWrk (-want +got):\n%s", diff)
	}
	if err := parseWrk([]byte("wrk: connection refused\n"), &result{}); err == nil {
		t.Error("parseWrk of an error message: no error")
	}
}
