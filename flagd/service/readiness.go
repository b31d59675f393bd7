package service

import (
	"strings"
	"time"

	"github.com/flagpole-dev/flagpole/flagd/store"
)

// notReady is flagd mode's body of a 412 from /readyz (flagd sends none; the status
// code is flagd's): the sources that have not delivered a payload yet, and why.
type notReady struct {
	Reason  string         `json:"reason"`
	Sources []sourceReport `json:"sources,omitempty"`
}

type sourceReport struct {
	Source    string `json:"source"`
	Ready     bool   `json:"ready"`
	Failures  uint64 `json:"failures,omitempty"`
	LastError string `json:"lastError,omitempty"`
	// degraded sources: since when they fail, and when the flags they serve were read
	FailingSince *time.Time `json:"failingSince,omitempty"`
	ServingSince *time.Time `json:"servingFlagsReadAt,omitempty"`
}

// degraded is the body of a 200 from /readyz while some ready source fails: its
// last good flags are served, but they may be older than its origin (a file the
// source cannot read, a server it cannot reach).
type degraded struct {
	Status  string         `json:"status"`
	Reason  string         `json:"reason"`
	Sources []sourceReport `json:"degraded"`
}

// maxErrorLen bounds each source's error in the /readyz body.
const maxErrorLen = 512

// ReadinessReport returns management's NotReady function for flagd mode: the
// sources of status (store.Status) that are not ready, names redacted.
func ReadinessReport(status func() []store.SourceStatus) func() any {
	return func() any {
		body := notReady{Reason: "waiting for the first payload of every source"}
		for _, st := range status() {
			if st.Ready {
				continue
			}
			body.Sources = append(body.Sources, report(st))
		}
		return body
	}
}

// DegradedReport returns management's Degraded function for flagd mode: nil while
// every source's last update succeeded, otherwise the ready sources that fail
// (names redacted), with since when and how old the flags they serve are.
func DegradedReport(status func() []store.SourceStatus) func() any {
	return func() any {
		var out []sourceReport
		for _, st := range status() {
			if !st.Ready || st.LastError == "" {
				continue
			}
			r := report(st)
			failing, read := st.FailingSince, st.LastApply
			r.FailingSince, r.ServingSince = &failing, &read
			out = append(out, r)
		}
		if out == nil {
			return nil
		}
		return degraded{Status: "ready", Reason: "serving the last good flags of failing sources", Sources: out}
	}
}

// report is a source's status with its name redacted (also inside its error) and
// the error cut to maxErrorLen.
func report(st store.SourceStatus) sourceReport {
	name := store.Redact(st.Name)
	lastErr := strings.ReplaceAll(st.LastError, st.Name, name)
	if len(lastErr) > maxErrorLen {
		lastErr = lastErr[:maxErrorLen] + "…"
	}
	return sourceReport{Source: name, Ready: st.Ready, Failures: st.Failures, LastError: lastErr}
}
