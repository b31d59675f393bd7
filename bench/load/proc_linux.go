package main

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill the server if the harness dies without stopping
// it (e.g. SIGKILL).
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
