package server

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBurstEnded: memory is reclaimed once a burst of goroutines (streams,
// connections) has ended, by at least the minimum and to less than half of its
// peak, once per burst; the normal ups and downs of a busy server never trigger it.
func TestBurstEnded(t *testing.T) {
	b := burst{minDrop: 1000}
	samples := []int{20, 500, 1200, 900, 300, 20, 4021, 3000, 2100, 1900, 30, 25, 2500, 2000, 1400, 1200, 1300}
	var got []int
	for _, n := range samples {
		if b.ended(n) {
			got = append(got, n)
		}
	}
	// 1200→900, →300: not 1000 down; →20: 1180 down and under half; 4021→3000, →2100:
	// not under half; →1900: 2121 down; then 1900→30 from the new peak; 30→25 and
	// 2500→2000, →1400: not enough; →1200: 1300 down and under half; →1300: no.
	if diff := cmp.Diff([]int{20, 1900, 30, 1200}, got); diff != "" {
		t.Errorf("reclaimed at (-want +got):\n%s", diff)
	}
}
