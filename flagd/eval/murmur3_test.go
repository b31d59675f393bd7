package eval

import "testing"

// TestMurmur3Vectors checks the hash against the values flagd-compat §2.7 lists, and
// that hashing two parts equals hashing their concatenation at every split point.
func TestMurmur3Vectors(t *testing.T) {
	cases := map[string]uint32{
		"hello":                0x248bfa47,
		"fractional-flagjack":  2682799072,
		"fractional-flagqueen": 4278517551,
		"fractional-flag-shorthandjon@company.com": 618039204,
		"ejOoVL": 0,
		"bY9fO-": 1,
		"SI7p-":  2147483647,
		"6LvT0":  2147483648,
		"ceQdGm": 4294967295,
		"":       0,
	}
	for in, want := range cases {
		for split := 0; split <= len(in); split++ {
			if got := murmur3(in[:split], in[split:]); got != want {
				t.Errorf("murmur3(%q + %q) = %d, want %d", in[:split], in[split:], got, want)
			}
		}
	}
}

func TestFormatJSONNumber(t *testing.T) {
	cases := map[float64]string{1: "1", -3: "-3", 1.5: "1.5", 1e21: "1e+21", 1e-7: "1e-7", 123456789: "123456789", 0: "0"}
	for in, want := range cases {
		if got := formatJSONNumber(in); got != want {
			t.Errorf("formatJSONNumber(%v) = %q, want %q", in, got, want)
		}
	}
}
