// Package file is the file flag source: it reads a JSON or YAML flag document and
// re-reads it when it changes. It watches the file's directory with fsnotify, so
// editors' atomic rename-over, truncate-and-write, delete and re-create, and
// Kubernetes ConfigMap `..data` symlink swaps are all seen. A missing, empty or
// unreadable file is reported as an error and the last good flags stay served.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// DefaultDebounce coalesces the burst of events one save produces.
const DefaultDebounce = 5 * time.Millisecond

// Source watches one file.
type Source struct {
	path     string
	debounce time.Duration
}

// New returns a source for path (as given: it is also the source's name).
func New(path string) *Source { return &Source{path: path, debounce: DefaultDebounce} }

// Name is the path as configured.
func (s *Source) Name() string { return s.path }

// Run sends the file's content now and after every change, until ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- flagsync.Update) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file source %s: %w", s.path, err)
	}
	defer w.Close()
	dir := filepath.Dir(s.path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("file source %s: watching directory %s: %w", s.path, dir, err)
	}
	var last [sha256.Size]byte
	var lastErr string
	sent := false
	read := func() {
		data, err := os.ReadFile(s.path)
		if err == nil && len(bytes.TrimSpace(data)) == 0 {
			err = errors.New("file is empty")
		}
		if err != nil {
			if err.Error() != lastErr { // report each distinct problem once
				lastErr = err.Error()
				send(ctx, out, flagsync.Update{Source: s.path, Err: fmt.Errorf("file source %s: %w", s.path, err)})
			}
			return
		}
		lastErr = ""
		sum := sha256.Sum256(data)
		if sent && sum == last {
			return
		}
		last, sent = sum, true
		send(ctx, out, flagsync.Update{Source: s.path, Data: data})
	}
	read()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod && filepath.Clean(ev.Name) != filepath.Clean(s.path) {
				continue
			}
			timer.Reset(s.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			send(ctx, out, flagsync.Update{Source: s.path, Err: fmt.Errorf("file source %s: watch: %w", s.path, err)})
		case <-timer.C:
			read()
		}
	}
}

func send(ctx context.Context, out chan<- flagsync.Update, u flagsync.Update) {
	select {
	case out <- u:
	case <-ctx.Done():
	}
}
