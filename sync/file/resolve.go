package file

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxLinks bounds symlink hops while resolving, as Linux's MAXSYMLINKS does.
const maxLinks = 40

// watchPlan says what to watch for one file path: the directories whose events can
// change what the path reads, and the paths whose events (on them or on an ancestor)
// matter. It is recomputed after every change, because a change can move the target
// (a ConfigMap `..data` swap points the path at a new directory).
type watchPlan struct {
	// dirs are the directories to watch: the final file's directory, the directory of
	// every symlink met on the way, or the deepest existing ancestor when the file's
	// directory does not exist. Resolved (no symlinks), each once.
	dirs []string
	// paths are the symlinks met while resolving and the final resolved path. An event
	// on one of them, or on one of their ancestors, can change what the path reads.
	paths []string
	// missingDir is the file's directory when it does not exist ("" otherwise).
	missingDir string
}

// relevant reports whether an event on name can change what the path reads.
func (p *watchPlan) relevant(name string) bool {
	name = filepath.Clean(name)
	for _, q := range p.paths {
		if isSelfOrAncestor(name, q) {
			return true
		}
	}
	return false
}

// isSelfOrAncestor reports whether dir is p or one of p's ancestors (both clean).
func isSelfOrAncestor(dir, p string) bool {
	if dir == p {
		return true
	}
	prefix := dir
	if !strings.HasSuffix(prefix, string(filepath.Separator)) {
		prefix += string(filepath.Separator)
	}
	return strings.HasPrefix(p, prefix)
}

// resolve walks an absolute, clean path component by component as the kernel does,
// following symlinks (relative ones from their own directory, ".." physically), and
// records every symlink met and the directory it sits in. It never fails: a missing
// component ends the walk, and the deepest existing directory is watched instead, so
// that its creation is seen.
func resolve(path string) watchPlan {
	var plan watchPlan
	seen := map[string]bool{}
	addDir := func(d string) {
		if !seen[d] {
			seen[d] = true
			plan.dirs = append(plan.dirs, d)
		}
	}
	done := string(filepath.Separator) // resolved prefix: an existing directory
	rest := split(path)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = filepath.Dir(done)
			continue
		}
		next := filepath.Join(done, c)
		fi, err := os.Lstat(next)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 && links < maxLinks {
			if target, err := os.Readlink(next); err == nil {
				links++
				plan.paths = append(plan.paths, next)
				addDir(done)
				if filepath.IsAbs(target) {
					done = string(filepath.Separator)
				}
				rest = append(split(target), rest...)
				continue
			}
		}
		if err == nil && len(rest) == 0 { // the final component exists
			plan.paths = append(plan.paths, next)
			addDir(done)
			return plan
		}
		if err == nil && fi.IsDir() {
			done = next
			continue
		}
		// next is missing (or unreadable, or not a directory while components follow):
		// watch the deepest existing directory for it to appear.
		final := filepath.Join(append([]string{next}, rest...)...)
		plan.paths = append(plan.paths, final)
		addDir(done)
		if len(rest) > 0 {
			plan.missingDir = filepath.Dir(final)
		}
		return plan
	}
	plan.paths = append(plan.paths, done) // the path is a directory ("/", "/a/..")
	addDir(filepath.Dir(done))
	return plan
}

// split cuts a path into its components (empty ones included; resolve skips them).
func split(p string) []string { return strings.Split(p, string(filepath.Separator)) }
