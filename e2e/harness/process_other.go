//go:build unix && !linux

package harness

import "syscall"

// sysProcAttr puts a child in its own process group. Without Linux's parent-death
// signal, a test binary killed by SIGKILL leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
