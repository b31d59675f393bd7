package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process in its own process group whose output goes to a log
// file. It is killed with its group when Stop is called, when the Janitor it was
// registered with cleans up, and (on Linux) by the kernel when the test binary dies.
type Process struct {
	// Name names the process in errors.
	Name string
	// LogPath is the file holding the process's stdout and stderr.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts path with args, env (nil: the test's environment) and stdout
// and stderr appended to logPath.
func StartProcess(name, path string, args, env []string, logPath string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (and process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Err is the process's exit error, once Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the process group and waits up to grace for the process to
// exit, then kills the group. It returns nil when the process exited after the
// signal (whatever its status), and is safe to call more than once.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = syscall.Kill(-p.Pid(), syscall.SIGTERM)
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.Name, grace)
		}
		// Anything the process started in its group goes too.
		_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	})
	return p.stopErr
}

// Kill kills the process group at once and waits for the process to exit.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Pid(), syscall.SIGKILL)
	<-p.done
}

// Tail returns the last n lines of the process's log.
func (p *Process) Tail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogPath, err)
	}
	return tailLines(data, n)
}

// tailLines returns the last n lines of data.
func tailLines(data []byte, n int) string {
	data = bytes.TrimRight(data, "\n")
	start := len(data)
	for i := 0; i < n && start > 0; i++ {
		start = bytes.LastIndexByte(data[:start], '\n')
		if start < 0 {
			start = 0
			break
		}
	}
	return strings.TrimPrefix(string(data[start:]), "\n")
}

// exitedError describes a process that exited when it should be running.
func (p *Process) exitedError() error {
	err := p.Err()
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("%s exited: %w; last log lines:\n%s", p.Name, err, p.Tail(40))
}
