package main

import (
	"os/exec"
	"strings"
	"testing"
)

// heavyPackages register every built-in Kubernetes API group at start-up (or import
// a package that does): linked into this binary, every mode, the flagd sidecar
// included, would pay ~12 MiB of RSS and ~10 ms of start-up for them
// (docs/architecture.md, "One lean binary"). A prefix ending in "/" matches its
// sub-packages too.
var heavyPackages = []string{
	"k8s.io/client-go/kubernetes",                                        // the generated clientset of every built-in group
	"k8s.io/client-go/kubernetes/",                                       // its typed clients import kubernetes/scheme
	"k8s.io/client-go/informers",                                         // the built-in informer factory
	"k8s.io/client-go/informers/",                                        //
	"k8s.io/client-go/applyconfigurations/",                              // apply configurations (meta/v1 too, so ours too) import kubernetes/scheme
	"k8s.io/client-go/tools/leaderelection",                              // imports resourcelock, which imports typed clients
	"k8s.io/client-go/tools/leaderelection/",                             //
	"github.com/flagpole-dev/flagpole/crd/generated/clientset/",          // imports the apply configurations
	"github.com/flagpole-dev/flagpole/crd/generated/informers/",          // imports the clientset
	"github.com/flagpole-dev/flagpole/crd/generated/applyconfiguration/", // imports applyconfigurations/meta/v1
	"sigs.k8s.io/controller-runtime",                                     // never (DESIGN decision 3)
	"sigs.k8s.io/controller-runtime/",                                    //
}

// TestLeanBinary lists the packages linked into the binary and fails on any of
// heavyPackages: a deterministic guard for the sidecar budgets that `make size`
// measures.
func TestLeanBinary(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list returned only %d packages", len(deps))
	}
	for _, dep := range deps {
		for _, heavy := range heavyPackages {
			if dep == heavy || (strings.HasSuffix(heavy, "/") && strings.HasPrefix(dep, heavy)) {
				t.Errorf("the binary links %s (matches %q): use a REST client with a scheme of only the types needed (package kube)", dep, heavy)
			}
		}
	}
}
