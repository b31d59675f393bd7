package syncserver

import (
	"strings"
	"sync"
)

const (
	// maxLabelValues bounds the distinct selector and provider_id label values the
	// sync metrics get: both come from clients, so without a bound any client could
	// grow the metric series (and the server's memory) without limit.
	maxLabelValues = 256
	// maxLabelLen bounds one label value, in bytes.
	maxLabelLen = 128
	// otherLabel replaces values beyond the bound.
	otherLabel = "_other"
)

// labelLimiter maps client-chosen strings to metric label values: valid UTF-8 (the
// Prometheus client panics otherwise), at most maxLabelLen bytes, and at most
// maxLabelValues distinct values per label; later new values become otherLabel.
type labelLimiter struct {
	mu        sync.Mutex
	selectors map[string]struct{}
	providers map[string]struct{}
}

func newLabelLimiter() *labelLimiter {
	return &labelLimiter{selectors: map[string]struct{}{}, providers: map[string]struct{}{}}
}

func (l *labelLimiter) selector(v string) string { return l.value(l.selectors, v) }

func (l *labelLimiter) provider(v string) string { return l.value(l.providers, v) }

func (l *labelLimiter) value(seen map[string]struct{}, v string) string {
	if len(v) > maxLabelLen {
		v = v[:maxLabelLen]
	}
	v = strings.ToValidUTF8(v, "\uFFFD")
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := seen[v]; ok {
		return v
	}
	if len(seen) >= maxLabelValues {
		return otherLabel
	}
	seen[v] = struct{}{}
	return v
}
