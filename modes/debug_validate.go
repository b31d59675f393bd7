package modes

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/flagpole-dev/flagpole/flagd/flags"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
)

// DebugValidateCmd validates flag files strictly (what flagd's schema rejects and what
// would fail at evaluation time are errors) and Kubernetes manifests of the
// core.openfeature.dev/v1beta1 kinds with the validating webhooks' own checks.
type DebugValidateCmd struct {
	Files []string `arg:"" name:"file" help:"Flag files, or Kubernetes manifests (FeatureFlag, FeatureFlagSource, Flagd, InProcessConfiguration; several YAML documents or a List), JSON or YAML."`

	Namespace           string `short:"n" default:"default" help:"Namespace of manifests without metadata.namespace (as kubectl apply -n)."`
	CrossNamespace      string `name:"cross-namespace" default:"deny" enum:"deny,allow" help:"The operator's --cross-namespace policy: deny warns about FeatureFlagSource sources in other namespaces."`
	DefaultSyncProvider string `name:"default-sync-provider" default:"kubernetes" placeholder:"PROVIDER" help:"The operator's provider for sources without provider or defaultSyncProvider; \"\" for none."`
}

// Run checks every file, printing for a flag file "file: path: message" per problem
// (and "file: warning: path: message" for what is only suspicious) or a one-line
// summary; for a manifest "file: Kind/namespace/name: path: message" per problem,
// "file: Kind/namespace/name: warning: path: message" per warning, or ": ok". It
// exits 1 if any file or object failed.
func (c *DebugValidateCmd) Run(stdio Stdio) error {
	cross, err := sidecar.ParseCrossNamespace(c.CrossNamespace)
	if err != nil {
		return err
	}
	v := manifestValidator{
		hooks:     map[string]webhook.AdmitFunc{},
		namespace: c.Namespace,
	}
	for _, h := range webhook.ValidatingWebhooks(webhook.ValidationOptions{CrossNamespace: cross, DefaultSyncProvider: c.DefaultSyncProvider}) {
		v.hooks[h.Kind] = h.Admit
	}
	failed := false
	for _, name := range c.Files {
		lines, ok := v.validateFile(name)
		if !ok {
			failed = true
		}
		if _, err := fmt.Fprint(stdio.Out, strings.Join(lines, "\n")+"\n"); err != nil {
			return err
		}
	}
	if failed {
		return ExitError{Code: 1}
	}
	return nil
}

// validateFile returns the output lines for one file and whether it passed: the
// objects of a manifest, or the flag document of a flag file.
func (v manifestValidator) validateFile(name string) ([]string, bool) {
	data, err := readFile(name)
	if err != nil {
		return []string{err.Error()}, false
	}
	if docs, ok := manifestDocuments(data); ok {
		return v.validateManifest(name, docs)
	}
	return validateFlagDocument(name, data)
}

// validateFlagDocument checks one flag file in strict mode.
func validateFlagDocument(name string, data []byte) ([]string, bool) {
	set, err := flags.Parse(data, flags.Strict)
	if err != nil {
		var problems flags.Problems
		if !errors.As(err, &problems) {
			return []string{name + ": " + err.Error()}, false
		}
		lines := make([]string, len(problems))
		for i, p := range problems {
			lines[i] = name + ": " + p.String()
		}
		return lines, false
	}
	lines := make([]string, 0, len(set.Warnings)+1)
	for _, w := range set.Warnings {
		lines = append(lines, name+": warning: "+w.String())
	}
	return append(lines, name+": ok, "+summarizeSet(set)), true
}

// summarizeSet describes a valid flag file in one line, e.g.
// `8 flags (6 with targeting, 1 disabled), 1 flag set (storefront), 1 warning`.
func summarizeSet(set *flags.Set) string {
	s := summarizeFlags(set)
	if len(set.Warnings) > 0 {
		s += ", " + plural(len(set.Warnings), "warning")
	}
	return s
}

// summarizeFlags describes the flags of a valid set, e.g.
// `8 flags (6 with targeting, 1 disabled), 1 flag set (storefront)`.
func summarizeFlags(set *flags.Set) string {
	targeted, disabled := 0, 0
	ids := map[string]bool{}
	for _, f := range set.Flags {
		if f.HasTargeting() {
			targeted++
		}
		if f.Disabled() {
			disabled++
		}
		if f.FlagSetID != "" {
			ids[f.FlagSetID] = true
		}
	}
	s := fmt.Sprintf("%s (%d with targeting, %d disabled), %s", plural(len(set.Flags), "flag"), targeted, disabled, plural(len(ids), "flag set"))
	if len(ids) > 0 {
		names := make([]string, 0, len(ids))
		for id := range ids {
			names = append(names, id)
		}
		sort.Strings(names)
		s += " (" + strings.Join(names, ", ") + ")"
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
