// Command load is flagpole's load harness for flagd mode. It generates a flag file,
// starts `flagpole flagd start` on it as a subprocess on free loopback ports, measures
// the time to the first correct answer and the idle RSS, then runs concurrent
// keep-alive clients per workload (Connect JSON, gRPC, OFREP single and bulk) and
// prints req/s, p50/p99 latency, errors and the server's RSS under load as a Markdown
// table. Every answer is checked. It only ever talks to 127.0.0.1.
//
//	go run ./bench/load -bin bin/flagpole -clients 32 -duration 10s -flags 1000 -out load.md
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// config is what one harness run does.
type config struct {
	clients      int
	duration     time.Duration
	warmup       time.Duration
	settle       time.Duration
	flagCount    int
	bin          string
	workloads    []string
	out          string
	maxPerClient int
	timeout      time.Duration
	starts       int    // server starts for the first-answer figure (median)
	wrk          bool   // also replay the HTTP workloads with wrk
	cpuProfile   string // profile the server: run bench/load/profserve instead of -bin
	startupOnly  bool   // measure binary size, first answer and idle RSS only (make size)
	compare      string // a flagd-compatible binary run through the same workloads (flagd's CLI)
	rounds       int    // times the workloads are run (figures: medians)
	fanout       int    // streams of the fan-out workloads
	fanoutFlags  int    // flags in the fan-out workloads' document (0: -flags)
	changes      int    // flag changes of the fan-out workloads
	// serverArgs go before "flagd start" and serverEnv is added to the server's
	// environment (tests run the test binary as the server); the same for the
	// floor server (floorBin: default, bench/load/floorserve built here) and the
	// compare binary.
	serverArgs, serverEnv   []string
	floorBin                string
	floorArgs, floorEnv     []string
	compareArgs, compareEnv []string
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
		fmt.Fprintln(os.Stderr, "load:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		return 1
	}
	return 0
}

