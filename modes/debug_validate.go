package modes

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// DebugValidateCmd validates flag files strictly: what flagd's schema rejects and what
// would fail at evaluation time are errors.
type DebugValidateCmd struct {
	Files []string `arg:"" name:"file" help:"Flag files, JSON or YAML."`
}

// Run checks every file, printing "file: path: message" for each problem (and
// "file: warning: path: message" for what is only suspicious) or a one-line summary,
// and exits 1 if any file failed.
func (c *DebugValidateCmd) Run(stdio Stdio) error {
	failed := false
	for _, name := range c.Files {
		lines, ok := validateFlagFile(name)
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

// validateFlagFile returns the output lines for one file and whether it passed.
func validateFlagFile(name string) ([]string, bool) {
	data, err := readFile(name)
	if err != nil {
		return []string{err.Error()}, false
	}
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

// summarizeSet describes a valid flag set in one line, e.g.
// `8 flags (6 with targeting, 1 disabled), 1 flag set (storefront)`.
func summarizeSet(set *flags.Set) string {
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
	if len(set.Warnings) > 0 {
		s += ", " + plural(len(set.Warnings), "warning")
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
