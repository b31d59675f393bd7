package conformance

import (
	"os/exec"
	"syscall"
)

// killWithParent makes the kernel kill the daemon if the test process dies without
// running its cleanups (a panic in another goroutine, a test timeout).
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
