//go:build !unix

package server

// FileLimit returns 0: the limit of open files is not known on this platform.
func FileLimit() uint64 { return 0 }
