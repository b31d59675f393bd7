//go:build unix

package server

import "syscall"

// FileLimit returns the process's soft limit of open file descriptors
// (RLIMIT_NOFILE; the Go runtime raises it to the hard limit at start), or 0 when
// it cannot be read.
func FileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return uint64(r.Cur) //nolint:unconvert // int64 on some platforms
}