// parseFlags reads the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var workloads string
	fs.IntVar(&cfg.clients, "clients", 32, "concurrent clients (one keep-alive connection each) per workload")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured time per workload")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured warm-up per workload")
	fs.DurationVar(&cfg.settle, "settle", time.Second, "wait after the first answer (and after the load) before reading the idle RSS")
	fs.IntVar(&cfg.flagCount, "flags", 1000, "number of flags in the generated flag file (at least 2)")
	fs.StringVar(&cfg.bin, "bin", "", "flagpole binary (default: go build one into a temporary directory)")
	fs.StringVar(&workloads, "workloads", strings.Join(allWorkloads(), ","), "comma-separated workloads to run")
	fs.IntVar(&cfg.starts, "starts", 5, "start the server this many times and report the median time to the first correct answer (the last start serves the load)")
	fs.StringVar(&cfg.out, "out", "", "also write the report (Markdown) to this file")
	fs.IntVar(&cfg.maxPerClient, "max-requests", 5_000_000, "upper bound of requests per client and workload")
	fs.BoolVar(&cfg.wrk, "wrk", false, "also replay the HTTP workloads with wrk (-t1, -c<clients>), as the issue measured flagd; needs wrk in PATH")
	fs.StringVar(&cfg.cpuProfile, "server-cpuprofile", "", "write a CPU profile of the server to this file: the server is then bench/load/profserve (flagd mode in process with pprof), built here, and -bin is ignored; each fan-out workload's server writes FILE.<workload>-<round>")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "per-request timeout (and the startup timeout; fan-out: the wait for every stream to hear of a change)")
	fs.StringVar(&cfg.compare, "compare", "", "also run a flagd-compatible binary (e.g. flagd 0.16.1) through the same workloads, interleaved with flagpole's, and print the ratios; it is started with flagd's command line (start --uri ... --port ... --management-port ... --sync-port ... --ofrep-port ..., and --server-cert-path/--server-key-path or --socket-path for the TLS and socket workloads)")
	floorProfile := fs.String("floor-cpuprofile", "", "write a CPU profile of the floor server to this file")
	fs.StringVar(&cfg.floorBin, "floor-bin", "", "floor server binary (default: build bench/load/floorserve)")
	fs.IntVar(&cfg.rounds, "rounds", 1, "run the workloads this many times (interleaved) and report medians")
	fs.IntVar(&cfg.fanout, "fanout", 1000, "streams of the fan-out workloads (one connection each)")
	fs.IntVar(&cfg.changes, "changes", 20, "flag file changes of the fan-out workloads")
	fs.IntVar(&cfg.fanoutFlags, "fanout-flags", 0, "flags in the fan-out workloads' document (0: -flags); every stream receives the whole document on every change")
	fs.BoolVar(&cfg.startupOnly, "startup-only", false, "measure the sidecar budgets only (binary size, first correct answer, idle RSS) and run no workload (make size)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: load [flags]\n\nLoad harness for `flagpole flagd start`. Workloads: %s.\n\n", strings.Join(allWorkloads(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *floorProfile != "" {
		abs, err := filepath.Abs(*floorProfile)
		if err != nil {
			return cfg, err
		}
		cfg.floorArgs = []string{"-cpuprofile", abs}
	}
	for w := range strings.SplitSeq(workloads, ",") {
		if w = strings.TrimSpace(w); w != "" {
			cfg.workloads = append(cfg.workloads, w)
		}
	}
	return cfg, cfg.validate()
}

// validate checks a configuration.
func (c config) validate() error {
	known := map[string]bool{}
	for _, w := range allWorkloads() {
		known[w] = true
	}
	var errs []error
	for _, w := range c.workloads {
		if !known[w] {
			errs = append(errs, fmt.Errorf("-workloads: unknown workload %q (known: %s)", w, strings.Join(allWorkloads(), ", ")))
		}
	}
	if len(c.workloads) == 0 && !c.startupOnly {
		errs = append(errs, errors.New("-workloads: none given"))
	}
	if c.clients < 1 || c.clients > 4096 {
		errs = append(errs, fmt.Errorf("-clients %d: want 1..4096", c.clients))
	}
	if c.duration <= 0 || c.warmup < 0 || c.settle < 0 || c.timeout <= 0 {
		errs = append(errs, errors.New("-duration and -timeout must be positive, -warmup and -settle not negative"))
	}
	if c.flagCount < flaggen.MinFlags || c.flagCount > 1_000_000 {
		errs = append(errs, fmt.Errorf("-flags %d: want %d..1000000", c.flagCount, flaggen.MinFlags))
	}
	if c.starts < 1 || c.starts > 100 {
		errs = append(errs, fmt.Errorf("-starts %d: want 1..100", c.starts))
	}
	if c.maxPerClient < 1 {
		errs = append(errs, errors.New("-max-requests must be positive"))
	}
	if c.rounds < 1 || c.rounds > 100 {
		errs = append(errs, fmt.Errorf("-rounds %d: want 1..100", c.rounds))
	}
	if c.fanoutFlags != 0 && (c.fanoutFlags < flaggen.MinFlags || c.fanoutFlags > 1_000_000) {
		errs = append(errs, fmt.Errorf("-fanout-flags %d: want 0 or %d..1000000", c.fanoutFlags, flaggen.MinFlags))
	}
	if c.fanout < 1 || c.fanout > 20000 || c.changes < 1 || c.changes > 10000 {
		errs = append(errs, fmt.Errorf("-fanout %d, -changes %d: want 1..20000 and 1..10000", c.fanout, c.changes))
	}
	return errors.Join(errs...)
}

// run performs one harness run and writes the report to stdout (and cfg.out);
// progress goes to stderr. It fails if a workload saw errors.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	rep, err := measure(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	text := rep.markdown()
	if cfg.startupOnly {
		text = rep.sizeMarkdown()
	}
	if _, err := io.WriteString(stdout, text); err != nil {
		return err
	}
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(text), 0o644); err != nil {
			return err
		}
	}
	return rep.failures()
}

