package harness

import "syscall"

// sysProcAttr puts a child in its own process group (so that a terminal's Ctrl-C
// reaches only the test binary, which then stops the children in order) and has the
// kernel kill it when the test binary dies, even by SIGKILL or a test timeout.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
