package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/kube"
)

// ErrNotFound is returned for a FeatureFlag that does not exist (and has no last
// flags kept for open streams).
var ErrNotFound = errors.New("FeatureFlag not found")

// Payload is a FeatureFlag's flag document as streams send it.
type Payload struct {
	// Doc is the flag document of spec.flagSpec (crd/flagdoc), the flag_configuration.
	Doc string
	// ResourceVersion is the FeatureFlag's version it was encoded from.
	ResourceVersion string
}

// Flags follows every FeatureFlag through one shared informer and fans each change of
// a followed FeatureFlag out to its subscriptions, encoded once.
type Flags struct {
	informer cache.SharedIndexInformer
	log      zerolog.Logger
	metrics  *Metrics

	mu     sync.Mutex // guards topics; taken before a topic's own lock
	topics map[Ref]*topic
}

// topic is one followed FeatureFlag: its current document and its subscriptions.
type topic struct {
	ref  Ref
	mu   sync.Mutex
	cur  *Payload // nil before the first document
	gone bool     // deleted: cur is its last document
	subs map[*Subscription]struct{}
}

// NewFlags builds the FeatureFlag informer over rc (a core.openfeature.dev/v1beta1
// REST client; the proxy needs list and watch on featureflags in every namespace).
// Run it with Run.
func NewFlags(rc rest.Interface, log zerolog.Logger, metrics *Metrics) (*Flags, error) {
	return newFlags(kube.NewInformer(rc, "featureflags", &v1beta1.FeatureFlag{}, &v1beta1.FeatureFlagList{}, kube.InformerOptions{Transform: slim}), log, metrics)
}

// newFlags follows the FeatureFlags of an informer (not started).
func newFlags(inf cache.SharedIndexInformer, log zerolog.Logger, metrics *Metrics) (*Flags, error) {
	f := &Flags{log: log, metrics: metrics, topics: map[Ref]*topic{}, informer: inf}
	on := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			f.refresh(Ref{Namespace: m.GetNamespace(), Name: m.GetName()})
		}
	}
	_, err := f.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: on, UpdateFunc: func(_, obj any) { on(obj) }, DeleteFunc: on,
	})
	return f, err
}

// cached is what the informer keeps of a FeatureFlag: its identity, version and
// flag document, encoded when the informer receives it — once per change, and
// much smaller than the decoded spec.
type cached struct {
	metav1.ObjectMeta
	doc string
	err error // why spec.flagSpec could not be encoded
}

// slim replaces a FeatureFlag by what the proxy serves of it (cached).
func slim(obj any) (any, error) {
	ff, ok := obj.(*v1beta1.FeatureFlag)
	if !ok {
		return obj, nil
	}
	c := &cached{ObjectMeta: metav1.ObjectMeta{Namespace: ff.Namespace, Name: ff.Name, ResourceVersion: ff.ResourceVersion}}
	doc, err := flagdoc.Encode(&ff.Spec.FlagSpec)
	c.doc, c.err = string(doc), err
	return c, nil
}

// Run follows the FeatureFlags until ctx ends.
func (f *Flags) Run(ctx context.Context) { f.informer.RunWithContext(ctx) }

// Synced reports whether the informer has listed the FeatureFlags once.
func (f *Flags) Synced() bool { return f.informer.HasSynced() }

// waitSynced waits for the first list, or ctx's end.
func (f *Flags) waitSynced(ctx context.Context) error {
	if f.informer.HasSynced() {
		return nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), f.informer.HasSynced) {
		return fmt.Errorf("the FeatureFlags were not listed yet: %w", context.Cause(ctx))
	}
	return nil
}

// Subscription receives a followed FeatureFlag's documents: the current one at
// once, then each change. A subscriber that falls behind gets the newest document
// only. Close it when done.
type Subscription struct {
	f  *Flags
	t  *topic
	ch chan *Payload
}

// C delivers the documents.
func (s *Subscription) C() <-chan *Payload { return s.ch }

// offer hands p to the subscriber, replacing a document it has not taken yet (the
// topic's lock is held, so offers to one subscription never interleave).
func (s *Subscription) offer(p *Payload) {
	select {
	case s.ch <- p:
		return
	default:
	}
	select {
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- p:
	default:
	}
}

