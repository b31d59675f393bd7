package harness

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScanLogsFindsMarkers: a tracked process's log line holding a marker
// (in any case) is reported with its file and line, also after the process has
// stopped; a clean log is not.
func TestScanLogsFindsMarkers(t *testing.T) {
	j, err := NewJanitor()
	if err != nil {
		t.Fatal(err)
	}
	defer j.Cleanup()
	for i, script := range []string{"echo clean; echo 'user PII-Marker-x@example.com'", "echo nothing here"} {
		p, err := StartProcess("sh", "/bin/sh", []string{"-c", script}, nil, filepath.Join(j.Root(), "p"+string(rune('0'+i))+".log"))
		if err != nil {
			t.Fatal(err)
		}
		j.Track(p)
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("sh did not exit")
		}
	}
	findings, scanned := j.ScanLogs("pii-marker-x")
	if scanned != 2 || len(findings) != 1 || !strings.Contains(findings[0], "p0.log:2: holds") {
		t.Errorf("scanned %d, findings %q", scanned, findings)
	}
}
