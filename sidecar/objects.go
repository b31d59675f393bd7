package sidecar

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// Objects are the reads an admission makes. The webhook serves them from informer
// caches (with one live read for an object the cache does not hold yet);
// `flagpole debug inject` from the objects it was given. A missing object is an
// error for which apierrors.IsNotFound is true.
type Objects interface {
	FeatureFlagSource(ctx context.Context, r Ref) (*v1beta1.FeatureFlagSource, error)
	FeatureFlag(ctx context.Context, r Ref) (*v1beta1.FeatureFlag, error)
	InProcessConfiguration(ctx context.Context, r Ref) (*v1beta1.InProcessConfiguration, error)
	ServiceAccount(ctx context.Context, r Ref) (*corev1.ServiceAccount, error)
	// ConfigMapExists reports whether a ConfigMap the webhook created for a file
	// source exists (from the cache of the webhook's own ConfigMaps).
	ConfigMapExists(ns, name string) bool
	// Grant returns the FeatureFlags of namespace ns that the webhook's Role there
	// already grants to the service account sa, and whether its RoleBinding exists
	// (from the cache only: a miss costs a write that is a no-op, never a read).
	Grant(ns string, sa Ref) (flags []string, bound bool)
}

// Resources of the objects admissions read, for NotFound errors.
var (
	resourceFeatureFlagSources = schema.GroupResource{Group: v1beta1.GroupName, Resource: "featureflagsources"}
	resourceFeatureFlags       = schema.GroupResource{Group: v1beta1.GroupName, Resource: "featureflags"}
	resourceInProcessConfigs   = schema.GroupResource{Group: v1beta1.GroupName, Resource: "inprocessconfigurations"}
	resourceServiceAccounts    = schema.GroupResource{Resource: "serviceaccounts"}
)

// StaticObjects serves a fixed set of objects (for `flagpole debug inject` and
// tests).
type StaticObjects struct {
	Sources          []*v1beta1.FeatureFlagSource
	Flags            []*v1beta1.FeatureFlag
	InProcess        []*v1beta1.InProcessConfiguration
	ServiceAccounts  []*corev1.ServiceAccount
	Roles            []*rbacv1.Role
	RoleBindings     []*rbacv1.RoleBinding
	ConfigMaps       []*corev1.ConfigMap
	AllAccountsExist bool // ServiceAccount answers for any name (debug inject without ServiceAccounts)
}

func find[T interface {
	GetNamespace() string
	GetName() string
}](items []T, r Ref) (T, bool) {
	for _, it := range items {
		if it.GetNamespace() == r.Namespace && it.GetName() == r.Name {
			return it, true
		}
	}
	var zero T
	return zero, false
}

// FeatureFlagSource implements Objects.
func (s *StaticObjects) FeatureFlagSource(_ context.Context, r Ref) (*v1beta1.FeatureFlagSource, error) {
	if o, ok := find(s.Sources, r); ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(resourceFeatureFlagSources, r.String())
}

// FeatureFlag implements Objects.
func (s *StaticObjects) FeatureFlag(_ context.Context, r Ref) (*v1beta1.FeatureFlag, error) {
	if o, ok := find(s.Flags, r); ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(resourceFeatureFlags, r.String())
}

// InProcessConfiguration implements Objects.
func (s *StaticObjects) InProcessConfiguration(_ context.Context, r Ref) (*v1beta1.InProcessConfiguration, error) {
	if o, ok := find(s.InProcess, r); ok {
		return o, nil
	}
	return nil, apierrors.NewNotFound(resourceInProcessConfigs, r.String())
}

// ServiceAccount implements Objects.
func (s *StaticObjects) ServiceAccount(_ context.Context, r Ref) (*corev1.ServiceAccount, error) {
	if o, ok := find(s.ServiceAccounts, r); ok {
		return o, nil
	}
	if s.AllAccountsExist {
		sa := &corev1.ServiceAccount{}
		sa.Namespace, sa.Name = r.Namespace, r.Name
		return sa, nil
	}
	return nil, apierrors.NewNotFound(resourceServiceAccounts, r.Name)
}

// ConfigMapExists implements Objects.
func (s *StaticObjects) ConfigMapExists(ns, name string) bool {
	_, ok := find(s.ConfigMaps, Ref{ns, name})
	return ok
}

// Grant implements Objects from the given Roles and RoleBindings.
func (s *StaticObjects) Grant(ns string, sa Ref) ([]string, bool) {
	name := GrantName(sa)
	var flags []string
	if role, ok := find(s.Roles, Ref{ns, name}); ok {
		flags = grantedFlags(role)
	}
	_, bound := find(s.RoleBindings, Ref{ns, name})
	return flags, bound
}

// grantedFlags reads the FeatureFlag names a webhook-owned Role grants.
func grantedFlags(role *rbacv1.Role) []string {
	var out []string
	for _, rule := range role.Rules {
		if slices.Contains(rule.APIGroups, v1beta1.GroupName) && slices.Contains(rule.Resources, "featureflags") {
			out = append(out, rule.ResourceNames...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
