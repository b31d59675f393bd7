package kubesource

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/generated/clientset/versioned"
)

// clientset adapts the generated clientset (here its fake) to Client.
type clientset struct{ cs versioned.Interface }

func (c clientset) List(ctx context.Context, ns string, opts metav1.ListOptions) (*v1beta1.FeatureFlagList, error) {
	return c.cs.CoreV1beta1().FeatureFlags(ns).List(ctx, opts)
}

func (c clientset) Watch(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
	return c.cs.CoreV1beta1().FeatureFlags(ns).Watch(ctx, opts)
}
