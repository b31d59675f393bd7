package eval

import (
	"testing"
	"unsafe"
)

// TestVariantNamesShareLiterals: compiled with an Interner, a rule's string literal
// and the variant it names share their bytes, so that finding the variant a rule
// returned compares pointers, not strings (BenchmarkOFREPBulk); without one,
// nothing is shared and the names are copies all the same.
func TestVariantNamesShareLiterals(t *testing.T) {
	in := NewInterner()
	compile := func(in *Interner) (*Flag, string) {
		f := &Flag{Key: "f", Variants: map[string]any{"on": true, "off": false}, DefaultVariant: "off",
			Targeting: map[string]any{"if": []any{map[string]any{"var": "vip"}, "on", "off"}}}
		if _, errs := f.CompileWith("flags.f", true, in); len(errs) > 0 {
			t.Fatal(errs)
		}
		d, _ := f.Decide(map[string]any{"vip": true}, nil)
		return f, d.result.s
	}
	f, literal := compile(in)
	i := f.variantIndex(literal)
	if i < 0 || unsafe.StringData(f.variants[i].name) != unsafe.StringData(literal) {
		t.Errorf("variant %q and the rule's literal do not share their bytes", literal)
	}
	g, literal2 := compile(in)
	if unsafe.StringData(g.variants[g.variantIndex(literal2)].name) != unsafe.StringData(f.variants[i].name) {
		t.Error("two flags of one Interner do not share the name")
	}
	h, literal3 := compile(nil)
	if j := h.variantIndex(literal3); j < 0 || h.variants[j].name != "on" {
		t.Errorf("without an Interner: %q", literal3)
	}
}
