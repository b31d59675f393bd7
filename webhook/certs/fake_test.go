package certs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// fakeAPI is an in-memory API server for the objects interface: resourceVersions,
// AlreadyExists, Conflict and NotFound as the real one, field selectors on
// metadata.name, and watches from a resourceVersion (events are replayed from a
// history, so nothing between a list and its watch is lost).
type fakeAPI struct {
	mu       sync.Mutex
	rv       int
	objs     map[string]runtime.Object // resource/namespace/name
	history  []fakeEvent
	watchers map[*fakeWatcher]bool
	// react, when set, runs before every request (outside the lock); an error is
	// returned instead of serving it.
	react func(verb, resource, name string) error
	calls []string // "verb resource name", in order
}

type fakeEvent struct {
	rv                 int
	resource, ns, name string
	typ                watch.EventType
	obj                runtime.Object
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{objs: map[string]runtime.Object{}, watchers: map[*fakeWatcher]bool{}}
}

// clients returns the fake as the package's clients, with Secrets in namespace.
func (a *fakeAPI) clients(namespace string) clients {
	return clients{
		secrets: &fakeObjects[*corev1.Secret]{api: a, gr: schema.GroupResource{Resource: "secrets"}, namespace: namespace,
			newList: func() runtime.Object { return &corev1.SecretList{} }},
		mutating: &fakeObjects[*admissionregistrationv1.MutatingWebhookConfiguration]{api: a,
			gr:      schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"},
			newList: func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} }},
		validating: &fakeObjects[*admissionregistrationv1.ValidatingWebhookConfiguration]{api: a,
			gr:      schema.GroupResource{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"},
			newList: func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} }},
	}
}

// count returns how many calls of verb on resource were made (served or not).
//
//nolint:unparam // the fake serves Secrets and webhook configurations; the tests count Secret calls so far
func (a *fakeAPI) count(verb, resource string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if v, r, _ := cutCall(c); v == verb && r == resource {
			n++
		}
	}
	return n
}

func cutCall(c string) (verb, resource, name string) {
	f := append(strings.Fields(c), "", "", "")
	return f[0], f[1], f[2]
}

// request records the call and runs react.
func (a *fakeAPI) request(verb, resource, name string) error {
	a.mu.Lock()
	a.calls = append(a.calls, verb+" "+resource+" "+name)
	react := a.react
	a.mu.Unlock()
	if react != nil {
		return react(verb, resource, name)
	}
	return nil
}

// record stores an event (with a.mu held) and delivers it to matching watchers.
func (a *fakeAPI) record(resource, ns, name string, typ watch.EventType, obj runtime.Object) {
	e := fakeEvent{rv: a.rv, resource: resource, ns: ns, name: name, typ: typ, obj: obj.DeepCopyObject()}
	a.history = append(a.history, e)
	for w := range a.watchers {
		if w.matches(e) {
			w.push(watch.Event{Type: typ, Object: e.obj.DeepCopyObject()})
		}
	}
}

// fakeObjects is one resource of the fake.
type fakeObjects[T runtime.Object] struct {
	api       *fakeAPI
	gr        schema.GroupResource
	namespace string
	newList   func() runtime.Object
}

func (f *fakeObjects[T]) key(name string) string {
	return f.gr.String() + "/" + f.namespace + "/" + name
}

func (f *fakeObjects[T]) Create(_ context.Context, obj T) (T, error) {
	var zero T
	m, _ := meta.Accessor(obj)
	if err := f.api.request("create", f.gr.Resource, m.GetName()); err != nil {
		return zero, err
	}
	return f.put(obj, true, false)
}

func (f *fakeObjects[T]) Update(_ context.Context, obj T) (T, error) {
	var zero T
	m, _ := meta.Accessor(obj)
	if err := f.api.request("update", f.gr.Resource, m.GetName()); err != nil {
		return zero, err
	}
	return f.put(obj, false, true)
}

// put stores obj: create (must not exist), update (must exist, with the current
// resourceVersion unless empty), or neither flag for a test's unconditional write.
func (f *fakeObjects[T]) put(obj T, create, update bool) (T, error) {
	var zero T
	a := f.api
	a.mu.Lock()
	defer a.mu.Unlock()
	obj = obj.DeepCopyObject().(T)
	m, _ := meta.Accessor(obj)
	if f.namespace != "" {
		m.SetNamespace(f.namespace)
	}
	old, exists := a.objs[f.key(m.GetName())]
	switch {
	case create && exists:
		return zero, apierrors.NewAlreadyExists(f.gr, m.GetName())
	case update && !exists:
		return zero, apierrors.NewNotFound(f.gr, m.GetName())
	case update && m.GetResourceVersion() != "":
		om, _ := meta.Accessor(old)
		if om.GetResourceVersion() != m.GetResourceVersion() {
			return zero, apierrors.NewConflict(f.gr, m.GetName(), errors.New("the object has been modified; please apply your changes to the latest version and try again"))
		}
	}
	a.rv++
	m.SetResourceVersion(strconv.Itoa(a.rv))
	typ := watch.Modified
	if !exists {
		typ = watch.Added
		m.SetUID(types.UID("uid-" + strconv.Itoa(a.rv)))
	}
	a.objs[f.key(m.GetName())] = obj
	a.record(f.gr.Resource, f.namespace, m.GetName(), typ, obj)
	return obj.DeepCopyObject().(T), nil
}

