package harness

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// dirPrefix starts the name of every temporary directory of the suite; the process
// id follows, so that a later run can remove the directories of a run that died.
const dirPrefix = "flagpole-e2e-"

// Janitor owns everything a test run leaves behind: one root temporary directory
// and the child processes. Cleanup stops the processes (newest first) and removes the
// directory; it runs from TestMain, and from the signal handler on SIGINT or SIGTERM.
type Janitor struct {
	root string

	mu     sync.Mutex
	procs  []*Process
	logs   []ProcessLog // every tracked process's log, kept after it stops
	closed bool
}

// ProcessLog names the log file of a process the run started.
type ProcessLog struct {
	Name, Path string
}

// NewJanitor creates the run's root temporary directory, after removing the
// directories of earlier runs whose process is gone (a run killed by a test timeout
// cannot clean up after itself).
func NewJanitor() (*Janitor, error) {
	removeStaleDirs(os.TempDir())
	root, err := os.MkdirTemp("", dirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	return &Janitor{root: root}, nil
}

// Root is the run's temporary directory.
func (j *Janitor) Root() string { return j.root }

// TempDir creates a new directory under the root.
func (j *Janitor) TempDir(pattern string) (string, error) {
	return os.MkdirTemp(j.root, pattern)
}

// Track registers p to be stopped at Cleanup.
func (j *Janitor) Track(p *Process) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		p.Kill()
		return
	}
	j.procs = append(j.procs, p)
	j.logs = append(j.logs, ProcessLog{Name: p.Name, Path: p.LogPath})
}

// Logs lists the log files of every process tracked so far, stopped ones
// included; they stay on disk until Cleanup.
func (j *Janitor) Logs() []ProcessLog {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.logs)
}

// ScanLogs reads the log of every process tracked so far and returns a finding,
// "<name> <path>:<line>: ...", for every line holding one of the markers (compared
// case-insensitively). Logs that cannot be read are findings too: a scan that
// silently skips a file would prove nothing.
func (j *Janitor) ScanLogs(markers ...string) (findings []string, scanned int) {
	lower := make([]string, len(markers))
	for i, m := range markers {
		lower[i] = strings.ToLower(m)
	}
	for _, l := range j.Logs() {
		data, err := os.ReadFile(l.Path)
		if err != nil {
			findings = append(findings, fmt.Sprintf("%s %s: %v", l.Name, l.Path, err))
			continue
		}
		scanned++
		for n, line := range strings.Split(strings.ToLower(string(data)), "\n") {
			for _, m := range lower {
				if strings.Contains(line, m) {
					findings = append(findings, fmt.Sprintf("%s %s:%d: holds %q", l.Name, l.Path, n+1, m))
				}
			}
		}
	}
	return findings, scanned
}

// Cleanup stops every tracked process, newest first (flagd before the API server
// before etcd), and removes the root directory.
func (j *Janitor) Cleanup() {
	j.mu.Lock()
	procs := j.procs
	j.procs, j.closed = nil, true
	j.mu.Unlock()
	for _, p := range slices.Backward(procs) {
		_ = p.Stop(10 * time.Second)
	}
	_ = os.RemoveAll(j.root)
}

// CleanupOnSignal cleans up and exits with status 130 when the test binary receives
// SIGINT or SIGTERM (go test forwards a terminal's Ctrl-C). The returned function
// stops listening.
func (j *Janitor) CleanupOnSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "e2e: %v: stopping the control plane and removing %s\n", sig, j.root)
			j.Cleanup()
			os.Exit(130)
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(quit)
	}
}

// removeStaleDirs removes dir/flagpole-e2e-<pid>-* directories whose process no
// longer exists.
func removeStaleDirs(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}
