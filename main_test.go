package main

import (
	"io"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/flagpole-dev/flagpole/modes"
)

// TestFlagdStartIsWired runs the root command as the binary does, with an OTel
// option flagd start rejects: the error proves the command ran with every binding
// it needs (context, logger, build information).
func TestFlagdStartIsWired(t *testing.T) {
	for _, args := range [][]string{
		{"flagd", "start", "-f", "file:flags.json", "-o", "ftp://collector:4317"},
		{"start", "-f", "file:flags.json", "-o", "ftp://collector:4317"},
	} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stderr := os.Stderr
		os.Stderr = w
		code := run(args)
		os.Stderr = stderr
		w.Close()
		out, _ := io.ReadAll(r)
		r.Close()
		if code != 1 || !strings.Contains(string(out), `--otel-collector-uri "ftp://collector:4317": scheme "ftp" is not supported`) {
			t.Errorf("%v: exit %d, stderr %q", args, code, out)
		}
	}
}

// TestFlagdProxyStartIsWired: `flagd-proxy start` runs with its bindings and
// reports a kubeconfig it cannot use.
func TestFlagdProxyStartIsWired(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	code := run([]string{"flagd-proxy", "start", "--kubeconfig", "/nonexistent/kubeconfig", "--port", "0", "--management-port", "0"})
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	if code != 1 || !strings.Contains(string(out), "kubernetes: kubeconfig /nonexistent/kubeconfig: invalid configuration") {
		t.Errorf("exit %d, stderr %q", code, out)
	}
}

// TestRootForNamesEveryCommand: the one-command root of every command parses its
// arguments into the same values as the whole cli, and rootFor knows each command
// by the name kong gives it.
func TestRootForNamesEveryCommand(t *testing.T) {
	var whole cli
	model, err := kong.New(&whole, kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, node := range model.Model.Children {
		names = append(names, node.Name)
		root, globals := rootFor([]string{node.Name})
		if _, full := root.(*cli); full {
			t.Errorf("command %q: rootFor returned the whole cli", node.Name)
			continue
		}
		fields := reflect.TypeOf(root).Elem()
		if fields.NumField() != 2 || commandName(fields.Field(1)) != node.Name {
			t.Errorf("command %q: root %v", node.Name, fields)
		}
		if globals == nil {
			t.Errorf("command %q: no global flags", node.Name)
		}
	}
	var want []string
	full := reflect.TypeFor[cli]()
	for i := 1; i < full.NumField(); i++ {
		want = append(want, commandName(full.Field(i)))
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("kong's commands (-cli fields +kong):\n%s", diff)
	}

	args := []string{"flagd", "start", "--log-level", "debug", "-f", "file:a.json", "--port", "9013", "--cors-origin", "https://*.example.com"}
	if _, err := model.Parse(args); err != nil {
		t.Fatal(err)
	}
	root, globals := rootFor(args)
	one, err := kong.New(root, kong.Vars{"version": "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := one.Parse(args); err != nil {
		t.Fatal(err)
	}
	got := reflect.ValueOf(root).Elem().Field(1).Interface().(modes.FlagdCmd)
	if diff := cmp.Diff(whole.Flagd, got, cmpopts.IgnoreUnexported(modes.FlagdCmd{})); diff != "" {
		t.Errorf("flagd start parsed differently (-whole +one):\n%s", diff)
	}
	if *globals != whole.Globals {
		t.Errorf("globals: %+v, whole cli %+v", *globals, whole.Globals)
	}
}

// TestRootForWholeCLI: without a command first, kong sees every command.
func TestRootForWholeCLI(t *testing.T) {
	for _, args := range [][]string{nil, {"--log-level", "debug", "version"}, {"nope"}, {"--help"}} {
		if root, _ := rootFor(args); reflect.TypeOf(root) != reflect.TypeFor[*cli]() {
			t.Errorf("rootFor(%q) = %T, want the whole cli", args, root)
		}
	}
}
