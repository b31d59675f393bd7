package metrics_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

const sourceHelp = `# HELP flagpole_source_failing 1 while the last update of the source failed; its last good flags, if any, are still served.
# TYPE flagpole_source_failing gauge
# HELP flagpole_source_failures_total Flag payloads of the source rejected, plus source errors.
# TYPE flagpole_source_failures_total counter
# HELP flagpole_source_flags Flags currently served from the source.
# TYPE flagpole_source_flags gauge
# HELP flagpole_source_last_success_timestamp_seconds Unix time of the last applied payload of the source (0: none yet).
# TYPE flagpole_source_last_success_timestamp_seconds gauge
# HELP flagpole_source_payloads_applied_total Flag payloads of the source applied.
# TYPE flagpole_source_payloads_applied_total counter
# HELP flagpole_source_ready 1 once a flag payload of the source has been applied.
# TYPE flagpole_source_ready gauge
`

func TestSourceCollector(t *testing.T) {
	tests := []struct {
		name   string
		status []store.SourceStatus
		want   string
	}{
		{
			name: "ready, failing, never loaded",
			status: []store.SourceStatus{
				{Name: "/etc/flagd/flags.json", Ready: true, Flags: 3, Applied: 2, LastApply: time.Unix(1767225600, 500_000_000)},
				{Name: "shop/flags", Priority: 1, Ready: true, Flags: 1, Applied: 1, Failures: 4, LastError: "deleted", LastApply: time.Unix(1767225000, 0)},
				{Name: "grpc.example:8015", Priority: 2, Failures: 1, LastError: "connection refused"},
			},
			want: `
flagpole_source_failing{source="/etc/flagd/flags.json"} 0
flagpole_source_failing{source="grpc.example:8015"} 1
flagpole_source_failing{source="shop/flags"} 1
flagpole_source_failures_total{source="/etc/flagd/flags.json"} 0
flagpole_source_failures_total{source="grpc.example:8015"} 1
flagpole_source_failures_total{source="shop/flags"} 4
flagpole_source_flags{source="/etc/flagd/flags.json"} 3
flagpole_source_flags{source="grpc.example:8015"} 0
flagpole_source_flags{source="shop/flags"} 1
flagpole_source_last_success_timestamp_seconds{source="/etc/flagd/flags.json"} 1.7672256005e+09
flagpole_source_last_success_timestamp_seconds{source="grpc.example:8015"} 0
flagpole_source_last_success_timestamp_seconds{source="shop/flags"} 1.767225e+09
flagpole_source_payloads_applied_total{source="/etc/flagd/flags.json"} 2
flagpole_source_payloads_applied_total{source="grpc.example:8015"} 0
flagpole_source_payloads_applied_total{source="shop/flags"} 1
flagpole_source_ready{source="/etc/flagd/flags.json"} 1
flagpole_source_ready{source="grpc.example:8015"} 0
flagpole_source_ready{source="shop/flags"} 1
`,
		},
		{
			name: "credentials redacted, collisions and bad UTF-8 kept apart",
			status: []store.SourceStatus{
				{Name: "https://user:secret@flags.example/flags.json?token=abc"},
				{Name: "https://flags.example/flags.json?token=def", Priority: 1},
				{Name: "https://flags.example/flags.json?token=ghi", Priority: 2},
				{Name: "/etc/\xff.json", Priority: 3},
			},
			want: `
flagpole_source_ready{source="/etc/�.json"} 0
flagpole_source_ready{source="https://flags.example/flags.json?redacted"} 0
flagpole_source_ready{source="https://flags.example/flags.json?redacted #2"} 0
flagpole_source_ready{source="https://redacted@flags.example/flags.json?redacted"} 0
`,
		},
		{name: "no sources", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := metrics.NewSourceCollector(func() []store.SourceStatus { return tt.status })
			want := sourceHelp + tt.want
			var names []string
			if strings.Contains(tt.name, "redacted") {
				names = []string{"flagpole_source_ready"}
				want = "# HELP flagpole_source_ready 1 once a flag payload of the source has been applied.\n# TYPE flagpole_source_ready gauge\n" + tt.want
			}
			if tt.want == "" {
				want = ""
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
				t.Error(err)
			}
			problems, err := testutil.CollectAndLint(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("lint: %s: %s", p.Metric, p.Text)
			}
		})
	}
}

// TestSourceCollectorOverStore reads a live store: an applied payload, then a source
// error that keeps the flags served but marks the source failing.
func TestSourceCollectorOverStore(t *testing.T) {
	st, err := store.New([]string{"a.json"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewSourceCollector(st.Status))
	check := func(want string) {
		t.Helper()
		header := "# HELP flagpole_source_failing 1 while the last update of the source failed; its last good flags, if any, are still served.\n" +
			"# TYPE flagpole_source_failing gauge\n# HELP flagpole_source_flags Flags currently served from the source.\n# TYPE flagpole_source_flags gauge\n"
		if err := testutil.GatherAndCompare(reg, strings.NewReader(header+want), "flagpole_source_failing", "flagpole_source_flags"); err != nil {
			t.Error(err)
		}
	}
	check("flagpole_source_failing{source=\"a.json\"} 0\nflagpole_source_flags{source=\"a.json\"} 0\n")
	if err := st.Apply("a.json", []byte(`{"flags":{"f":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}`)); err != nil {
		t.Fatal(err)
	}
	check("flagpole_source_failing{source=\"a.json\"} 0\nflagpole_source_flags{source=\"a.json\"} 1\n")
	st.Fail("a.json", errors.New("the file does not exist"))
	check("flagpole_source_failing{source=\"a.json\"} 1\nflagpole_source_flags{source=\"a.json\"} 1\n")
}
