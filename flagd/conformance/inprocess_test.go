package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

// providerID identifies the conformance provider on the sync stream.
const providerID = "flagpole-conformance"

// inProcessProvider is an in-process flagd provider: it receives the flag
// configuration over flagd.sync.v1 SyncFlags (grpc-go), parses each payload as flagd
// serves it (lenient) and evaluates locally with flagpole's evaluator. The static
// context flagd was started with (-X) comes from the payload's sync_context, or from
// GetMetadata when the stream does not carry it, and is applied over the evaluation
// context as flagd applies it server-side (contextEnrichment).
type inProcessProvider struct {
	log    *eventLog
	cancel context.CancelFunc
	done   chan struct{}

	mu         sync.RWMutex
	byKey      map[string]*eval.Flag
	raw        map[string]json.RawMessage // each flag's JSON in the last payload, for change events
	enrichment map[string]any
	hasContext bool // a payload carried sync_context
}

// newInProcessProvider opens the sync stream and waits for the first payload.
func newInProcessProvider(ctx context.Context, d *daemon, selector string) (*inProcessProvider, error) {
	client := syncv1grpc.NewFlagSyncServiceClient(d.grpcConn)
	p := &inProcessProvider{log: newEventLog(), done: make(chan struct{})}
	streamCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if selector != "" {
		// The selector goes in the header (current providers) and in the deprecated body
		// field (older providers); flagd honours the header first.
		streamCtx = metadata.AppendToOutgoingContext(streamCtx, "flagd-selector", selector)
	}
	req := &syncv1.SyncFlagsRequest{ProviderId: providerID}
	req.Selector = selector // deprecated, still sent by providers
	stream, err := client.SyncFlags(streamCtx, req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("SyncFlags: %w", err)
	}
	go func() {
		defer close(p.done)
		first := true
		for {
			resp, err := stream.Recv()
			if err != nil {
				if streamCtx.Err() == nil { // not our own close
					p.log.add(event{Type: eventError, Detail: err.Error()})
				}
				return
			}
			changed, err := p.apply(resp)
			switch {
			case err != nil:
				p.log.add(event{Type: eventError, Detail: err.Error()})
			case first:
				p.log.add(event{Type: eventReady})
			case len(changed) > 0:
				p.log.add(event{Type: eventChange, Flags: changed})
			}
			first = false
		}
	}()
	if _, _, err := p.log.wait(ctx, eventReady, 0); err != nil {
		p.close()
		return nil, fmt.Errorf("in-process provider: %w", err)
	}
	// Older providers take the static context from GetMetadata; newer ones from
	// sync_context. Both must agree when both are served.
	md, err := client.GetMetadata(ctx, &syncv1.GetMetadataRequest{})
	if status.Code(err) == codes.Unimplemented { // --disable-sync-metadata
		err = nil
	} else if err == nil {
		err = p.useMetadata(md.GetMetadata().AsMap())
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("GetMetadata: %w", err)
	}
	return p, nil
}

// apply installs a sync payload and returns the keys of the flags it adds, removes or
// changes relative to the previous one.
func (p *inProcessProvider) apply(resp *syncv1.SyncFlagsResponse) ([]string, error) {
	payload := []byte(resp.GetFlagConfiguration())
	var doc struct {
		Flags map[string]json.RawMessage `json:"flags"`
	}
	if err := json.Unmarshal(payload, &doc); err != nil {
		return nil, fmt.Errorf("sync payload: %w", err)
	}
	set, err := flags.Parse(payload, flags.Lenient)
	if err != nil {
		return nil, fmt.Errorf("sync payload: %w", err)
	}
	byKey := make(map[string]*eval.Flag, len(set.Flags))
	for _, f := range set.Flags {
		if _, dup := byKey[f.Key]; dup {
			return nil, fmt.Errorf("sync payload: flag %q appears twice", f.Key)
		}
		byKey[f.Key] = f
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	var changed []string
	for k, v := range doc.Flags {
		if old, ok := p.raw[k]; !ok || !bytes.Equal(old, v) {
			changed = append(changed, k)
		}
	}
	for k := range p.raw {
		if _, ok := doc.Flags[k]; !ok {
			changed = append(changed, k)
		}
	}
	sort.Strings(changed)
	p.byKey, p.raw = byKey, doc.Flags
	if sc := resp.GetSyncContext(); sc != nil {
		p.enrichment, p.hasContext = sc.AsMap(), true
	}
	return changed, nil
}

func (p *inProcessProvider) events() *eventLog { return p.log }

func (p *inProcessProvider) close() {
	p.cancel()
	<-p.done
}

// useMetadata takes GetMetadata's static context when the stream carries none, and
// checks that it equals sync_context otherwise.
func (p *inProcessProvider) useMetadata(md map[string]any) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.hasContext {
		p.enrichment = md
		return nil
	}
	if d := cmp.Diff(p.enrichment, md); d != "" {
		return fmt.Errorf("differs from sync_context (-sync_context +GetMetadata):\n%s", d)
	}
	return nil
}

// Resolve evaluates the synced flag locally.
func (p *inProcessProvider) Resolve(_ context.Context, key string, typ eval.Type, evalCtx map[string]any) (steps.Outcome, error) {
	p.mu.RLock()
	f, ok := p.byKey[key]
	enrichment, synced := p.enrichment, p.byKey != nil
	p.mu.RUnlock()
	if !synced {
		return steps.Outcome{}, errors.New("no flag configuration received")
	}
	if !ok {
		return steps.FromResolution(eval.NotFound(key)), nil
	}
	ctx := make(map[string]any, len(evalCtx)+len(enrichment))
	maps.Copy(ctx, evalCtx)
	maps.Copy(ctx, enrichment)
	return steps.FromResolution(f.EvaluateAs(typ, ctx, nil)), nil
}
