package service

import (
	"strings"

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
			name := store.Redact(st.Name)
			lastErr := strings.ReplaceAll(st.LastError, st.Name, name)
			if len(lastErr) > maxErrorLen {
				lastErr = lastErr[:maxErrorLen] + "…"
			}
			body.Sources = append(body.Sources, sourceReport{Source: name, Ready: false, Failures: st.Failures, LastError: lastErr})
		}
		return body
	}
}
