package proxy

import (
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Ref
		wantErr string
	}{
		{in: "core.openfeature.dev/team-a/checkout", want: Ref{Namespace: "team-a", Name: "checkout"}},
		{in: "core.openfeature.dev/a/flags.v2", want: Ref{Namespace: "a", Name: "flags.v2"}},
		{in: "", wantErr: "unrecognized URI:  (flagd-proxy serves FeatureFlags: the selector is core.openfeature.dev/<namespace>/<name>)"},
		{in: "file:/etc/passwd", wantErr: "unrecognized URI: file:/etc/passwd ("},
		{in: "flagSetId=x", wantErr: "unrecognized URI: flagSetId=x"},
		{in: "core.openfeature.dev/checkout", wantErr: "unable to parse uri checkout: invalid resource uri format, expected <namespace>/<crdName> but got: checkout"},
		{in: "core.openfeature.dev/a/b/c", wantErr: "unable to parse uri a/b/c: invalid resource uri format"},
		{in: "core.openfeature.dev//b", wantErr: "unable to parse uri /b: invalid resource uri format"},
		{in: "core.openfeature.dev/a/", wantErr: "invalid resource uri format"},
		{in: "core.openfeature.dev/Team/b", wantErr: "unable to parse uri Team/b: namespace Team: a lowercase RFC 1123 label"},
		{in: "core.openfeature.dev/a/B_C", wantErr: "unable to parse uri a/B_C: FeatureFlag name B_C: a lowercase RFC 1123 subdomain"},
		{in: "core.openfeature.dev/a/b\n", wantErr: `unable to parse uri "a/b\n": FeatureFlag name "b\n"`},
		{in: "x" + strings.Repeat("y", 10000), wantErr: "unrecognized URI: x" + strings.Repeat("y", maxQuoted-1) + "... ("},
	} {
		got, err := ParseSelector(tc.in)
		if tc.wantErr == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseSelector(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if got.Selector() != tc.in {
				t.Errorf("%v.Selector() = %q", got, got.Selector())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseSelector(%.40q) error = %v, want it to contain %q", tc.in, err, tc.wantErr)
		}
	}
}
