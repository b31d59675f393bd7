package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is a running server subprocess on loopback ports: `flagpole flagd
// start`, a flagd-compatible binary (-compare), or the floor server.
type server struct {
	label                   string // "flagpole", "compare", "floor"
	cmd                     *exec.Cmd
	pid                     int
	eval, mgmt, sync, ofrep string // host:port; eval is "" when the evaluation listener is TLS or a socket
	evalTLS                 string // host:port of a TLS evaluation listener
	evalUnix                string // unix socket of the evaluation listener
	clientTLS               *tls.Config
	started                 time.Time
	exited                  chan struct{}
	exitErr                 error
	log                     *tailBuffer
	firstAnswer             time.Duration
}

// buildPackage builds a main package of the module into dir (stripped, like make
// build) and returns the binary.
func buildPackage(ctx context.Context, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// freePorts returns n distinct free loopback ports. They are released before the server
// binds them; startServer retries if another process takes one in between.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// serverOptions configure startServer.
type serverOptions struct {
	label     string
	bin       string
	args      []string // before "flagd start" (e.g. a test helper's own flags); usually empty
	env       []string // extra environment
	flagsFile string
	// flagdCLI runs bin with flagd's command line (`start ...` without
	// --bind-address: flagd listens on every interface) instead of flagpole's.
	flagdCLI bool
	// floor runs bin as the floor server (bench/load/floorserve) on a plaintext
	// port, a TLS port and a unix socket.
	floor bool
	// tls serves the evaluation listener (and sync) over TLS; socket serves it on a
	// unix socket instead of TCP.
	tls    *certs
	socket string
	// probePath and probeBody are the Connect JSON request over HTTP/1.1 whose answer
	// proves readiness (the first-answer figure); without them, readiness is /readyz
	// answering 200 (the floor server: its answer to a POST).
	probePath string
	probeBody string
	probeOK   func(status int, body []byte) bool
	timeout   time.Duration
}

// startServer starts the server and waits for its first correct answer, measured from
// just before the process is started.
func startServer(ctx context.Context, o serverOptions) (*server, error) {
	var lastErr error
	for range 3 {
		s, err := startOnce(ctx, o)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !errors.Is(err, errExitedEarly) {
			break
		}
	}
	return nil, lastErr
}

// errExitedEarly reports a server that ended before answering (e.g. a port taken).
var errExitedEarly = errors.New("server exited before answering")

// startOnce is one attempt of startServer.
func startOnce(ctx context.Context, o serverOptions) (*server, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	s := &server{label: o.label, exited: make(chan struct{}), log: &tailBuffer{max: 64 << 10}}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	s.eval, s.mgmt, s.sync, s.ofrep = addr(ports[0]), addr(ports[1]), addr(ports[2]), addr(ports[3])
	if o.tls != nil {
		s.evalTLS, s.eval, s.clientTLS = s.eval, "", o.tls.client
	}
	if o.socket != "" {
		s.evalUnix, s.eval = o.socket, ""
	}
	args := append([]string{}, o.args...)
	switch {
	case o.floor:
		s.evalTLS, s.evalUnix, s.clientTLS = addr(ports[1]), o.socket, o.tls.client
		s.eval, s.mgmt, s.sync, s.ofrep = addr(ports[0]), "", addr(ports[2]), ""
		args = append(args, "-addr", s.eval, "-tls-addr", s.evalTLS, "-cert", o.tls.certFile, "-key", o.tls.keyFile, "-socket", o.socket,
			"-sync-addr", s.sync, "-flags-file", o.flagsFile)
	case o.flagdCLI:
		args = append(args, "start")
	default:
		args = append(args, "flagd", "start", "--bind-address", "127.0.0.1")
	}
	if !o.floor {
		args = append(args, "--uri", "file:"+o.flagsFile,
			"--port", strconv.Itoa(ports[0]),
			"--management-port", strconv.Itoa(ports[1]),
			"--sync-port", strconv.Itoa(ports[2]),
			"--ofrep-port", strconv.Itoa(ports[3]))
		if o.tls != nil {
			args = append(args, "--server-cert-path", o.tls.certFile, "--server-key-path", o.tls.keyFile)
		}
		if o.socket != "" {
			args = append(args, "--socket-path", o.socket)
		}
	}
	s.cmd = exec.Command(o.bin, args...)
	s.cmd.Env = append(os.Environ(), o.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	setDeathSignal(s.cmd)

	var probe *rawConn
	var probeReq []byte
	switch {
	case o.floor:
		probe = newRawConn(s.eval, 200*time.Millisecond)
		probeReq = rawRequest(s.eval, "/", "{}")
		o.probeOK = func(status int, _ []byte) bool { return status == 200 }
	case o.probePath != "":
		probe = newRawConn(s.eval, 200*time.Millisecond)
		probeReq = rawRequest(s.eval, o.probePath, o.probeBody)
	default:
		probe = newRawConn(s.mgmt, 200*time.Millisecond)
		probeReq = []byte("GET /readyz HTTP/1.1\r\nHost: " + s.mgmt + "\r\n\r\n")
		o.probeOK = func(status int, _ []byte) bool { return status == 200 }
	}
	defer probe.close()
	s.started = time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.pid = s.cmd.Process.Pid
	go func() {
		s.exitErr = s.cmd.Wait()
		close(s.exited)
	}()
	deadline := s.started.Add(o.timeout)
	for {
		status, body, _, err := probe.do(probeReq)
		if err == nil && o.probeOK(status, body) {
			s.firstAnswer = time.Since(s.started)
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("%w (%v): %s", errExitedEarly, s.exitErr, s.log.String()) //nolint:errorlint // %v: the exit error is nil after a clean exit, which %w would print as %!w(<nil>)
		case <-ctx.Done():
			_ = s.stop() // cancelled: the cancellation is the news
			return nil, ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			_ = s.stop() // the server log below says more than how it stopped
			//nolint:errorlint // %v: the last probe's error is nil when it got a wrong answer, which %w would print as %!w(<nil>)
			return nil, fmt.Errorf("no correct answer within %v (last: status %d, error %v, body %.200q); server log:\n%s",
				o.timeout, status, err, body, s.log.String())
		}
		time.Sleep(time.Millisecond)
	}
}

// stop ends the server with SIGTERM (SIGKILL after 10 s) and waits for it.
func (s *server) stop() error {
	select {
	case <-s.exited:
		return s.exitErr
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return errors.New("server did not stop within 10 s of SIGTERM; killed")
	}
	var exit *exec.ExitError
	if errors.As(s.exitErr, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
		return nil
	}
	return s.exitErr
}

// alive reports whether the server process is still running.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// rssBytes reads the server's resident set size (VmRSS) from /proc.
func rssBytes(pid int) (int64, error) {
	return procStatus(pid, "VmRSS")
}

// procStatus reads a kB field of /proc/<pid>/status (VmRSS, RssAnon, RssFile) in bytes.
func procStatus(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", field, rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", field)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times (100 on Linux).
const clockTicks = 100

// cpuTime reads the server's user+system CPU time from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces: fields are counted after ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	fields := strings.Fields(string(data[i+1:]))
	// After ')': state is field 3, utime field 14, stime field 15.
	if len(fields) < 13 {
		return 0, errors.New("malformed /proc/<pid>/stat")
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// systemBusy reads the machine's busy CPU time (all CPUs: user, nice, system, irq,
// softirq, steal) from /proc/stat, to tell how much CPU other processes took during a
// measurement.
func systemBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// selfCPUTime is the harness process's own user+system CPU time.
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler records the maximum RSS of a process while it runs.
type rssSampler struct {
	stopCh chan struct{}
	done   chan struct{}
	max    int64
}

// sampleRSS samples pid's RSS every interval until stop is called.
func sampleRSS(pid int, interval time.Duration) *rssSampler {
	r := &rssSampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if v, err := rssBytes(pid); err == nil && v > r.max {
				r.max = v
			}
			select {
			case <-r.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

// stop ends sampling and returns the maximum RSS seen.
func (r *rssSampler) stop() int64 {
	close(r.stopCh)
	<-r.done
	return r.max
}

// tailBuffer keeps the last max bytes written to it (the server's log), safe for
// concurrent use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// Write appends p, dropping the oldest bytes beyond max.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept bytes.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Len returns the number of kept bytes.
func (t *tailBuffer) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.buf)
}

// serverRuntime reads the server's GOMAXPROCS and Go version from the management
// listener's /metrics (go_sched_gomaxprocs_threads, go_info); "?" when unknown.
func serverRuntime(mgmt string) (procs, goVersion string) {
	procs, goVersion = "?", "?"
	c := newRawConn(mgmt, 2*time.Second)
	defer c.close()
	status, body, _, err := c.do([]byte("GET /metrics HTTP/1.1\r\nHost: " + mgmt + "\r\n\r\n"))
	if err != nil || status != 200 {
		return procs, goVersion
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
			procs = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, `go_info{version="`); ok {
			goVersion, _, _ = strings.Cut(v, `"`)
		}
	}
	return procs, goVersion
}

// metricInt reads one unlabelled Prometheus gauge from the management listener's
// /metrics (0 when absent).
func metricInt(mgmt, name string) int64 {
	c := newRawConn(mgmt, 2*time.Second)
	defer c.close()
	status, body, _, err := c.do([]byte("GET /metrics HTTP/1.1\r\nHost: " + mgmt + "\r\n\r\n"))
	if err != nil || status != 200 {
		return 0
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return 0
}
