// Command profserve runs `flagpole flagd start` in process with a CPU profile (and a
// heap profile at exit), so the load harness can profile the real server under load
// without changing it: `go run ./bench/load -server-cpuprofile cpu.out`, or by hand:
//
//	profserve -cpuprofile cpu.out -memprofile heap.out flagd start --uri file:flags.json
//	profserve -pprof 127.0.0.1:6060 flagd start --uri file:flags.json   # go tool pprof http://127.0.0.1:6060/debug/pprof/heap
//
// The flags before "flagd" are profserve's; the rest is flagpole's command line. The
// profiles are written when the server stops (SIGTERM or SIGINT).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/flagpole-dev/flagpole/modes"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run parses profserve's flags, then serves flagd with profiling on.
func run(args []string) int {
	fs := flag.NewFlagSet("profserve", flag.ContinueOnError)
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	mem := fs.String("memprofile", "", "write a heap profile at exit to this file")
	pprofAddr := fs.String("pprof", "", "also serve net/http/pprof on this address (e.g. 127.0.0.1:6060) while the server runs, for heap and goroutine profiles of a steady state")
	rate := fs.Int("memprofilerate", runtime.MemProfileRate, "runtime.MemProfileRate: 1 records every allocation (exact heap profiles, slower)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	runtime.MemProfileRate = *rate
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profserve:", err)
			return 1
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			fmt.Fprintln(os.Stderr, "profserve:", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "profserve:", err)
			}
		}()
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profserve:", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Close() }()
	}
	code := serveFlagd(fs.Args())
	if *mem != "" {
		runtime.GC()
		f, err := os.Create(*mem)
		if err == nil {
			err = pprof.WriteHeapProfile(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "profserve:", err)
			return 1
		}
	}
	return code
}

// serveFlagd runs flagpole's `flagd start ...` command line (args start with "flagd")
// as the flagpole binary does, until SIGINT or SIGTERM, and returns the exit code.
func serveFlagd(args []string) int {
	var root struct {
		modes.Globals
		Flagd modes.FlagdCmd `cmd:""`
	}
	parser, err := kong.New(&root, kong.Name("flagpole"), kong.Resolvers(modes.ConfigResolver()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "profserve:", err)
		return 2
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profserve:", err)
		return 2
	}
	log, err := root.Logger(os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profserve:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(log, modes.BuildInfo{Version: "profserve"}); err != nil {
		fmt.Fprintln(os.Stderr, "profserve:", err)
		return 1
	}
	return 0
}
