package syncserver

import (
	"strings"
	"sync"
)

const (
	// maxSeries bounds the distinct (selector, provider_id) label pairs the sync
	// metrics get. Both come from clients, so without a bound any client could grow
	// the metric series, the server's memory and every scrape without limit; a
	// bound per label is not enough (256 selectors × 256 provider ids are 65,536
	// pairs, each a gauge and a histogram per end reason: 900k series, a 124 MB
	// scrape). Real deployments have a few selectors and providers.
	maxSeries = 256
	// maxLabelLen bounds one label value, in bytes.
	maxLabelLen = 128
	// otherLabel replaces both values of a pair beyond the bound.
	otherLabel = "_other"
)

// labelLimiter maps client-chosen strings to metric label values: valid UTF-8 (the
// Prometheus client panics otherwise), at most maxLabelLen bytes, and at most
// maxSeries distinct (selector, provider_id) pairs; later new pairs become
// (otherLabel, otherLabel), while pairs seen before keep their own series.
type labelLimiter struct {
	mu    sync.Mutex
	pairs map[[2]string]struct{}
}

func newLabelLimiter() *labelLimiter {
	return &labelLimiter{pairs: map[[2]string]struct{}{}}
}

// labels returns the selector and provider_id label values of a stream.
func (l *labelLimiter) labels(selector, provider string) (string, string) {
	pair := [2]string{clean(selector), clean(provider)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.pairs[pair]; ok {
		return pair[0], pair[1]
	}
	if len(l.pairs) >= maxSeries {
		return otherLabel, otherLabel
	}
	l.pairs[pair] = struct{}{}
	return pair[0], pair[1]
}

// clean cuts a value to maxLabelLen bytes and makes it valid UTF-8.
func clean(v string) string {
	if len(v) > maxLabelLen {
		v = v[:maxLabelLen]
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}
