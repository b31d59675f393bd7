package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
	"github.com/flagpole-dev/flagpole/bench/load/floor"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// fleet holds the server processes of a run: flagpole (the main instance on TCP,
// and instances with a TLS or a unix socket evaluation listener when a workload
// needs one), the -compare binary likewise, and the floor server. Instances are
// started when first needed and stopped at the end.
type fleet struct {
	cfg       config
	dir       string
	flagsFile string
	doc       []byte
	stderr    io.Writer
	main      *server // flagpole on TCP, started by measure (startup figures)
	flagpole  string  // its binary
	profiled  bool    // flagpole is bench/load/profserve profiling the main instance

	certs     *certs
	instances map[string]*server // label/transport -> running server
}

// key names an instance.
func key(label string, t transport) string { return fmt.Sprintf("%s/%d", label, t) }

// get returns the running instance of a label ("flagpole", "compare", "floor")
// serving the evaluation listener over t, starting it if needed.
func (f *fleet) get(ctx context.Context, label string, t transport) (*server, error) {
	if label == "flagpole" && t == transportPlain {
		return f.main, nil
	}
	if label == "floor" {
		t = transportPlain // one floor process serves all three
	}
	if f.instances == nil {
		f.instances = map[string]*server{}
	}
	if s, ok := f.instances[key(label, t)]; ok {
		return s, nil
	}
	if f.certs == nil {
		c, err := newCerts(f.dir)
		if err != nil {
			return nil, err
		}
		f.certs = c
	}
	o, err := f.options(ctx, label, t, f.flagsFile)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f.stderr, "starting %s (%s) ...\n", label, o.bin)
	s, err := startServer(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	f.instances[key(label, t)] = s
	return s, nil
}

// options are the start options of an instance serving flagsFile.
func (f *fleet) options(ctx context.Context, label string, t transport, flagsFile string) (serverOptions, error) {
	o := serverOptions{label: label, flagsFile: flagsFile, timeout: f.cfg.timeout}
	switch label {
	case "floor":
		o.floor, o.bin, o.args, o.env = true, f.cfg.floorBin, f.cfg.floorArgs, f.cfg.floorEnv
		if o.bin == "" {
			fmt.Fprintln(f.stderr, "building bench/load/floorserve ...")
			bin, err := buildPackage(ctx, f.dir, "github.com/flagpole-dev/flagpole/bench/load/floorserve")
			if err != nil {
				return o, err
			}
			f.cfg.floorBin, o.bin = bin, bin
		}
		o.tls, o.socket = f.certs, filepath.Join(f.dir, "floor.sock")
		if slices.Contains(f.cfg.workloads, wlFloorBulk) {
			file, err := f.bulkAnswer()
			if err != nil {
				return o, err
			}
			o.args = append(slices.Clip(o.args), "-bulk-answer", file)
		}
		return o, nil
	case "compare":
		o.bin, o.args, o.env, o.flagdCLI = f.cfg.compare, f.cfg.compareArgs, f.cfg.compareEnv, true
	default:
		o.bin, o.env = f.flagpole, f.cfg.serverEnv
		if !f.profiled { // profserve's own flags profile the main instance only
			o.args = f.cfg.serverArgs
		}
	}
	switch t {
	case transportTLS:
		o.tls = f.certs
	case transportUnix:
		o.socket = filepath.Join(f.dir, label+"-"+fmt.Sprint(len(f.instances))+".sock")
	}
	return o, nil
}

// bulkAnswer writes the main instance's answer to the ofrep-bulk request into a
// file for the floor server (floor-bulk) and returns its path.
func (f *fleet) bulkAnswer() (string, error) {
	c := newRawConn(f.main.ofrep, f.cfg.timeout)
	defer c.close()
	status, body, _, err := c.do(rawRequest(f.main.ofrep, floor.BulkPath, ofrepBulkBody))
	if err == nil {
		err = ofrepBulkValidate(status, body, f.cfg.flagCount)
	}
	if err != nil {
		return "", fmt.Errorf("the bulk answer for %s: %w", wlFloorBulk, err)
	}
	file := filepath.Join(f.dir, "bulk-answer.json")
	return file, os.WriteFile(file, body, 0o600)
}

// stopAll stops every instance but the main one (measure stops that).
func (f *fleet) stopAll() {
	for _, s := range f.instances {
		_ = s.stop()
	}
	f.instances = nil
}

// labels are the binaries every flagd workload runs on.
func (f *fleet) labels() []string {
	if f.cfg.compare != "" {
		return []string{"flagpole", "compare"}
	}
	return []string{"flagpole"}
}

