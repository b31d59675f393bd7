package metrics

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// sourceCollector exposes the state of every flag source, read from the store at
// each scrape (so it needs no hooks in the sources and is never stale).
type sourceCollector struct {
	status                                           func() []store.SourceStatus
	ready, failing, flags, applied, failures, lastOK *prometheus.Desc
}

// NewSourceCollector returns a Prometheus collector over the store's source status
// (pass store.Store.Status). Per source, labelled {source} (the configured name, with
// URL credentials and query strings redacted):
//
//   - flagpole_source_ready: 1 once a payload of the source has been applied
//   - flagpole_source_failing: 1 while the source's last update failed (a missing
//     file, a rejected payload, an unreachable server...); its last good flags, if
//     any, are still served
//   - flagpole_source_flags: flags currently served from the source
//   - flagpole_source_payloads_applied_total: payloads applied
//   - flagpole_source_failures_total: payloads rejected plus source errors
//   - flagpole_source_last_success_timestamp_seconds: Unix time of the last applied
//     payload, 0 before the first
func NewSourceCollector(status func() []store.SourceStatus) prometheus.Collector {
	label := []string{"source"}
	return &sourceCollector{
		status: status,
		ready:  prometheus.NewDesc("flagpole_source_ready", "1 once a flag payload of the source has been applied.", label, nil),
		failing: prometheus.NewDesc("flagpole_source_failing",
			"1 while the last update of the source failed; its last good flags, if any, are still served.", label, nil),
		flags:    prometheus.NewDesc("flagpole_source_flags", "Flags currently served from the source.", label, nil),
		applied:  prometheus.NewDesc("flagpole_source_payloads_applied_total", "Flag payloads of the source applied.", label, nil),
		failures: prometheus.NewDesc("flagpole_source_failures_total", "Flag payloads of the source rejected, plus source errors.", label, nil),
		lastOK: prometheus.NewDesc("flagpole_source_last_success_timestamp_seconds",
			"Unix time of the last applied payload of the source (0: none yet).", label, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.failing, c.flags, c.applied, c.failures, c.lastOK} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	seen := map[string]bool{}
	for i, st := range c.status() {
		name := sourceLabel(st.Name)
		if seen[name] { // two names that differ only in redacted parts
			name += " #" + strconv.Itoa(i)
		}
		seen[name] = true
		last := 0.0
		if !st.LastApply.IsZero() {
			last = float64(st.LastApply.UnixNano()) / 1e9
		}
		for _, m := range []struct {
			desc  *prometheus.Desc
			typ   prometheus.ValueType
			value float64
		}{
			{c.ready, prometheus.GaugeValue, boolValue(st.Ready)},
			{c.failing, prometheus.GaugeValue, boolValue(st.LastError != "")},
			{c.flags, prometheus.GaugeValue, float64(st.Flags)},
			{c.applied, prometheus.CounterValue, float64(st.Applied)},
			{c.failures, prometheus.CounterValue, float64(st.Failures)},
			{c.lastOK, prometheus.GaugeValue, last},
		} {
			if metric, err := prometheus.NewConstMetric(m.desc, m.typ, m.value, name); err == nil {
				ch <- metric
			}
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sourceLabel is a source name fit for a label on the unauthenticated metrics port:
// credentials and query strings of URLs redacted, valid UTF-8 (file names need not be).
func sourceLabel(name string) string {
	return store.Redact(strings.ToValidUTF8(name, "\uFFFD"))
}
