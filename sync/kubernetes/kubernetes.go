// Package kubesource is the kubernetes flag source (flagd's `core.openfeature.dev/<ns>/<name>`,
// provider kubernetes): it serves the `spec.flagSpec` of one FeatureFlag.
//
// It runs an informer on exactly that object: list
// and watch in the object's namespace with the field selector `metadata.name=<name>`,
// so the API server sends nothing else, and a Role granting list and watch on
// featureflags.core.openfeature.dev restricted by resourceNames to that one name is
// enough (Kubernetes authorizes a list or watch against resourceNames when it
// carries that field selector; no get is made). The informer reconnects after API server restarts
// and re-lists when its watch expires.
//
// What it sends: the flag document of spec.flagSpec (crd/flagdoc: flags,
// $evaluators, metadata, as flagd) whenever those bytes change; the store validates it. Errors are sent as
// updates naming the object and what is missing: a permission (403), credentials
// (401), the CRD (404 on the resource), the object itself (not found once the
// informer has synced), or the API server. A deleted FeatureFlag is logged and
// reported as an error, and its last flags stay served (flagd only logs it).
// Readiness is the store's: false until the first payload.
package kubesource

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/kube"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// resource names the watched API in messages.
const resource = "featureflags.core.openfeature.dev"

// Source follows one FeatureFlag.
type Source struct {
	source    string // "ns/name", the source name
	namespace string
	name      string
	client    Client
	log       zerolog.Logger
	// onWatch, when set (tests), is called after every watch the informer opens.
	onWatch func()
	// onInformer, when set (tests), receives the informer Run builds, before it runs.
	onInformer func(cache.SharedIndexInformer)
}

// Client lists and watches FeatureFlags in a namespace. ClientFromEnvironment returns
// one over a plain REST client; the generated clientset satisfies it with a two-method
// adapter (the tests use its fake). The binary does not use the generated clientset
// because it imports client-go's scheme of every built-in API group, which costs about
// 15 MiB of resident memory and 10 ms of start-up.
type Client interface {
	List(ctx context.Context, namespace string, opts metav1.ListOptions) (*v1beta1.FeatureFlagList, error)
	Watch(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
}

// New returns a source for cfg.URI = "<namespace>/<name>" (the `core.openfeature.dev/`
// prefix already stripped, as flagsync.ParseURI does), reading through client.
func New(cfg flagsync.SourceConfig, log zerolog.Logger, client Client) (*Source, error) {
	ns, name, ok := strings.Cut(cfg.URI, "/")
	if !ok || strings.Contains(name, "/") {
		return nil, fmt.Errorf("kubernetes source %q: must be <namespace>/<name>", cfg.URI)
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes source %q: namespace %q: %s", cfg.URI, ns, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("kubernetes source %q: name %q: %s", cfg.URI, name, strings.Join(errs, "; "))
	}
	if client == nil {
		return nil, fmt.Errorf("kubernetes source %q: no Kubernetes client", cfg.URI)
	}
	return &Source{source: cfg.Name(), namespace: ns, name: name, client: client,
		log: log.With().Str("source", cfg.Name()).Logger()}, nil
}

// Name is "<namespace>/<name>", as flagd names the source.
func (s *Source) Name() string { return s.source }

// ClientFromEnvironment builds a client the way flagd finds its configuration (see
// kube.Config: KUBECONFIG, else the in-cluster service account, else ~/.kube/config).
func ClientFromEnvironment() (Client, error) {
	cfg, err := kube.Config(kube.Options{UserAgent: "flagpole"})
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return NewRESTClient(cfg)
}

// NewRESTClient returns a Client for the core.openfeature.dev/v1beta1 API over a REST
// client whose scheme knows only FeatureFlags.
func NewRESTClient(cfg *rest.Config) (Client, error) {
	rc, err := kube.RESTClient(cfg, v1beta1.SchemeGroupVersion, v1beta1.AddToScheme)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return restClient{rc}, nil
}

// restClient lists and watches featureflags with a REST client.
type restClient struct{ rc rest.Interface }

func (c restClient) List(ctx context.Context, namespace string, opts metav1.ListOptions) (*v1beta1.FeatureFlagList, error) {
	out := &v1beta1.FeatureFlagList{}
	err := c.rc.Get().Namespace(namespace).Resource("featureflags").
		VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
	return out, err
}

func (c restClient) Watch(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().Namespace(namespace).Resource("featureflags").
		VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// Run follows the FeatureFlag until ctx ends. It always returns nil: every problem
// is reported as an update and retried by the informer.
func (s *Source) Run(ctx context.Context, out chan<- flagsync.Update) error {
	r := &runner{Source: s, ctx: ctx, out: out, key: s.namespace + "/" + s.name, signals: make(chan error, 16)}
	selector := fields.OneTermEqualSelector("metadata.name", s.name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return s.client.List(ctx, s.namespace, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			w, err := s.client.Watch(ctx, s.namespace, opts)
			if err != nil {
				// client-go retries a failed watch without calling the watch error
				// handler (an API server that is down is "retriable"), so report it
				// here; the next successful watch clears it.
				r.watchError(err)
				return w, err
			}
			// The list before this watch is in the cache: re-evaluate, which also
			// clears a reported error once the API server answers again.
			r.signal(nil)
			if s.onWatch != nil {
				s.onWatch()
			}
			return w, err
		},
	}
	r.informer = cache.NewSharedIndexInformer(lw, &v1beta1.FeatureFlag{}, 0, cache.Indexers{})
	if err := r.informer.SetTransform(stripManagedFields); err != nil {
		return fmt.Errorf("kubernetes source %s: %w", s.source, err)
	}
	if err := r.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		r.watchError(err)
	}); err != nil {
		return fmt.Errorf("kubernetes source %s: %w", s.source, err)
	}
	kick := func(obj any) {
		if r.ours(obj) {
			r.signal(nil)
		}
	}
	reg, err := r.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, obj any) { kick(obj) },
		DeleteFunc: kick,
	})
	if err != nil {
		return fmt.Errorf("kubernetes source %s: %w", s.source, err)
	}
	r.synced = reg.HasSynced
	if s.onInformer != nil {
		s.onInformer(r.informer)
	}

	var wg sync.WaitGroup
	wg.Go(func() { r.informer.RunWithContext(ctx) })
	wg.Go(func() {
		// Evaluate once the handler has seen the initial list (not found is only
		// decided then).
		if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
			r.signal(nil)
		}
	})
	defer wg.Wait()
	s.log.Info().Str("namespace", s.namespace).Str("name", s.name).Msg("watching FeatureFlag")
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-r.signals:
			if err != nil {
				r.fail(err)
				continue
			}
			r.evaluate()
		}
	}
}