// set writes obj unconditionally (a test's kubectl apply or GitOps reset).
func (f *fakeObjects[T]) set(obj T) T {
	out, err := f.put(obj, false, false)
	if err != nil {
		panic(err)
	}
	return out
}

// delete removes name (a test's kubectl delete).
func (f *fakeObjects[T]) delete(name string) {
	a := f.api
	a.mu.Lock()
	defer a.mu.Unlock()
	obj, ok := a.objs[f.key(name)]
	if !ok {
		return
	}
	delete(a.objs, f.key(name))
	a.rv++
	a.record(f.gr.Resource, f.namespace, name, watch.Deleted, obj)
}

// get reads name without recording a call (zero if missing).
func (f *fakeObjects[T]) get(name string) (T, bool) {
	var zero T
	f.api.mu.Lock()
	defer f.api.mu.Unlock()
	obj, ok := f.api.objs[f.key(name)]
	if !ok {
		return zero, false
	}
	return obj.DeepCopyObject().(T), true
}

func selector(opts metav1.ListOptions) (fields.Selector, error) {
	if opts.FieldSelector == "" {
		return fields.Everything(), nil
	}
	return fields.ParseSelector(opts.FieldSelector)
}

func (f *fakeObjects[T]) List(_ context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	sel, err := selector(opts)
	if err != nil {
		return nil, err
	}
	if err := f.api.request("list", f.gr.Resource, sel.String()); err != nil {
		return nil, err
	}
	a := f.api
	a.mu.Lock()
	defer a.mu.Unlock()
	var items []runtime.Object
	for k, obj := range a.objs {
		m, _ := meta.Accessor(obj)
		if k == f.key(m.GetName()) && sel.Matches(fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()}) {
			items = append(items, obj.DeepCopyObject())
		}
	}
	list := f.newList()
	if err := meta.SetList(list, items); err != nil {
		return nil, err
	}
	lm, _ := meta.ListAccessor(list)
	lm.SetResourceVersion(strconv.Itoa(a.rv))
	return list, nil
}

func (f *fakeObjects[T]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	sel, err := selector(opts)
	if err != nil {
		return nil, err
	}
	if err := f.api.request("watch", f.gr.Resource, sel.String()); err != nil {
		return nil, err
	}
	a := f.api
	a.mu.Lock()
	defer a.mu.Unlock()
	from := a.rv
	if opts.ResourceVersion != "" && opts.ResourceVersion != "0" {
		if from, err = strconv.Atoi(opts.ResourceVersion); err != nil {
			return nil, apierrors.NewBadRequest("resourceVersion " + opts.ResourceVersion)
		}
	}
	w := &fakeWatcher{api: a, resource: f.gr.Resource, ns: f.namespace, sel: sel,
		ch: make(chan watch.Event), wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, e := range a.history {
		if e.rv > from && w.matches(e) {
			w.push(watch.Event{Type: e.typ, Object: e.obj.DeepCopyObject()})
		}
	}
	a.watchers[w] = true
	go w.pump(ctx)
	return w, nil
}

// fakeWatcher is one watch: events queue without bound and are sent in order.
type fakeWatcher struct {
	api          *fakeAPI
	resource, ns string
	sel          fields.Selector
	ch           chan watch.Event
	mu           sync.Mutex
	queue        []watch.Event
	wake, done   chan struct{}
	once         sync.Once
}

func (w *fakeWatcher) matches(e fakeEvent) bool {
	return e.resource == w.resource && e.ns == w.ns && w.sel.Matches(fields.Set{"metadata.name": e.name, "metadata.namespace": e.ns})
}

func (w *fakeWatcher) push(e watch.Event) {
	w.mu.Lock()
	w.queue = append(w.queue, e)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *fakeWatcher) pump(ctx context.Context) {
	defer close(w.ch)
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, e := range q {
			select {
			case w.ch <- e:
			case <-w.done:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w.wake:
		case <-w.done:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (w *fakeWatcher) Stop() {
	w.once.Do(func() {
		close(w.done)
		w.api.mu.Lock()
		delete(w.api.watchers, w)
		w.api.mu.Unlock()
	})
}

func (w *fakeWatcher) ResultChan() <-chan watch.Event { return w.ch }
