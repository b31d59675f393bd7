package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/modes"
)

// serveEnv makes the test binary act as `flagpole flagd start ...`, so the smoke
// test replays attacks against a real subprocess without building bin/flagpole.
const serveEnv = "FLAGPOLE_HOSTILE_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(serveFlagd(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// serveFlagd runs `flagd start` with args as the flagpole binary does.
func serveFlagd(args []string) int {
	var root struct {
		Flagd modes.FlagdCmd `cmd:""`
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
	if err := kctx.Run(zerolog.New(os.Stderr).Level(zerolog.InfoLevel), modes.BuildInfo{Version: "hostile-test"}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestHarnessSmoke replays the cheap attacks at a tiny scale against a real daemon
// (the test binary), so that `make test` keeps the harness working; the figures are
// not checked (the harness is not a test), only that each attack ran and found what
// the fixed daemon should show.
func TestHarnessSmoke(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the harness reads /proc (Linux only)")
	}
	if testing.Short() {
		t.Skip("starts several daemons")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	cfg := config{bin: self, env: []string{serveEnv + "=1"}, scale: 0.01, settle: 100 * time.Millisecond,
		hold: 200 * time.Millisecond, pause: 100 * time.Millisecond, startTO: 30 * time.Second, progress: &progress,
		attacks: []string{"deep-json", "deep-proto", "sync-credentials", "sync-cardinality", "yaml-leak", "eventstream-memory", "resolveall-selectors"}}
	results := run(t.Context(), cfg)
	report := markdown(cfg, results)
	want := map[string]string{
		"deep-json":            "400 ×1",
		"deep-proto":           "400 ×1",
		"sync-credentials":     "no secret anywhere",
		"sync-cardinality":     "4 streams",
		"yaml-leak":            "no file content",
		"eventstream-memory":   "20 streams (200 ×20)",
		"resolveall-selectors": "200 ResolveAll calls with distinct 1 KiB selectors, 0 failed",
	}
	if len(results) != len(want) {
		t.Fatalf("%d results:\n%s\n%s", len(results), report, progress.String())
	}
	for _, r := range results {
		if r.err != nil || !strings.Contains(r.note, want[r.name]) {
			t.Errorf("%s: error %v, outcome %q, want it to contain %q", r.name, r.err, r.note, want[r.name])
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s\nprogress:\n%s", report, progress.String())
	}
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"-attacks", "deep-json, yaml-leak", "-scale", "0.5", "-server-args", "--idle-timeout 20s"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.attacks, ",") != "deep-json,yaml-leak" || cfg.scale != 0.5 || strings.Join(cfg.srvArgs, " ") != "--idle-timeout 20s" {
		t.Errorf("parsed %+v", cfg)
	}
	for _, bad := range [][]string{{"-attacks", "nope"}, {"-scale", "2"}, {"-scale", "0"}, {"extra"}} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
