package kube

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// InformerOptions select what an informer lists and watches.
type InformerOptions struct {
	// Namespace limits the informer to one namespace; empty: all namespaces.
	Namespace string
	// LabelSelector and FieldSelector filter on the API server.
	LabelSelector, FieldSelector string
	// Transform, when set, replaces each object before it is cached (strip what the
	// cache does not need). Managed fields are always dropped.
	Transform cache.TransformFunc
}

// NewInformer returns an informer (not started) of one resource (plural, e.g.
// "deployments") through a REST client of its group version: obj is an example of
// the kind and list of its list kind. It never resyncs: watches keep it current.
// Objects are indexed by namespace.
func NewInformer(rc rest.Interface, resource string, obj, list runtime.Object, o InformerOptions) cache.SharedIndexInformer {
	params := func(opts *metav1.ListOptions) {
		opts.LabelSelector, opts.FieldSelector = o.LabelSelector, o.FieldSelector
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			params(&opts)
			out := list.DeepCopyObject()
			err := rc.Get().Namespace(o.Namespace).Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(out)
			return out, err
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			params(&opts)
			opts.Watch = true
			return rc.Get().Namespace(o.Namespace).Resource(resource).VersionedParams(&opts, metav1.ParameterCodec).Watch(ctx)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	transform := func(in any) (any, error) {
		if m, ok := in.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		if o.Transform != nil {
			return o.Transform(in)
		}
		return in, nil
	}
	_ = inf.SetTransform(transform) // only fails once the informer runs
	return inf
}
