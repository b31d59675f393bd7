package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// daemonOptions say how an attack wants its daemon.
type daemonOptions struct {
	nofile    int      // RLIMIT_NOFILE of the daemon (0: inherited)
	flagsFile []byte   // content of the file source (default: exampleFlags)
	fileName  string   // its name in the temporary directory (default flags.json)
	uris      []string // more sources after the file, from the attack's setup
	setup     func(d *daemon) error
	noReady   bool // wait for /healthz only (the flags are bad on purpose)
}

// daemon is a running `flagpole flagd start` on loopback ports.
type daemon struct {
	cmd                     *exec.Cmd
	pid                     int
	dir                     string // private temporary directory (flag file)
	flagsPath               string
	eval, mgmt, sync, ofrep string
	log                     *logSink
	exited                  chan struct{}
	exitErr                 error
	extra                   []func() // cleanups of the setup
	extraURIs               []string // sources the setup adds
}

// exampleFlags is the daemon's default flag file: new-checkout is false without an
// @example.com email.
const exampleFlags = `{"flags":{
  "new-checkout":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
    "targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"on","off"]}},
  "static-bool":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`

// startDaemon starts the daemon and waits until /readyz answers 200 (or /healthz,
// with noReady).
func startDaemon(ctx context.Context, cfg config, o daemonOptions) (*daemon, error) {
	dir, err := os.MkdirTemp("", "flagpole-hostile-")
	if err != nil {
		return nil, err
	}
	d := &daemon{dir: dir, exited: make(chan struct{}), log: &logSink{}}
	ok := false
	defer func() {
		if !ok {
			_ = d.stop()
		}
	}()
	name := o.fileName
	if name == "" {
		name = "flags.json"
	}
	content := o.flagsFile
	if content == nil {
		content = []byte(exampleFlags)
	}
	d.flagsPath = filepath.Join(dir, name)
	if err := os.WriteFile(d.flagsPath, content, 0o600); err != nil {
		return nil, err
	}
	if o.setup != nil {
		if err := o.setup(d); err != nil {
			return nil, err
		}
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	d.eval, d.mgmt, d.sync, d.ofrep = addr(ports[0]), addr(ports[1]), addr(ports[2]), addr(ports[3])
	args := append(append([]string{}, cfg.binArgs...), "flagd", "start", "--uri", "file:"+d.flagsPath)
	for _, u := range append(o.uris, d.extraURIs...) {
		args = append(args, "--uri", u)
	}
	args = append(args, "--bind-address", "127.0.0.1",
		"--port", strconv.Itoa(ports[0]), "--management-port", strconv.Itoa(ports[1]),
		"--sync-port", strconv.Itoa(ports[2]), "--ofrep-port", strconv.Itoa(ports[3]))
	args = append(args, cfg.srvArgs...)
	if o.nofile > 0 {
		// sh sets both limits (Go raises only the soft one to the hard one) and execs
		// the daemon in its place, so the pid stays the daemon's.
		args = append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, o.nofile), cfg.bin}, args...)
		d.cmd = exec.Command("/bin/sh", args...)
	} else {
		d.cmd = exec.Command(cfg.bin, args...)
	}
	d.cmd.Env = append(os.Environ(), cfg.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	d.pid = d.cmd.Process.Pid
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.exited)
	}()
	path := "/readyz"
	if o.noReady {
		path = "/healthz"
	}
	deadline := time.Now().Add(cfg.startTO)
	for {
		status, _, err := httpGet(d.mgmt, path, time.Second)
		if err == nil && status == http.StatusOK {
			break
		}
		if !d.alive() {
			return nil, fmt.Errorf("daemon exited before answering (%v): %s", d.exitErr, d.log.tail(4096)) //nolint:errorlint // %v: the exit error is nil after a clean exit, which %w would print as %!w(<nil>)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("daemon not answering %s within %v: %s", path, cfg.startTO, d.log.tail(4096))
		}
		time.Sleep(20 * time.Millisecond)
	}
	ok = true
	return d, nil
}

// stop ends the daemon (SIGTERM, SIGKILL after 10 s) and removes its directory.
func (d *daemon) stop() error {
	for _, f := range d.extra {
		f()
	}
	defer os.RemoveAll(d.dir)
	if d.cmd == nil || d.cmd.Process == nil {
		return nil
	}
	select {
	case <-d.exited:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return errors.New("did not stop within 10 s of SIGTERM; killed")
	}
	return nil
}

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// metric returns the value of an unlabelled metric from /metrics, or "?".
func (d *daemon) metric(name string) string {
	v, err := scrapeValue(d.mgmt, name, 10*time.Second)
	if err != nil {
		return "?"
	}
	return v
}