// measure starts the server and runs the workloads.
func measure(ctx context.Context, cfg config, stderr io.Writer) (report, error) {
	rep := report{cfg: cfg, harnessProcs: runtime.GOMAXPROCS(0), numCPU: runtime.NumCPU(),
		cpuModel: cpuModel(), goVersion: runtime.Version(), date: time.Now().UTC()}
	if err := cfg.validate(); err != nil {
		return rep, err
	}
	tmp, err := os.MkdirTemp("", "flagpole-load-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(tmp)

	flagsFile, doc, err := writeFlagFile(tmp, cfg.flagCount)
	if err != nil {
		return rep, err
	}
	rep.flagsBytes = len(doc)
	wrk := ""
	if cfg.wrk {
		if wrk, err = exec.LookPath("wrk"); err != nil {
			return rep, fmt.Errorf("-wrk: %w (apt-get install wrk, or drop -wrk)", err)
		}
	}
	rep.bin = cfg.bin
	if cfg.cpuProfile != "" {
		profile, err := filepath.Abs(cfg.cpuProfile)
		if err != nil {
			return rep, err
		}
		fmt.Fprintln(stderr, "building bench/load/profserve ...")
		if rep.bin, err = buildPackage(ctx, tmp, "github.com/flagpole-dev/flagpole/bench/load/profserve"); err != nil {
			return rep, err
		}
		cfg.serverArgs = append([]string{"-cpuprofile", profile}, cfg.serverArgs...)
		rep.profiled = profile
	} else if rep.bin == "" {
		fmt.Fprintln(stderr, "building flagpole ...")
		if rep.bin, err = buildPackage(ctx, tmp, "github.com/flagpole-dev/flagpole"); err != nil {
			return rep, err
		}
	}

	fmt.Fprintf(stderr, "starting %s flagd start with %d flags ...\n", rep.bin, cfg.flagCount)
	opts := serverOptions{label: "flagpole", bin: rep.bin, args: cfg.serverArgs, env: cfg.serverEnv, flagsFile: flagsFile,
		probePath: "/flagd.evaluation.v1.Service/ResolveBoolean", probeBody: connectStaticBody,
		probeOK: func(status int, body []byte) bool { return connectCheck("STATIC")(status, body, nil) },
		timeout: cfg.timeout}
	// Startup is measured over several starts (it is short and easily disturbed); the
	// last server stays up for the load.
	for i := 1; i < cfg.starts; i++ {
		s, err := startServer(ctx, opts)
		if err != nil {
			return rep, err
		}
		rep.firstAnswers = append(rep.firstAnswers, s.firstAnswer)
		if err := s.stop(); err != nil {
			return rep, fmt.Errorf("stopping a startup-probe server: %w\n%s", err, s.log.String())
		}
	}
	srv, err := startServer(ctx, opts)
	if err != nil {
		return rep, err
	}
	defer func() { _ = srv.stop() }()
	rep.firstAnswers = append(rep.firstAnswers, srv.firstAnswer)
	rep.firstAnswer = median(rep.firstAnswers)
	sleep(ctx, cfg.settle)
	if rep.idleRSS, err = rssBytes(srv.pid); err != nil {
		return rep, err
	}
	rep.idleAnon, _ = procStatus(srv.pid, "RssAnon")
	rep.idleFile, _ = procStatus(srv.pid, "RssFile")
	if st, err := os.Stat(rep.bin); err == nil {
		rep.binBytes = st.Size()
	}
	rep.serverProcs, rep.serverGo = serverRuntime(srv.mgmt)
	fmt.Fprintf(stderr, "first correct answer after %s (median of %v), idle RSS %s\n", ms(rep.firstAnswer), rep.firstAnswers, mib(rep.idleRSS))
	if cfg.startupOnly {
		rep.serverLogBytes = srv.log.Len()
		if err := srv.stop(); err != nil {
			rep.stopErr = err.Error()
		}
		return rep, nil
	}

	fl := &fleet{cfg: cfg, dir: tmp, flagsFile: flagsFile, doc: doc, stderr: stderr, main: srv,
		flagpole: rep.bin, profiled: cfg.cpuProfile != ""}
	defer fl.stopAll()
	if err := fl.runAll(ctx, &rep); err != nil {
		return rep, err
	}
	for _, name := range cfg.workloads {
		if _, _, ok := wrkTarget(name, srv); !ok || wrk == "" || !srv.alive() || ctx.Err() != nil {
			continue
		}
		fmt.Fprintf(stderr, "%s with wrk: -t1 -c%d, %s ...\n", name, cfg.clients, cfg.duration)
		res, err := runWrk(ctx, wrk, tmp, name, srv, runOptions{clients: cfg.clients, duration: cfg.duration, timeout: cfg.timeout})
		if err != nil {
			return rep, err
		}
		fmt.Fprintf(stderr, "  %.0f req/s, p50 %s, p99 %s, %d errors\n", res.reqPerSec(), us(res.p50), us(res.p99), res.errors)
		rep.results = append(rep.results, res)
	}
	if srv.alive() {
		sleep(ctx, cfg.settle)
		rep.afterRSS, _ = rssBytes(srv.pid)
	}
	rep.serverLogBytes = srv.log.Len()
	if err := srv.stop(); err != nil {
		rep.stopErr = err.Error()
	}
	return rep, nil
}

// writeFlagFile generates a flag file of n flags in dir, checks that flagd would load
// all n of them, and returns its path and size in bytes.
func writeFlagFile(dir string, n int) (string, []byte, error) {
	doc, err := flaggen.Generate(n)
	if err != nil {
		return "", nil, err
	}
	set, err := flags.Parse(doc, flags.Strict)
	if err != nil {
		return "", nil, fmt.Errorf("generated flag file is not valid (%d flags wanted): %w", n, err)
	}
	if len(set.Flags) != n {
		return "", nil, fmt.Errorf("generated flag file has %d flags, %d wanted", len(set.Flags), n)
	}
	path := filepath.Join(dir, "flags.json")
	return path, doc, os.WriteFile(path, doc, 0o600)
}

// median returns the median of durations (the lower middle one for an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && string(bytes.TrimSpace(name)) == "model name" {
			return string(bytes.TrimSpace(value))
		}
	}
	return "unknown CPU"
}
