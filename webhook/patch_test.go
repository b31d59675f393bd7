package webhook

import "testing"

func TestPointer(t *testing.T) {
	if got := pointer("metadata", "annotations", "openfeature.dev/a~b", 3, "-"); got != "/metadata/annotations/openfeature.dev~1a~0b/3/-" {
		t.Errorf("pointer = %q", got)
	}
}
