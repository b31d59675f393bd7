package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// goInvocation matches a line of a shell script that runs the go command
// (directly or as "$GO"), as opposed to one that only mentions it.
var goInvocation = regexp.MustCompile(`(^|[\s(;&|])(go|"?\$GO"?|"?\$\{GO\}"?) (build|run|test|list|env|mod|vet|tool|generate|install|-C)\b`)

// TestToolchainEverywhere keeps the build's Go release in one place per entry
// point: go.mod's toolchain line names it, every other module's go.mod names the
// same, and the Makefile, .ci/run, every script that runs go and the README set
// GOTOOLCHAIN to it. A machine whose Go has GOTOOLCHAIN=local ignores the
// toolchain line, so an entry point without the variable would build with the
// machine's Go and its standard-library vulnerabilities (docs/security.md).
func TestToolchainEverywhere(t *testing.T) {
	want := toolchainOf(t, "go.mod")
	if want == "" {
		t.Fatal("go.mod: no toolchain line (the build's Go release)")
	}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || d.Name() == "testdata" || d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.Name() == "go.mod" && path != "go.mod" {
			if got := toolchainOf(t, path); got != want {
				t.Errorf("%s: toolchain %q, go.mod has %q", path, got, want)
			}
		}
		if strings.HasSuffix(path, ".sh") || path == filepath.Join(".ci", "run") {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if goInvocation.Match(data) && !hasExport(string(data), want) {
				t.Errorf("%s runs go but does not export GOTOOLCHAIN=%s (as `export GOTOOLCHAIN=\"${GOTOOLCHAIN:-%s}\"`)", path, want, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for file, line := range map[string]string{
		"Makefile":  "export GOTOOLCHAIN ?= " + want,
		".ci/run":   "export GOTOOLCHAIN=" + want,
		"README.md": "export GOTOOLCHAIN=" + want,
	} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), line+"\n") {
			t.Errorf("%s: no line %q", file, line)
		}
	}
}

// toolchainOf returns the toolchain line's name of the go.mod at path ("" if none).
func toolchainOf(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if f.Toolchain == nil {
		return ""
	}
	return f.Toolchain.Name
}

// hasExport reports whether a script exports GOTOOLCHAIN with version as its value
// or default.
func hasExport(script, version string) bool {
	return strings.Contains(script, `export GOTOOLCHAIN="${GOTOOLCHAIN:-`+version+`}"`) ||
		strings.Contains(script, "export GOTOOLCHAIN="+version+"\n")
}
