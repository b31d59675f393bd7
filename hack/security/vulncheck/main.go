// Command vulncheck reads govulncheck's JSON stream (govulncheck -format json) on
// standard input, prints every vulnerability the scanned code reaches — its ID, the
// vulnerable module at the version found, the version that fixes it, its summary and
// one call path from flagpole's code — and exits 1 when one of them is not in the
// accept file. An accepted finding is still printed, with the reason written next to
// it; an accept entry that matches nothing is reported as stale so it can be dropped.
//
// govulncheck's text mode exits 3 on any finding and has no way to record a
// decision; this keeps every finding visible while letting a reviewed, written-down
// residual risk (a standard-library fix that needs a newer Go toolchain than the
// build's) pass.
//
// Usage:
//
//	govulncheck -format json -db file:///path ./... | vulncheck -accept accepted-vulns.txt -name main
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	accept := flag.String("accept", "", "file of accepted findings: `ID module reason...` per line, # comments")
	name := flag.String("name", "", "what was scanned, for the report (e.g. the module's directory)")
	flag.Parse()
	var accepted []Accept
	if *accept != "" {
		f, err := os.Open(*accept)
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck:", err)
			os.Exit(2)
		}
		accepted, err = ParseAccept(f, *accept)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck:", err)
			os.Exit(2)
		}
	}
	r, err := Read(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck: reading govulncheck's output:", err)
		os.Exit(2)
	}
	if !r.Report(os.Stdout, *name, accepted) {
		os.Exit(1)
	}
}

// message is one value of govulncheck's JSON stream (its internal/govulncheck
// Message, reduced to what the report needs).
type message struct {
	Config *struct {
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
		DBLastModified string `json:"db_last_modified"`
		GoVersion      string `json:"go_version"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *struct {
		OSV          string   `json:"osv"`
		FixedVersion string   `json:"fixed_version"`
		Trace        []*Frame `json:"trace"`
	} `json:"finding"`
}

// Frame is one frame of a finding's trace, from the vulnerable symbol (first) to
// the scanned code's entry point (last).
type Frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
	} `json:"position"`
}

// Finding is one vulnerability in one module, at the deepest level govulncheck
// found it: called (a vulnerable symbol is reachable from the scanned code),
// imported (its package is imported, the symbol not reached) or required (only the
// module is in the build).
type Finding struct {
	ID, Module, Found, Fixed, Summary string
	Called                            bool
	// Trace is one call path of a called finding, entry point first.
	Trace []string
}

// Result is what one govulncheck run found.
type Result struct {
	Scanner, DB, DBModified, GoVersion string
	Findings                           []*Finding // called first, then by ID and module
}

// Read parses govulncheck's JSON stream.
func Read(r io.Reader) (*Result, error) {
	res := &Result{}
	summaries := map[string]string{}
	byKey := map[string]*Finding{}
	dec := json.NewDecoder(r)
	for {
		var m message
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch {
		case m.Config != nil:
			res.Scanner, res.DB, res.DBModified, res.GoVersion = m.Config.ScannerVersion, m.Config.DB, m.Config.DBLastModified, m.Config.GoVersion
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			top := m.Finding.Trace[0]
			key := m.Finding.OSV + " " + top.Module
			f := byKey[key]
			if f == nil {
				f = &Finding{ID: m.Finding.OSV, Module: top.Module, Found: top.Version, Fixed: m.Finding.FixedVersion}
				byKey[key] = f
			}
			if top.Function != "" && !f.Called {
				f.Called = true
				for _, fr := range slices.Backward(m.Finding.Trace) {
					f.Trace = append(f.Trace, fr.String())
				}
			}
		}
	}
	for _, f := range byKey {
		f.Summary = summaries[f.ID]
		res.Findings = append(res.Findings, f)
	}
	slices.SortFunc(res.Findings, func(a, b *Finding) int {
		if a.Called != b.Called {
			if a.Called {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID+" "+a.Module, b.ID+" "+b.Module)
	})
	return res, nil
}

// String is the frame as govulncheck's text output shows it: the position, then
// the package-qualified symbol.
func (f *Frame) String() string {
	sym := f.Function
	if f.Receiver != "" {
		sym = strings.TrimPrefix(f.Receiver, "*") + "." + sym
	}
	pkg := f.Package
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	s := pkg + "." + sym
	if f.Position != nil && f.Position.Line > 0 {
		s = fmt.Sprintf("%s:%d:%d: %s", f.Position.Filename, f.Position.Line, f.Position.Column, s)
	}
	return s
}

// Accept is one reviewed finding that does not fail the check: a vulnerability ID
// in one module ("stdlib" for the standard library), and why it is accepted.
type Accept struct {
	ID, Module, Reason string
	Line               int
}

// ParseAccept reads an accept file: `ID module reason...` per line; blank lines and
// lines starting with # are skipped. A line without a reason is an error: an
// acceptance is a written-down decision.
func ParseAccept(r io.Reader, name string) ([]Accept, error) {
	var out []Accept
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 || !strings.HasPrefix(fields[0], "GO-") {
			return nil, fmt.Errorf("%s:%d: want `GO-YYYY-NNNN module reason...`, got %q", name, n, line)
		}
		out = append(out, Accept{ID: fields[0], Module: fields[1], Reason: strings.Join(fields[2:], " "), Line: n})
	}
	return out, sc.Err()
}

// Report prints the result and says whether it passes: no called finding outside
// the accepted ones. Imported and required findings (the vulnerable code is not
// reached) are counted, not failed, as govulncheck does.
func (r *Result) Report(w io.Writer, name string, accepted []Accept) bool {
	fmt.Fprintf(w, "govulncheck %s: %s (database %s, modified %s), %s\n", name, r.Scanner, r.DB, r.DBModified, r.GoVersion)
	used := make([]bool, len(accepted))
	failed, acceptedN := 0, 0
	var notCalled []string
	for _, f := range r.Findings {
		if !f.Called {
			notCalled = append(notCalled, f.ID+" ("+f.Module+"@"+f.Found+")")
			continue
		}
		fixed := f.Fixed
		if fixed == "" {
			fixed = "no fix yet"
		}
		verdict := "FAIL"
		for i, a := range accepted {
			if a.ID == f.ID && a.Module == f.Module {
				used[i] = true
				verdict = "accepted (" + a.Reason + ")"
			}
		}
		if verdict == "FAIL" {
			failed++
		} else {
			acceptedN++
		}
		fmt.Fprintf(w, "  %s %s@%s, fixed in %s: %s\n    %s\n", f.ID, f.Module, f.Found, fixed, f.Summary, verdict)
		if len(f.Trace) > 0 {
			fmt.Fprintf(w, "    reached from %s\n", strings.Join(f.Trace, "\n      → "))
		}
	}
	for i, a := range accepted {
		if !used[i] {
			fmt.Fprintf(w, "  note: accepted %s in %s (line %d) was not found: drop it once no scanned module reports it\n", a.ID, a.Module, a.Line)
		}
	}
	fmt.Fprintf(w, "  %d reachable vulnerabilities not accepted, %d accepted; %d more in imported packages or required modules whose vulnerable code is not reached",
		failed, acceptedN, len(notCalled))
	if len(notCalled) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(notCalled, ", "))
	}
	fmt.Fprintln(w)
	return failed == 0
}
