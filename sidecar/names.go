package sidecar

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// shortHash is the first n hex digits of the SHA-256 of the parts.
func shortHash(n int, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(sum[:])[:n]
}

// boundedName returns name if it fits in limit bytes, else a prefix of it with a
// hash of key appended (so distinct keys keep distinct names), trimmed of a
// trailing '-' or '.'.
func boundedName(name string, limit int, key string) string {
	if len(name) <= limit {
		return name
	}
	prefix := strings.TrimRight(name[:limit-9], "-.")
	return prefix + "-" + shortHash(8, key)
}
