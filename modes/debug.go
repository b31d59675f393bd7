package modes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
	"github.com/flagpole-dev/flagpole/flagd/store"
)

// DebugCmd groups the offline commands: evaluate flags, validate flag files.
type DebugCmd struct {
	Eval     DebugEvalCmd     `cmd:"" help:"Evaluate flags from flag files, as flagd would."`
	Validate DebugValidateCmd `cmd:"" help:"Validate flag files strictly; exit 1 listing every problem."`
	CRDs     DebugCRDsCmd     `cmd:"" name:"crds" help:"Print the core.openfeature.dev CustomResourceDefinitions (YAML)."`
	Inject   DebugInjectCmd   `cmd:"" help:"Render what the pod webhook would inject into a pod or a workload's pod template."`
}

// readFile reads a file. Its error names the file once ("f.json: no such file or
// directory" rather than "f.json: open f.json: no such file or directory").
func readFile(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		if pathErr, ok := errors.AsType[*fs.PathError](err); ok {
			err = pathErr.Err
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return data, nil
}

// rejectedFileError is a flag file that flagd would reject, with every problem found.
type rejectedFileError struct {
	file     string
	problems flags.Problems
}

func (e *rejectedFileError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: flagd would reject this file:", e.file)
	for _, p := range e.problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// loadFlagFiles parses flag files as flagd serves them (lenient mode), logging each
// warning with its file and JSON path. Every file is read; the error names each file
// that cannot be read or would be rejected, with all of its problems.
func loadFlagFiles(files []string, log zerolog.Logger) ([]*flags.Set, error) {
	sets := make([]*flags.Set, 0, len(files))
	var errs []error
	for _, name := range files {
		data, err := readFile(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set, err := flags.Parse(data, flags.Lenient)
		if err != nil {
			var problems flags.Problems
			if !errors.As(err, &problems) {
				problems = flags.Problems{{Message: err.Error()}}
			}
			errs = append(errs, &rejectedFileError{file: name, problems: problems})
			continue
		}
		for _, w := range set.Warnings {
			log.Warn().Str("file", name).Str("path", w.Path).Msg(w.Message)
		}
		log.Debug().Str("file", name).Int("flags", len(set.Flags)).Msg("flag file loaded")
		sets = append(sets, set)
	}
	return sets, errors.Join(errs...)
}

// flagLookup resolves flag keys against several flag files merged as flagd merges its
// sources: each file is a source, a later file has the higher priority, and a
// selector narrows the view exactly as the Flagd-Selector header does.
type flagLookup struct {
	snap *store.Snapshot
	sel  store.Selector
}

func newFlagLookup(files []string, sets []*flags.Set, sel store.Selector) (flagLookup, error) {
	st, err := store.New(files, zerolog.Nop())
	if err != nil {
		return flagLookup{}, err
	}
	for i, set := range sets {
		if err := st.ApplyParsed(files[i], set); err != nil { //nolint:gosec // G602: sets are loadFlagFiles(files), one per file
			return flagLookup{}, err
		}
	}
	return flagLookup{snap: st.Current(), sel: sel}, nil
}

// keys lists the keys the selector sees, sorted.
func (l flagLookup) keys() []string {
	entries := l.snap.List(l.sel)
	keys := make([]string, len(entries))
	for i, e := range entries {
		keys[i] = e.Flag.Key
	}
	return keys
}

// evaluate resolves key as type t; an unknown key resolves to FLAG_NOT_FOUND.
func (l flagLookup) evaluate(key string, t eval.Type, ctx map[string]any) eval.Resolution {
	e, ok := l.snap.Get(key, l.sel)
	if !ok {
		return eval.NotFound(key)
	}
	return e.Flag.EvaluateAs(t, ctx, nil)
}
