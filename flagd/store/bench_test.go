package store

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/bench/load/flaggen"
)

// BenchmarkApply1000 is the store's part of start-up with the load harness's 1,000
// generated flags (parse, compile, snapshot): most of the time to the first answer.
func BenchmarkApply1000(b *testing.B) {
	doc, err := flaggen.Generate(1000)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		s, err := New([]string{"src"}, zerolog.Nop())
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Apply("src", doc); err != nil {
			b.Fatal(err)
		}
	}
}
