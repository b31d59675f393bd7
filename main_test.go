package main

import (
	"io"
	"os"
	"strings"
	"testing"
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
