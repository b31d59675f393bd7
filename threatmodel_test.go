package main

import (
	"bufio"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// strideHeader is the header row of every STRIDE table of docs/threat-model.md.
var strideHeader = []string{"STRIDE", "threat", "control", "proof", "residual risk"}

// gapsHeader is the header row of the summary table of open gaps (section 8).
var gapsHeader = []string{"flow", "STRIDE", "threat", "what is missing"}

// issuesHeader is the header row of the table of previous security issues
// (section 6), whose last cell names the tests of each fix.
var issuesHeader = []string{"issue", "what it was", "how flagpole closes it", "test"}

// testName matches a Go test, fuzz target or benchmark named in a proof cell,
// optionally qualified by its package (`store.TestRedact`) and followed by a
// subtest path (`TestDecisionTable/invalid_selector`).
var testName = regexp.MustCompile(`\b(?:([a-z][a-z0-9]*)\.)?((?:Test|Fuzz|Benchmark)(?:[A-Z0-9_][A-Za-z0-9_]*)?)\b`)

// makeTarget matches a Makefile target named in a proof cell (`make hostile`).
var makeTarget = regexp.MustCompile("`make ([a-z][a-z0-9-]*)`")

// strideRow is one row of a STRIDE table (or of the previous-issues table),
// with the flow (the ### or ## heading) it belongs to and its line in the
// document.
type strideRow struct {
	flow  string
	line  int
	cells []string
}

// TestThreatModel keeps docs/threat-model.md honest: every row of its STRIDE
// tables names its STRIDE letters and a proof, every Go test, fuzz target or
// benchmark a proof names exists in the repository (both modules), a row whose
// proof names neither a test nor a make target says why in its residual risk
// ("open gap" or "no automated test"), every flow covers all six letters, and
// the summary of open gaps lists exactly the rows whose residual risk is one.
func TestThreatModel(t *testing.T) {
	doc := readThreatModel(t, "docs/threat-model.md")
	rows, gaps := doc.stride, doc.gaps
	if len(rows) < 150 {
		t.Fatalf("docs/threat-model.md has %d STRIDE rows; expected every surface's rows (at least 150)", len(rows))
	}
	if len(doc.issues) == 0 {
		t.Errorf("docs/threat-model.md: no table of previous security issues (header %q)", issuesHeader)
	}
	defined := definedTests(t, ".")
	targets := makeTargets(t, "Makefile")
	for _, r := range append(slices.Clone(doc.stride), doc.issues...) { // cells[3]: the proof, the test
		for _, m := range makeTarget.FindAllStringSubmatch(r.cells[3], -1) {
			if !targets[m[1]] {
				t.Errorf("line %d: names `make %s`, but the Makefile has no target %s", r.line, m[1], m[1])
			}
		}
	}
	for _, r := range doc.issues {
		where := "previous issues, line " + strconv.Itoa(r.line)
		if r.cells[3] == "" {
			t.Errorf("%s: no test named for %s", where, r.cells[0])
		}
		checkNames(t, where, r.cells[3], defined)
	}

	letters := map[string]map[string]bool{}
	var flows []string
	for _, r := range rows {
		if letters[r.flow] == nil {
			letters[r.flow] = map[string]bool{}
			flows = append(flows, r.flow)
		}
		checkRow(t, r, defined, letters[r.flow])
	}
	checkOpenGaps(t, rows, gaps)
	for _, flow := range flows {
		for _, l := range strideLetters {
			if !letters[flow][l] {
				t.Errorf("flow %q has no %s row: add one saying what controls it, why it does not apply, or that it is an open gap", flow, l)
			}
		}
	}
}

// strideLetters are the six threat categories, in order.
var strideLetters = []string{"S", "T", "R", "I", "D", "E"}

// checkRow checks one STRIDE row and records its letters in letters.
func checkRow(t *testing.T, r strideRow, defined map[string]map[string]bool, letters map[string]bool) {
	t.Helper()
	where := r.flow + ", line " + strconv.Itoa(r.line)
	stride, proof, residual := r.cells[0], r.cells[3], strings.ToLower(r.cells[4])
	for part := range strings.SplitSeq(stride, "/") {
		part = strings.TrimSpace(part)
		if !slices.Contains(strideLetters, part) {
			t.Errorf("%s: STRIDE cell %q: want letters of S, T, R, I, D, E separated by /", where, stride)
			continue
		}
		letters[part] = true
	}
	for i, what := range []string{"threat", "control", "proof", "residual risk (write \"none known\" only where true)"} {
		if r.cells[i+1] == "" {
			t.Errorf("%s: empty %s", where, what)
		}
	}
	named := checkNames(t, where, proof, defined)
	if proof != "" && named == 0 && !makeTarget.MatchString(proof) &&
		!strings.Contains(residual, "open gap") && !strings.Contains(residual, "no automated test") {
		t.Errorf("%s: proof %q names no test and no make target: say so in the residual risk (\"open gap: ...\" or \"no automated test: ...\")", where, proof)
	}
}

// makeTargets returns the targets the Makefile defines.
func makeTargets(t *testing.T, path string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z0-9-]*):`).FindAllSubmatch(src, -1) {
		targets[string(m[1])] = true
	}
	if len(targets) < 5 {
		t.Fatalf("%s: found only %d targets", path, len(targets))
	}
	return targets
}

// checkNames requires every Go test, fuzz target or benchmark named in cell to
// be defined (in the package it is qualified with, if any) and returns how many
// it names.
func checkNames(t *testing.T, where, cell string, defined map[string]map[string]bool) int {
	t.Helper()
	named := testName.FindAllStringSubmatch(cell, -1)
	for _, m := range named {
		pkg, name := m[1], m[2]
		dirs, ok := defined[name]
		switch {
		case !ok:
			t.Errorf("%s: names %s, but no *_test.go file defines func %s(", where, m[0], name)
		case pkg != "" && !dirs[pkg]:
			t.Errorf("%s: names %s, but %s is not defined in a package %s (it is in %s)", where, m[0], name, pkg, strings.Join(slices.Sorted(maps.Keys(dirs)), ", "))
		}
	}
	return len(named)
}

// checkOpenGaps requires the open-gaps table (section 8) to list exactly the
// threats of the rows whose residual risk is an open gap.
func checkOpenGaps(t *testing.T, rows []strideRow, gaps map[string]bool) {
	t.Helper()
	open := map[string]bool{}
	for _, r := range rows {
		if strings.Contains(strings.ToLower(r.cells[4]), "open gap") {
			open[r.cells[1]] = true
			if !gaps[r.cells[1]] {
				t.Errorf("%s, line %d: residual risk is an open gap, but the open-gaps table (section 8) does not list %q", r.flow, r.line, r.cells[1])
			}
		}
	}
	for threat := range gaps {
		if !open[threat] {
			t.Errorf("the open-gaps table lists %q, but no STRIDE row with that threat has an open gap as its residual risk", threat)
		}
	}
}

// threatModel is what TestThreatModel reads from the document.
type threatModel struct {
	stride []strideRow     // rows of every table whose header is strideHeader
	issues []strideRow     // rows of the table whose header is issuesHeader
	gaps   map[string]bool // threats listed in the table whose header is gapsHeader
}

// readThreatModel reads the STRIDE tables (the ### heading above each is its
// flow), the previous-issues table and the open-gaps table.
func readThreatModel(t *testing.T, path string) threatModel {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc := threatModel{gaps: map[string]bool{}}
	var gapRows []strideRow
	gapsTable := false       // the open-gaps table was found (it may have no rows)
	var current *[]strideRow // the table being read, nil outside one
	var header []string      // its header
	flow, line := "", 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line++
		text := sc.Text()
		switch {
		case !strings.HasPrefix(text, "|"):
			current = nil
			if heading, ok := strings.CutPrefix(text, "### "); ok {
				flow = heading
			}
		case current == nil:
			cells := splitRow(text)
			switch {
			case slices.Equal(cells, strideHeader):
				current, header = &doc.stride, strideHeader
			case slices.Equal(cells, issuesHeader):
				current, header = &doc.issues, issuesHeader
			case slices.Equal(cells, gapsHeader):
				current, header, gapsTable = &gapRows, gapsHeader, true
			case cells[0] == "STRIDE":
				t.Errorf("line %d: STRIDE table header %q, want %q", line, cells, strideHeader)
			}
		case strings.HasPrefix(text, "|---"):
		default:
			cells := splitRow(text)
			if len(cells) != len(header) {
				t.Errorf("%s, line %d: %d cells, want %d (a | inside a cell must be in backticks or escaped)", flow, line, len(cells), len(header))
				continue
			}
			*current = append(*current, strideRow{flow: flow, line: line, cells: cells})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, r := range gapRows {
		doc.gaps[r.cells[2]] = true
	}
	if !gapsTable {
		t.Errorf("%s: no open-gaps table (header %q)", path, gapsHeader)
	}
	return doc
}

// splitRow splits a Markdown table row into trimmed cells; a | inside backticks
// or escaped as \| does not split.
func splitRow(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	row = strings.TrimSuffix(row, "|")
	var cells []string
	var cur strings.Builder
	code := false
	for i := 0; i < len(row); i++ {
		c := row[i]
		switch {
		case c == '\\' && i+1 < len(row) && row[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '`':
			code = !code
			cur.WriteByte(c)
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// definedTests walks the repository (every module under root) and returns, for
// each Test, Fuzz or Benchmark function defined in a *_test.go file, the names
// of the directories and packages that define it.
func definedTests(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]*)\(`)
	pkgClause := regexp.MustCompile(`(?m)^package ([A-Za-z0-9_]+)`)
	defined := map[string]map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Base(filepath.Dir(path))
		pkg := ""
		if m := pkgClause.FindSubmatch(src); m != nil {
			pkg = strings.TrimSuffix(string(m[1]), "_test")
		}
		for _, m := range decl.FindAllSubmatch(src, -1) {
			name := string(m[1])
			if defined[name] == nil {
				defined[name] = map[string]bool{}
			}
			defined[name][dir] = true
			if pkg != "" {
				defined[name][pkg] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(defined) < 300 {
		t.Fatalf("found only %d test functions under %s", len(defined), root)
	}
	return defined
}
