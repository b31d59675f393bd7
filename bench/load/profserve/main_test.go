package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRunWritesProfiles checks that profserve passes its command line to flagpole
// (which rejects a start without sources) and still writes both profiles.
func TestRunWritesProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, mem := filepath.Join(dir, "cpu.out"), filepath.Join(dir, "heap.out")
	type outcome struct {
		Code             int
		CPUData, MemData bool
	}
	code := run([]string{"-cpuprofile", cpu, "-memprofile", mem, "flagd", "start", "--port", "0"})
	got := outcome{Code: code}
	for path, ok := range map[string]*bool{cpu: &got.CPUData, mem: &got.MemData} {
		if st, err := os.Stat(path); err == nil && st.Size() > 0 {
			*ok = true
		}
	}
	if diff := cmp.Diff(outcome{1, true, true}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if code := run([]string{"flagd", "start", "--no-such-flag"}); code != 2 {
		t.Errorf("bad flag: exit code %d, want 2", code)
	}
}
