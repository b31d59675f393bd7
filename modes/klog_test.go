package modes

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"k8s.io/klog/v2"
)

// TestKlogGoesThroughZerolog: client-go's lines come out as JSON log lines, info at
// debug level, errors at warn.
func TestKlogGoesThroughZerolog(t *testing.T) {
	var buf bytes.Buffer
	routeKlog(zerolog.New(&buf).Level(zerolog.DebugLevel))
	defer klog.ClearLogger()
	klog.InfoS("Warning: watch ended with error", "reflector", "r1")
	klog.ErrorS(errors.New("connection refused"), "Failed to watch", "resource", "featureflags")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{`"level":"debug"`, `"level":"warn"`} {
		if !strings.HasPrefix(lines[i], "{") || !strings.Contains(lines[i], want) || !strings.Contains(lines[i], `"component":"client-go"`) {
			t.Errorf("line %d = %s, want JSON with %s", i, lines[i], want)
		}
	}
	if !strings.Contains(lines[1], `"error":"connection refused"`) {
		t.Errorf("error not carried: %s", lines[1])
	}
}