// runAll runs the workloads, -rounds times, each on flagpole and then (with
// -compare) on the compare binary; floor workloads on the floor server.
func (f *fleet) runAll(ctx context.Context, rep *report) error {
	c := f.cfg
	for round := 1; round <= c.rounds; round++ {
		for _, name := range c.workloads {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w := findWorkload(name)
			if w.fanout {
				// the floor first, as the floor workloads run before theirs
				for _, label := range append([]string{"floor"}, f.labels()...) {
					res, err := f.fanout(ctx, w, label, round)
					if err != nil {
						return err
					}
					rep.fanouts = append(rep.fanouts, res)
				}
				continue
			}
			labels := f.labels()
			if w.onFloor {
				labels = []string{"floor"}
			}
			for _, label := range labels {
				s, err := f.get(ctx, label, w.transport)
				if err != nil {
					return err
				}
				fmt.Fprintf(f.stderr, "%s on %s (round %d): %d clients, %s warm-up + %s ...\n", name, label, round, c.clients, c.warmup, c.duration)
				res, err := runWorkload(ctx, w, s, runOptions{clients: c.clients, warmup: c.warmup, duration: c.duration,
					maxPerClient: c.maxPerClient, flagCount: c.flagCount, timeout: c.timeout})
				if err != nil {
					return fmt.Errorf("%w\n%s log (tail):\n%s", err, label, s.log.String())
				}
				res.round = round
				fmt.Fprintf(f.stderr, "  %.0f req/s, p50 %s, p99 %s, server CPU per request %s, %d errors\n",
					res.reqPerSec(), us(res.p50), us(res.p99), res.perRequest(), res.errors)
				rep.results = append(rep.results, res)
				if res.serverDiedEarly {
					return fmt.Errorf("%s: the %s server died:\n%s", name, label, s.log.String())
				}
			}
		}
	}
	return nil
}

// syncPayload is the flag configuration flagd mode's SyncFlags sends for doc served
// from file.
func syncPayload(doc []byte, file string) ([]byte, error) {
	st, err := store.New([]string{file}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	if err := st.Apply(file, doc); err != nil {
		return nil, err
	}
	return st.Current().SyncPayload(store.Selector{}), nil
}

// fanout runs a fan-out workload on a fresh instance of label with a flag file of
// its own.
func (f *fleet) fanout(ctx context.Context, w workload, label string, round int) (fanoutResult, error) {
	dir, err := os.MkdirTemp(f.dir, "fanout-")
	if err != nil {
		return fanoutResult{}, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "flags.json")
	doc := f.doc
	if n := f.cfg.fanoutFlags; n > 0 && n != f.cfg.flagCount {
		if doc, err = flaggen.Generate(n); err != nil {
			return fanoutResult{}, err
		}
	}
	if label == "floor" {
		// the floor sends its file as it is: the flag configuration flagd mode sends
		// for doc (each flag with its source and its set's metadata), so that both
		// move the same bytes
		if doc, err = syncPayload(doc, file); err != nil {
			return fanoutResult{}, err
		}
	}
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		return fanoutResult{}, err
	}
	if f.certs == nil {
		if f.certs, err = newCerts(f.dir); err != nil {
			return fanoutResult{}, err
		}
	}
	o, err := f.options(ctx, label, transportPlain, file)
	if err != nil {
		return fanoutResult{}, err
	}
	if label == "floor" {
		o.args = nil // the floor's -cpuprofile is the main floor instance's
	}
	if label == "flagpole" && f.profiled {
		// a profile of its own beside the main instance's: <profile>.<workload>-<round>
		prof, err := filepath.Abs(fmt.Sprintf("%s.%s-%d", f.cfg.cpuProfile, w.name, round))
		if err != nil {
			return fanoutResult{}, err
		}
		o.args = []string{"-cpuprofile", prof}
	}
	fmt.Fprintf(f.stderr, "%s on %s (round %d): %d streams, %d changes ...\n", w.name, label, round, f.cfg.fanout, f.cfg.changes)
	s, err := startServer(ctx, o)
	if err != nil {
		return fanoutResult{}, fmt.Errorf("%s: %w", label, err)
	}
	defer func() { _ = s.stop() }()
	sleep(ctx, f.cfg.settle)
	res, err := runFanout(ctx, w, s, fanoutOptions{streams: f.cfg.fanout, changes: f.cfg.changes, settle: f.cfg.settle,
		timeout: f.cfg.timeout, flagsFile: file, doc: doc})
	if err != nil {
		return res, fmt.Errorf("%w\n%s log (tail):\n%s", err, label, s.log.String())
	}
	res.round = round
	res.flags = max(f.cfg.fanoutFlags, 0)
	if res.flags == 0 {
		res.flags = f.cfg.flagCount
	}
	fmt.Fprintf(f.stderr, "  all open after %s; RSS %s -> %s; change heard by the last stream: p50 %s, p99 %s; %d errors\n",
		ms(res.openAll), mib(res.rssBefore), mib(res.rssIdle), us(percentileOf(res.last, 0.5)), us(percentileOf(res.last, 0.99)), res.errors)
	return res, nil
}
