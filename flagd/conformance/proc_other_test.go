//go:build !linux

package conformance

import "os/exec"

// killWithParent is a no-op where the kernel cannot tie the daemon's life to the test
// process; the tests' cleanups stop it.
func killWithParent(*exec.Cmd) {}
