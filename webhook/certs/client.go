package certs

import (
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/kube"
)

// objects is the part of one resource's API this package uses, in one namespace
// (or cluster-wide for cluster-scoped resources). restObjects implements it over a
// REST client; the tests use an in-memory fake. It has no Get: every read of the
// one object a name designates is a list or watch with the field selector
// metadata.name=<name> (see read), so the install grants list, watch and update
// on that name and nothing else (docs/webhook.md, "RBAC for this part").
type objects[T runtime.Object] interface {
	Create(ctx context.Context, obj T) (T, error)
	Update(ctx context.Context, obj T) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// clients are the APIs the self-managed mode uses.
type clients struct {
	secrets    objects[*corev1.Secret]
	mutating   objects[*admissionregistrationv1.MutatingWebhookConfiguration]
	validating objects[*admissionregistrationv1.ValidatingWebhookConfiguration]
}

// restClients builds the clients over REST clients whose schemes hold only core/v1
// and admissionregistration/v1 (no clientset: docs/architecture.md, "One lean
// binary").
func restClients(cfg *rest.Config, namespace string) (clients, error) {
	core, err := kube.RESTClient(cfg, corev1.SchemeGroupVersion, corev1.AddToScheme)
	if err != nil {
		return clients{}, err
	}
	adm, err := kube.RESTClient(cfg, admissionregistrationv1.SchemeGroupVersion, admissionregistrationv1.AddToScheme)
	if err != nil {
		return clients{}, err
	}
	return clients{
		secrets: &restObjects[*corev1.Secret]{rc: core, namespace: namespace, resource: "secrets",
			newObj: func() *corev1.Secret { return &corev1.Secret{} }, newList: func() runtime.Object { return &corev1.SecretList{} }},
		mutating: &restObjects[*admissionregistrationv1.MutatingWebhookConfiguration]{rc: adm, resource: "mutatingwebhookconfigurations",
			newObj: func() *admissionregistrationv1.MutatingWebhookConfiguration {
				return &admissionregistrationv1.MutatingWebhookConfiguration{}
			},
			newList: func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} }},
		validating: &restObjects[*admissionregistrationv1.ValidatingWebhookConfiguration]{rc: adm, resource: "validatingwebhookconfigurations",
			newObj: func() *admissionregistrationv1.ValidatingWebhookConfiguration {
				return &admissionregistrationv1.ValidatingWebhookConfiguration{}
			},
			newList: func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} }},
	}, nil
}

// restObjects implements objects with a REST client; namespace is empty for
// cluster-scoped resources (client-go refuses an empty namespace with a name).
type restObjects[T runtime.Object] struct {
	rc        rest.Interface
	namespace string
	resource  string
	newObj    func() T
	newList   func() runtime.Object
}

func (c *restObjects[T]) Create(ctx context.Context, obj T) (T, error) {
	out := c.newObj()
	err := c.rc.Post().NamespaceIfScoped(c.namespace, c.namespace != "").Resource(c.resource).Body(obj).Do(ctx).Into(out)
	return out, err
}

func (c *restObjects[T]) Update(ctx context.Context, obj T) (T, error) {
	out := c.newObj()
	name := ""
	if m, ok := runtime.Object(obj).(metav1.Object); ok {
		name = m.GetName()
	}
	err := c.rc.Put().NamespaceIfScoped(c.namespace, c.namespace != "").Resource(c.resource).Name(name).Body(obj).Do(ctx).Into(out)
	return out, err
}

func (c *restObjects[T]) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	out := c.newList()
	err := c.rc.Get().NamespaceIfScoped(c.namespace, c.namespace != "").Resource(c.resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
	return out, err
}

func (c *restObjects[T]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return c.rc.Get().NamespaceIfScoped(c.namespace, c.namespace != "").Resource(c.resource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
}

// newInformer returns an informer on the one object name (field selector
// metadata.name=name, so a Role restricted by resourceNames is enough), with
// managed fields stripped. onChange is called on every notification; onError on
// list and watch failures other than the normal end of a watch.
func newInformer[T runtime.Object](api objects[T], name string, example T, onChange func(), onError func(error)) (cache.SharedIndexInformer, error) {
	selector := nameSelector(name)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return api.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			w, err := api.Watch(ctx, opts)
			if err != nil {
				// client-go retries a failed watch without calling the watch error
				// handler; report it here.
				onError(err)
			}
			return w, err
		},
	}
	inf := cache.NewSharedIndexInformer(lw, example, 0, cache.Indexers{})
	if err := inf.SetTransform(stripManagedFields); err != nil {
		return nil, err
	}
	if err := inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) { onError(err) }); err != nil {
		return nil, err
	}
	kick := func(any) { onChange() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, obj any) { kick(obj) },
		DeleteFunc: kick,
	}); err != nil {
		return nil, err
	}
	return inf, nil
}

// stripManagedFields drops server-side apply bookkeeping before caching.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// cached returns the object name from the informer's cache once it has synced, and
// from the API server before (a live read: at start-up, or while list and watch
// fail). A missing object is (zero, false, nil).
func cached[T runtime.Object](ctx context.Context, inf cache.SharedIndexInformer, api objects[T], key, name string) (T, bool, error) {
	var zero T
	if inf != nil && inf.HasSynced() {
		obj, exists, err := inf.GetIndexer().GetByKey(key)
		if err != nil || !exists {
			return zero, false, err
		}
		t, ok := obj.(T)
		if !ok {
			return zero, false, fmt.Errorf("cache holds a %T for %s", obj, key)
		}
		return t, true, nil
	}
	return read(ctx, api, name)
}

// nameSelector selects the one object name.
func nameSelector(name string) string {
	return fields.OneTermEqualSelector("metadata.name", name).String()
}

// read returns the object name from the API server: a list with the field
// selector metadata.name=<name>, which a rule restricted by resourceNames allows
// for list (a get would need a verb of its own). A missing object is
// (zero, false, nil).
func read[T runtime.Object](ctx context.Context, api objects[T], name string) (T, bool, error) {
	var zero T
	list, err := api.List(ctx, metav1.ListOptions{FieldSelector: nameSelector(name)})
	if err != nil {
		return zero, false, err
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return zero, false, err
	}
	switch len(items) {
	case 0:
		return zero, false, nil
	case 1:
		t, ok := items[0].(T)
		if !ok {
			return zero, false, fmt.Errorf("the list of %s holds a %T", name, items[0])
		}
		return t, true, nil
	}
	return zero, false, fmt.Errorf("the list of %s selected by name holds %d objects", name, len(items))
}