// Close ends the subscription; the last one of a FeatureFlag stops following it.
func (s *Subscription) Close() {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if _, ok := s.t.subs[s]; !ok {
		return
	}
	delete(s.t.subs, s)
	if len(s.t.subs) == 0 && f.topics[s.t.ref] == s.t {
		delete(f.topics, s.t.ref)
		f.metrics.followed(-1)
	}
}

// Subscribe follows ref. It waits for the informer's first list (bounded by ctx)
// and returns ErrNotFound when the FeatureFlag does not exist.
func (f *Flags) Subscribe(ctx context.Context, ref Ref) (*Subscription, error) {
	if err := f.waitSynced(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.topics[ref]
	fresh := t == nil
	if fresh {
		t = &topic{ref: ref, subs: map[*Subscription]struct{}{}}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		f.load(t)
	}
	if t.cur == nil {
		return nil, ErrNotFound
	}
	if fresh {
		f.topics[ref] = t
		f.metrics.followed(1)
	}
	s := &Subscription{f: f, t: t, ch: make(chan *Payload, 1)}
	t.subs[s] = struct{}{}
	s.ch <- t.cur
	return s, nil
}

// Current returns ref's document now (FetchAllFlags): a followed FeatureFlag's
// (the last one of a deleted FeatureFlag), else encoded from the informer's cache.
func (f *Flags) Current(ctx context.Context, ref Ref) (*Payload, error) {
	if err := f.waitSynced(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	t := f.topics[ref]
	f.mu.Unlock()
	if t != nil {
		t.mu.Lock()
		p := t.cur
		t.mu.Unlock()
		if p != nil {
			return p, nil
		}
	}
	p, err := f.encode(ref)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, ErrNotFound
	}
	return p, nil
}

// load sets a topic's document from the informer's cache (t.mu held).
func (f *Flags) load(t *topic) {
	p, err := f.encode(t.ref)
	if err != nil {
		f.log.Error().Err(err).Str("featureflag", t.ref.String()).Msg("FeatureFlag not served")
		return
	}
	t.cur = p
}

// encode returns ref's document from the informer's cache, nil when it does not exist.
func (f *Flags) encode(ref Ref) (*Payload, error) {
	obj, exists, err := f.informer.GetIndexer().GetByKey(ref.String())
	if err != nil || !exists {
		return nil, err
	}
	c, ok := obj.(*cached)
	if !ok {
		return nil, fmt.Errorf("FeatureFlag %s: unexpected %T in the cache", ref, obj)
	}
	if c.err != nil {
		return nil, fmt.Errorf("FeatureFlag %s: %w", ref, c.err)
	}
	return &Payload{Doc: c.doc, ResourceVersion: c.ResourceVersion}, nil
}

// refresh brings a followed FeatureFlag's document up to date with the informer's
// cache after a notification. It reads the cache rather than the notification's
// object, so a subscription that loaded a newer version first never gets an older
// one after it; a version already served, or a change that leaves the document as
// it was (labels, status), sends nothing.
func (f *Flags) refresh(ref Ref) {
	f.mu.Lock()
	t := f.topics[ref]
	f.mu.Unlock()
	if t == nil {
		return // nobody follows it: nothing to encode
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	obj, exists, err := f.informer.GetIndexer().GetByKey(ref.String())
	if err != nil {
		return
	}
	if !exists {
		if t.cur != nil && !t.gone {
			t.gone = true
			f.log.Warn().Str("featureflag", ref.String()).Int("streams", len(t.subs)).
				Msg("FeatureFlag deleted; its streams keep its last flags until it is re-created")
		}
		return
	}
	if c, ok := obj.(*cached); ok && t.cur != nil && !t.gone && c.ResourceVersion == t.cur.ResourceVersion {
		return
	}
	start := time.Now()
	p, err := f.encode(ref) // encoded already: this reads the cache
	if err != nil || p == nil {
		if err != nil {
			f.log.Error().Err(err).Str("featureflag", ref.String()).Msg("FeatureFlag change not served; its streams keep the previous flags")
		}
		return
	}
	t.gone = false
	if t.cur != nil && t.cur.Doc == p.Doc { // metadata or status only
		t.cur = p
		return
	}
	t.cur = p
	for s := range t.subs {
		s.offer(p)
	}
	f.metrics.changed(len(t.subs))
	f.log.Debug().Str("featureflag", ref.String()).Str("resourceVersion", p.ResourceVersion).Int("streams", len(t.subs)).
		Dur("fan_out", time.Since(start)).Msg("FeatureFlag changed")
}
