// Package sync defines how flag sources feed the store: a Source runs under a context
// and sends whole flag documents (or errors) tagged with its name; Feed applies them.
// It also parses flagd's source configuration (--uri prefixes, --sources JSON, config
// files) into SourceConfig values. The sources themselves live in sub-packages
// (sync/file, ...); modes/ maps a SourceConfig to one.
package sync

import (
	"context"
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
// returns an error only when it cannot run at all (bad configuration). A source never
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

// Feed runs every source and applies their updates until ctx ends. It returns the
// first error a source returns from Run (the others keep running until ctx ends).
func Feed(ctx context.Context, store Applier, sources []Source) error {
	updates := make(chan Update, len(sources))
	errc := make(chan error, len(sources))
	var wg gosync.WaitGroup
	for _, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(ctx, updates); err != nil {
				errc <- err
			}
		}()
	}
	go func() { wg.Wait(); close(updates) }()
	var first error
	for u := range updates {
		if u.Err != nil {
			store.Fail(u.Source, u.Err)
			continue
		}
		_ = store.Apply(u.Source, u.Data) // the store logs and counts rejections
	}
	select {
	case first = <-errc:
	default:
	}
	return first
}
