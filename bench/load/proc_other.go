//go:build !linux

package main

import "os/exec"

// setDeathSignal does nothing outside Linux (the harness needs Linux's /proc anyway).
func setDeathSignal(*exec.Cmd) {}
