// Command hostile replays the attacks of the flagd-mode hostile-input probe (deeply
// nested contexts, credentials in source names, fd exhaustion, metric cardinality,
// stream floods, idle and half-sent connections, YAML errors, a huge flag file,
// EventStream memory) against a `flagpole flagd start` it starts itself on 127.0.0.1,
// one fresh daemon per attack. Per attack it reports the daemon's RSS (before, peak
// during, and after a settle time), its goroutines (before, while the attack holds its
// resources, after), the p50 of a normal Connect JSON ResolveBoolean sent every 20 ms
// on its own keep-alive connection before and during the attack, and what the attack
// found (status codes, leaks, recovery times, refusals, log lines).
//
// It is the regression harness to run before a release (`make hostile`), not a test:
// it asserts nothing; the figures go to docs/performance.md. It only talks to the
// daemon it started.
//
//	go run ./bench/hostile -bin bin/flagpole -out hostile.md
//	go run ./bench/hostile -attacks deep-json,deep-proto -scale 0.1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is what one harness run does.
type config struct {
	bin      string
	attacks  []string
	scale    float64       // 1: the probe's sizes; smaller for a quick run
	settle   time.Duration // wait after an attack before reading "after"
	hold     time.Duration // how long idle and half-sent connections (and EventStreams, at most 5 s) are held
	pause    time.Duration // quiet time after a daemon starts, and before the "before" figures
	out      string
	startTO  time.Duration
	binArgs  []string // before "flagd start" (tests run the test binary)
	env      []string // added to the daemon's environment (tests)
	srvArgs  []string // added after "flagd start" (e.g. --idle-timeout 20s)
	progress io.Writer
}

func main() { os.Exit(realMain()) }

// realMain runs the command and returns its exit code, so that deferred cleanups
// (the signal handler, temporary directories) run before the process exits.
func realMain() int {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "hostile:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.bin == "" {
		dir, err := os.MkdirTemp("", "flagpole-hostile-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "hostile:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "flagpole"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "hostile: go build: %v\n%s", err, out)
			return 1
		}
		cfg.bin = filepath.Join(dir, "flagpole")
	}
	results := run(ctx, cfg)
	report := markdown(cfg, results)
	fmt.Print(report)
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "hostile:", err)
			return 1
		}
	}
	for _, r := range results {
		if r.err != nil {
			return 1
		}
	}
	return 0
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("hostile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{progress: stderr, startTO: 2 * time.Minute, pause: time.Second}
	var attacks, srvArgs string
	fs.StringVar(&cfg.bin, "bin", "", "flagpole binary (default: go build one from the current directory)")
	fs.StringVar(&attacks, "attacks", "all", "comma-separated attacks, or all: "+strings.Join(attackNames(), ","))
	fs.Float64Var(&cfg.scale, "scale", 1, "size of the attacks relative to the probe's (0 < scale <= 1)")
	fs.DurationVar(&cfg.settle, "settle", 10*time.Second, "wait after an attack before the \"after\" figures")
	fs.DurationVar(&cfg.hold, "hold", 30*time.Second, "how long idle and half-sent connections are held")
	fs.StringVar(&cfg.out, "out", "", "also write the Markdown report to this file")
	fs.StringVar(&srvArgs, "server-args", "", "extra `flagd start` arguments, space-separated (e.g. \"--idle-timeout 20s\")")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.scale <= 0 || cfg.scale > 1 {
		return cfg, fmt.Errorf("-scale %v: want 0 < scale <= 1", cfg.scale)
	}
	cfg.srvArgs = strings.Fields(srvArgs)
	if attacks == "all" {
		cfg.attacks = attackNames()
	} else {
		known := map[string]bool{}
		for _, n := range attackNames() {
			known[n] = true
		}
		for a := range strings.SplitSeq(attacks, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if !known[a] {
				return cfg, fmt.Errorf("unknown attack %q (known: %s)", a, strings.Join(attackNames(), ", "))
			}
			cfg.attacks = append(cfg.attacks, a)
		}
	}
	return cfg, nil
}

// scaled is n times the scale, at least min.
func (c config) scaled(n, least int) int {
	v := int(float64(n) * c.scale)
	if v < least {
		return least
	}
	return v
}

