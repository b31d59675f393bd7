package modes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"

	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// DebugCmd groups the offline commands: evaluate flags, validate flag files.
type DebugCmd struct {
	Eval     DebugEvalCmd     `cmd:"" help:"Evaluate flags from flag files, as flagd would."`
	Validate DebugValidateCmd `cmd:"" help:"Validate flag files strictly; exit 1 listing every problem."`
}

// readFile reads a file. Its error names the file once ("f.json: no such file or
// directory" rather than "f.json: open f.json: no such file or directory").
func readFile(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
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

// flagLookup finds flags by key across several flag documents, the way flagd looks a
// key up across its sources when no selector is given: a later document wins on the
// same key, as a later source has the higher priority. Within one document (array form,
// one key in several flag sets) the later definition wins too.
type flagLookup struct {
	byKey map[string]*eval.Flag
	keys  []string // sorted
}

func newFlagLookup(sets []*flags.Set, log zerolog.Logger) flagLookup {
	l := flagLookup{byKey: map[string]*eval.Flag{}}
	for _, set := range sets {
		for _, f := range set.Flags {
			if prev, ok := l.byKey[f.Key]; ok {
				log.Debug().Str("flag", f.Key).Str("flagSetId", f.FlagSetID).Str("shadowedFlagSetId", prev.FlagSetID).Msg("a later definition of the flag wins")
			} else {
				l.keys = append(l.keys, f.Key)
			}
			l.byKey[f.Key] = f
		}
	}
	sort.Strings(l.keys)
	return l
}

// evaluate resolves key as type t; an unknown key resolves to FLAG_NOT_FOUND.
func (l flagLookup) evaluate(key string, t eval.Type, ctx map[string]any) eval.Resolution {
	f, ok := l.byKey[key]
	if !ok {
		return eval.NotFound(key)
	}
	return f.EvaluateAs(t, ctx, nil)
}