// replaceFlags writes content next to the flag file and renames it over it.
func (d *daemon) replaceFlags(content []byte) error {
	tmp := d.flagsPath + ".tmp"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, d.flagsPath)
}

// freePorts returns n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, 0, n)
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

// logSink keeps the daemon's log (up to 64 MiB) and counts its lines.
type logSink struct {
	mu    sync.Mutex
	buf   []byte
	total int64
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total += int64(len(p))
	if len(l.buf)+len(p) <= 64<<20 {
		l.buf = append(l.buf, p...)
	}
	return len(p), nil
}

// mark returns the current length, to count lines written after it.
func (l *logSink) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buf)
}

// since returns the log written after mark.
func (l *logSink) since(mark int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf[mark:])
}

func (l *logSink) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > n {
		return string(l.buf[len(l.buf)-n:])
	}
	return string(l.buf)
}

// countLines counts the lines of s containing every one of subs.
func countLines(s string, subs ...string) int {
	n := 0
	for line := range strings.SplitSeq(s, "\n") {
		all := line != ""
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all {
			n++
		}
	}
	return n
}

// rss reads the daemon's VmRSS in bytes.
func rss(pid int) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// rssSampler records the maximum RSS while it runs.
type rssSampler struct {
	stopCh, done chan struct{}
	max          int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if v, err := rss(pid); err == nil && v > s.max {
				s.max = v
			}
			select {
			case <-s.stopCh:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() int64 {
	close(s.stopCh)
	<-s.done
	return s.max
}

// httpGet does one GET on a new connection and returns status and body.
func httpGet(addr, path string, timeout time.Duration) (int, []byte, error) {
	return httpDo(addr, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n", timeout)
}

// httpDo sends a raw request on a new connection and reads one response.
func httpDo(addr, req string, timeout time.Duration) (int, []byte, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// postRequest renders a POST with a body.
func postRequest(addr, path, contentType string, body []byte, extra ...string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n", path, addr, contentType, len(body))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// scrapeValue reads /metrics and returns the value of the first line "name value".
func scrapeValue(mgmt, name string, timeout time.Duration) (string, error) {
	var value string
	err := scrape(mgmt, timeout, func(line string) bool {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			value = strings.TrimSpace(v)
			return false
		}
		return true
	})
	if err == nil && value == "" {
		err = fmt.Errorf("no %s in /metrics", name)
	}
	return value, err
}

// scrape streams /metrics line by line to fn until fn returns false.
func scrape(mgmt string, timeout time.Duration, fn func(line string) bool) error {
	conn, err := net.DialTimeout("tcp", mgmt, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: "+mgmt+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !fn(sc.Text()) {
			return nil
		}
	}
	return sc.Err()
}

// probe sends a normal ResolveBoolean every 20 ms on its own keep-alive connection
// and records the latencies.
type probe struct {
	mu        sync.Mutex
	lat       []time.Duration
	n, errs   int
	stopCh    chan struct{}
	done      chan struct{}
	addr, req string
}

func startProbe(addr string) *probe {
	p := &probe{stopCh: make(chan struct{}), done: make(chan struct{}), addr: addr,
		req: string(postRequest(addr, "/flagd.evaluation.v1.Service/ResolveBoolean", "application/json",
			[]byte(`{"flagKey":"static-bool","context":{"targetingKey":"user-1"}}`)))}
	go p.loop()
	return p
}

func (p *probe) loop() {
	defer close(p.done)
	var conn net.Conn
	var br *bufio.Reader
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		select {
		case <-p.stopCh:
			return
		case <-t.C:
		}
		start := time.Now()
		err := func() error {
			if conn == nil {
				c, err := net.DialTimeout("tcp", p.addr, 2*time.Second)
				if err != nil {
					return err
				}
				conn, br = c, bufio.NewReader(c)
			}
			_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.WriteString(conn, p.req); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"value":true`)) {
				return fmt.Errorf("status %d: %.100s", resp.StatusCode, body)
			}
			return nil
		}()
		p.mu.Lock()
		p.n++
		if err != nil {
			p.errs++
			if conn != nil {
				conn.Close()
				conn = nil
			}
		} else {
			p.lat = append(p.lat, time.Since(start))
		}
		p.mu.Unlock()
	}
}

// mark returns the p50, the number of requests and of failures since the last mark.
func (p *probe) mark() (time.Duration, int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	lat, n, errs := p.lat, p.n, p.errs
	p.lat, p.n, p.errs = nil, 0, 0
	if len(lat) == 0 {
		return 0, n, errs
	}
	slices.Sort(lat)
	return lat[len(lat)/2], n, errs
}

func (p *probe) stop() {
	close(p.stopCh)
	<-p.done
}
