// Package sync defines how flag sources feed the store: a Source runs under a context
// and sends whole flag documents (or errors) tagged with its name; Feed applies them.
// It also parses flagd's source configuration (--uri prefixes, --sources JSON, config
// files) into SourceConfig values. The sources themselves live in sub-packages
// (sync/file, ...); modes/ maps a SourceConfig to one.
package sync

import (
	"context"
	"fmt"
	gosync "sync"
)

// Update is one message from a source: a whole flag document, or an error saying the
// source could not deliver one (its last good flags stay served).
type Update struct {
	Source string
	Data   []byte
	Err    error
}

// Source is a flag source. Run sends updates until ctx ends and returns nil then; it
// returns an error only when it cannot run at all (bad configuration, no watch could
// be created): Feed reports that to the store at once. A source never
// blocks on a slow consumer for long: Feed reads continuously.
type Source interface {
	// Name is the source string flagd uses for it (selectors, the sync API's "source").
	Name() string
	Run(ctx context.Context, out chan<- Update) error
}

// Applier receives the updates: the flag store.
type Applier interface {
	Apply(source string, data []byte) error
	Fail(source string, err error)
}

// Feed runs every source and applies their updates until ctx ends. A source whose
// Run fails (it cannot run at all, e.g. no inotify watch could be created) is
// reported to the store at once, like any source error: the store logs it under the
// source's redacted name and readiness names the source, while the other sources
// keep serving. Feed returns when ctx ends and every source has stopped.
func Feed(ctx context.Context, store Applier, sources []Source) {
	updates := make(chan Update, len(sources))
	var wg gosync.WaitGroup
	for _, s := range sources {
		wg.Go(func() {
			if err := s.Run(ctx, updates); err != nil && ctx.Err() == nil {
				select {
				case updates <- Update{Source: s.Name(), Err: fmt.Errorf("source stopped: %w", err)}:
				case <-ctx.Done():
				}
			}
		})
	}
	go func() { wg.Wait(); close(updates) }()
	for u := range updates {
		if u.Err != nil {
			store.Fail(u.Source, u.Err)
			continue
		}
		_ = store.Apply(u.Source, u.Data) // the store logs and counts rejections
	}
}