// result is one attack's row of the report.
type result struct {
	name                            string
	rssBefore, rssPeak, rssAfter    int64
	gorBefore, gorPeak, gorAfter    string
	heapAfter, stackAfter           string // Go heap and stacks in use after the settle time
	p50Before, p50During            time.Duration
	probesDuring, probeErrorsDuring int
	note                            string
	err                             error
}

// run runs the attacks in order, each against a fresh daemon.
func run(ctx context.Context, cfg config) []result {
	var out []result
	for _, name := range cfg.attacks {
		if ctx.Err() != nil {
			break
		}
		a := attackByName(name)
		fmt.Fprintf(cfg.progress, "== %s: %s\n", a.name, a.what)
		r := runAttack(ctx, cfg, a)
		if r.err != nil {
			fmt.Fprintf(cfg.progress, "   error: %v\n", r.err)
		} else {
			fmt.Fprintf(cfg.progress, "   RSS %s -> %s -> %s (heap %s, stacks %s MiB); goroutines %s / %s / %s; p50 %v / %v\n   %s\n",
				mib(r.rssBefore), mib(r.rssPeak), mib(r.rssAfter), r.heapAfter, r.stackAfter, r.gorBefore, r.gorPeak, r.gorAfter,
				r.p50Before.Round(time.Microsecond), r.p50During.Round(time.Microsecond), r.note)
		}
		out = append(out, r)
	}
	return out
}

// runAttack starts a daemon, measures, runs the attack, waits the settle time and
// measures again.
func runAttack(ctx context.Context, cfg config, a attack) (r result) {
	r.name = a.name
	d, err := startDaemon(ctx, cfg, a.daemon)
	if err != nil {
		r.err = err
		return r
	}
	defer func() {
		if err := d.stop(); err != nil && r.err == nil {
			r.err = fmt.Errorf("daemon: %w", err)
		}
	}()
	time.Sleep(cfg.pause)
	p := startProbe(d.eval)
	defer p.stop()
	time.Sleep(cfg.pause)
	r.p50Before, _, _ = p.mark()
	r.rssBefore, _ = rss(d.pid)
	r.gorBefore = d.metric("go_goroutines")
	sampler := sampleRSS(d.pid, 50*time.Millisecond)
	e := &env{cfg: cfg, d: d, peakGor: "?"}
	res, err := a.run(ctx, e)
	r.rssPeak = sampler.stop()
	r.p50During, r.probesDuring, r.probeErrorsDuring = p.mark()
	r.gorPeak = e.peakGor
	if err != nil {
		r.err = err
	}
	select {
	case <-ctx.Done():
	case <-time.After(cfg.settle):
	}
	r.rssAfter, _ = rss(d.pid)
	r.gorAfter = d.metric("go_goroutines")
	r.heapAfter, r.stackAfter = mibString(d.metric("go_memstats_heap_inuse_bytes")), mibString(d.metric("go_memstats_stack_inuse_bytes"))
	if res.cleanup != nil {
		res.cleanup()
	}
	r.note = res.note
	if r.probeErrorsDuring > 0 && !a.daemon.noReady {
		r.note += fmt.Sprintf(" (normal requests during the attack: %d of %d failed)", r.probeErrorsDuring, r.probesDuring)
	}
	if !d.alive() {
		r.err = errors.Join(r.err, fmt.Errorf("the daemon died: %v; log tail:\n%s", d.exitErr, d.log.tail(4096))) //nolint:errorlint // %v: the exit error is nil after a clean exit, which %w would print as %!w(<nil>)
	}
	return r
}

// markdown renders the report.
func markdown(cfg config, results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Hostile-input harness, scale %g, settle %v, hold %v, server args %q\n\n", cfg.scale, cfg.settle, cfg.hold, cfg.srvArgs)
	b.WriteString("| attack | RSS before → peak → after | heap / stacks after | goroutines before / peak / after | p50 normal before / during | outcome |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(&b, "| %s | | | | | **error**: %s |\n", r.name, strings.ReplaceAll(r.err.Error(), "\n", " "))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s → %s → %s | %s / %s MiB | %s / %s / %s | %v / %v | %s |\n", r.name,
			mib(r.rssBefore), mib(r.rssPeak), mib(r.rssAfter), r.heapAfter, r.stackAfter, r.gorBefore, r.gorPeak, r.gorAfter,
			r.p50Before.Round(time.Microsecond), r.p50During.Round(time.Microsecond), strings.ReplaceAll(r.note, "|", "\\|"))
	}
	return b.String()
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
