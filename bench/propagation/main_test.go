package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMeasure runs the harness briefly against a live flagd: every change of every
// kind is served (the figures themselves are not asserted).
func TestMeasure(t *testing.T) {
	results, err := measureAll(context.Background(), 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range results {
		kinds = append(kinds, r.Kind)
		if len(r.Samples) != 3 {
			t.Errorf("%s: %d samples, want 3", r.Kind, len(r.Samples))
		}
		for _, s := range r.Samples {
			if s <= 0 {
				t.Errorf("%s: sample %s", r.Kind, s)
			}
		}
	}
	if diff := cmp.Diff([]string{"rename", "write", "configmap"}, kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	twenty := ms(20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
	tests := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{ms(5, 1, 3, 2, 4), 50, 3 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 99, 5 * time.Millisecond},
		{twenty, 50, 10 * time.Millisecond},
		{twenty, 95, 19 * time.Millisecond},
		{twenty, 99, 20 * time.Millisecond},
		{twenty, 100, 20 * time.Millisecond},
		{nil, 50, 0},
	}
	for _, tt := range tests {
		if got := (Result{Samples: tt.samples}).Percentile(tt.p); got != tt.want {
			t.Errorf("Percentile(%v, %v) = %s, want %s", tt.samples, tt.p, got, tt.want)
		}
	}
}