// runner is the state of one Run; only Run's goroutine touches the delivery state.
type runner struct {
	*Source
	ctx      context.Context
	out      chan<- flagsync.Update
	key      string
	informer cache.SharedIndexInformer
	synced   func() bool
	// signals carries, in order, re-evaluation requests (nil) and list/watch errors:
	// one channel, so that an error and the recovery after it are seen in order.
	signals chan error

	seen     bool // the object was found at least once
	dataSent bool // the last update sent was data
	lastSum  [sha256.Size]byte
	lastErr  string
}

// signal queues a re-evaluation (nil) or an error for Run's goroutine.
func (r *runner) signal(err error) {
	select {
	case r.signals <- err:
	case <-r.ctx.Done():
	}
}

// ours reports whether an informer notification is about the followed object (the
// field selector already ensures it against a real API server).
func (r *runner) ours(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return d.Key == r.key
	}
	m, ok := obj.(metav1.Object)
	return ok && m.GetNamespace() == r.namespace && m.GetName() == r.name
}

// evaluate sends the object's flags if they changed (or an error was reported since),
// or says why there are none.
func (r *runner) evaluate() {
	if !r.synced() {
		return // the initial list is not processed yet; a signal follows when it is
	}
	obj, exists, err := r.informer.GetIndexer().GetByKey(r.key)
	if err != nil {
		r.fail(fmt.Errorf("reading FeatureFlag %s from the cache: %w", r.key, err))
		return
	}
	ff, ok := obj.(*v1beta1.FeatureFlag)
	if !exists || !ok {
		if r.seen {
			if r.dataSent {
				r.log.Warn().Msg("FeatureFlag deleted; keeping its last flags until it is re-created")
			}
			r.fail(fmt.Errorf("FeatureFlag %s was deleted (serving its last flags until it is re-created)", r.key))
			return
		}
		r.fail(fmt.Errorf("FeatureFlag %s not found in namespace %s (waiting for it to be created)", r.name, r.namespace))
		return
	}
	r.seen = true
	data, err := flagdoc.Encode(&ff.Spec.FlagSpec)
	if err != nil {
		r.fail(fmt.Errorf("FeatureFlag %s: %w", r.key, err))
		return
	}
	sum := sha256.Sum256(data)
	if r.dataSent && sum == r.lastSum {
		return
	}
	r.log.Debug().Str("resourceVersion", ff.ResourceVersion).Int64("generation", ff.Generation).Msg("FeatureFlag changed")
	r.send(flagsync.Update{Source: r.source, Data: data})
	r.lastSum, r.dataSent, r.lastErr = sum, true, ""
}

// fail sends an error update, once per distinct error.
func (r *runner) fail(err error) {
	msg := fmt.Sprintf("kubernetes source %s: %v", r.source, err)
	if r.dataSent || msg != r.lastErr {
		r.send(flagsync.Update{Source: r.source, Err: errors.New(msg)})
	}
	r.lastErr, r.dataSent = msg, false
}

func (r *runner) send(u flagsync.Update) {
	select {
	case r.out <- u:
	case <-r.ctx.Done():
	}
}

// watchError receives the informer's list and watch failures (it retries them with
// backoff). Normal watch ends are ignored; the rest is reported with what to fix.
func (r *runner) watchError(err error) {
	switch {
	case r.ctx.Err() != nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		r.log.Debug().Err(err).Msg("FeatureFlag watch ended; re-listing")
		return
	}
	r.signal(explain(r.key, r.namespace, r.name, err))
}

// stripManagedFields drops what the cache does not need (server-side apply
// bookkeeping can be larger than the flags).
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// explain turns a list or watch failure into an error that says what to fix.
func explain(key, namespace, name string, err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("permission denied reading FeatureFlag %s: the service account needs list and watch on %s in namespace %s (resourceNames may restrict them to [%s]): %w",
			key, resource, namespace, name, err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server rejected the credentials (expired or invalid token or kubeconfig) reading FeatureFlag %s: %w", key, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the API server does not serve %s/v1beta1 (is the FeatureFlag CRD installed?) reading FeatureFlag %s: %w", resource, key, err)
	}
	return fmt.Errorf("cannot list or watch FeatureFlag %s (retrying): %w", key, err)
}
