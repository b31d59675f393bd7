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
	closed bool
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
