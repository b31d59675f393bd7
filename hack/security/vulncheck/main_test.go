package main

import (
	"bytes"
	"strings"
	"testing"
)

// stream is a govulncheck -format json stream in the shape govulncheck v1.10 writes:
// a called standard-library finding (several frames, the vulnerable symbol first), a
// called module finding, and a module that is only required.
const stream = `{"config":{"protocol_version":"v1.0.0","scanner_name":"govulncheck","scanner_version":"v1.10.0","db":"file:///db","db_last_modified":"2026-11-05T23:49:57Z","go_version":"go1.26.8","scan_level":"symbol","scan_mode":"source"}}
{"progress":{"message":"Scanning your code..."}}
{"osv":{"id":"GO-2026-0001","summary":"Crash in net/http","affected":[]}}
{"osv":{"id":"GO-2026-0002","summary":"Race in x/net http2","affected":[]}}
{"osv":{"id":"GO-2026-0003","summary":"Only required","affected":[]}}
{"finding":{"osv":"GO-2026-0003","fixed_version":"v1.2.0","trace":[{"module":"example.com/m","version":"v1.0.0"}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"ServeHTTP","receiver":"*ServeMux"},{"module":"github.com/flagpole-dev/flagpole","package":"github.com/flagpole-dev/flagpole/server","function":"Serve","position":{"filename":"server/server.go","line":10,"column":2}}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Get"},{"module":"github.com/flagpole-dev/flagpole","package":"github.com/flagpole-dev/flagpole/sync/http","function":"fetch","position":{"filename":"sync/http/http.go","line":5,"column":1}}]}}
{"finding":{"osv":"GO-2026-0002","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"WriteHeaders","receiver":"*Framer"}]}}
`

func TestReadGroupsFindings(t *testing.T) {
	r, err := Read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if r.Scanner != "v1.10.0" || r.GoVersion != "go1.26.8" || r.DB != "file:///db" {
		t.Errorf("config = %+v", r)
	}
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.ID+" "+f.Module+"@"+f.Found+" fixed "+f.Fixed+" called="+map[bool]string{true: "yes", false: "no"}[f.Called]+" "+f.Summary)
	}
	want := []string{
		"GO-2026-0001 stdlib@v1.26.8 fixed v1.26.9 called=yes Crash in net/http",
		"GO-2026-0002 golang.org/x/net@v0.59.0 fixed v0.60.0 called=yes Race in x/net http2",
		"GO-2026-0003 example.com/m@v1.0.0 fixed v1.2.0 called=no Only required",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The first trace of a finding is kept, entry point first.
	if tr := strings.Join(r.Findings[0].Trace, " | "); tr != "server/server.go:10:2: server.Serve | http.ServeMux.ServeHTTP" {
		t.Errorf("trace = %q", tr)
	}
}

func TestReportFailsOnUnacceptedCalledFinding(t *testing.T) {
	r, err := Read(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if r.Report(&out, "main", nil) {
		t.Errorf("passed with two unaccepted reachable findings:\n%s", out.String())
	}
	for _, s := range []string{"GO-2026-0001 stdlib@v1.26.8, fixed in v1.26.9: Crash in net/http", "FAIL", "2 reachable vulnerabilities not accepted, 0 accepted; 1 more in imported packages or required modules whose vulnerable code is not reached: GO-2026-0003 (example.com/m@v1.0.0)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}

	// Accepting the stdlib finding does not accept the same ID in another module:
	// the x/net finding still fails.
	acc, err := ParseAccept(strings.NewReader("# reviewed\nGO-2026-0001 stdlib needs go1.26.9\nGO-2026-0002 stdlib wrong module\n"), "accepted")
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if r.Report(&out, "main", acc) {
		t.Errorf("passed with the x/net finding unaccepted:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "accepted (needs go1.26.9)") || !strings.Contains(out.String(), "note: accepted GO-2026-0002 in stdlib (line 3) was not found") {
		t.Errorf("report:\n%s", out.String())
	}

	acc = append(acc, Accept{ID: "GO-2026-0002", Module: "golang.org/x/net", Reason: "test"})
	out.Reset()
	if !r.Report(&out, "main", acc) {
		t.Errorf("failed with every reachable finding accepted:\n%s", out.String())
	}
}

func TestParseAcceptNeedsReason(t *testing.T) {
	for _, in := range []string{"GO-2026-0001 stdlib\n", "CVE-2026-1 stdlib reason\n"} {
		if _, err := ParseAccept(strings.NewReader(in), "accepted"); err == nil || !strings.Contains(err.Error(), "accepted:1: want") {
			t.Errorf("%q: err = %v", in, err)
		}
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	if _, err := Read(strings.NewReader(`{"config":`)); err == nil {
		t.Error("truncated stream accepted")
	}
}
