package sidecar

import (
	"context"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Effect is a write that rendering needs, described as data so that tests and
// `flagpole debug inject` can list it; an EffectApplier performs it.
type Effect interface {
	// Describe says what the effect writes, for logs and debug inject.
	Describe() string
}

// EffectApplier performs effects. It must be idempotent: an admission retried by
// the API server applies the same effects again.
type EffectApplier interface {
	Apply(ctx context.Context, e Effect) error
}

// GrantFlags gives a service account read access (get, list, watch) to exactly the
// named FeatureFlags of one namespace: a Role whose single rule lists them by
// resourceNames and a RoleBinding to the account, both named by grantName and
// labelled as the webhook's. Flags holds every flag the Role must list (what it
// already grants plus what the admission needs); applying it never narrows a grant.
type GrantFlags struct {
	Namespace      string
	ServiceAccount Ref
	Flags          []string
}

// Describe implements Effect.
func (g GrantFlags) Describe() string {
	return fmt.Sprintf("grant ServiceAccount %s get/list/watch on FeatureFlags %s in namespace %s (Role and RoleBinding %s)",
		g.ServiceAccount, strings.Join(g.Flags, ","), g.Namespace, GrantName(g.ServiceAccount))
}

// EnsureConfigMap creates the ConfigMap a file source mounts, holding a
// FeatureFlag's flag document, unless it exists (the controller keeps its content
// in sync with the FeatureFlag afterwards).
type EnsureConfigMap struct {
	Namespace, Name string
	FeatureFlag     Ref
	Key             string
	Data            string
	Owners          []metav1.OwnerReference
}

// Describe implements Effect.
func (c EnsureConfigMap) Describe() string {
	return fmt.Sprintf("create ConfigMap %s/%s with the flags of FeatureFlag %s (key %s), unless it exists", c.Namespace, c.Name, c.FeatureFlag, c.Key)
}

// EnsureFlagdProxyCA creates the ConfigMap FlagdProxyCAConfigMap of a namespace,
// holding the flagd-proxy's CA bundle, unless it exists (the flagd-proxy
// controller keeps it current afterwards). Bundle is empty when not known (`debug
// inject`).
type EnsureFlagdProxyCA struct {
	Namespace, Bundle string
}

// Describe implements Effect.
func (c EnsureFlagdProxyCA) Describe() string {
	return fmt.Sprintf("create ConfigMap %s/%s with the flagd-proxy's CA bundle (key %s), unless it exists", c.Namespace, FlagdProxyCAConfigMap, FlagdProxyCAKey)
}

// EnsureSecret creates an immutable Secret holding a credential the sidecar reads
// through an environment variable, so that the value never appears in the pod
// spec. Its name is derived from its content: a changed credential is a new
// Secret, and creating an existing one is a no-op.
type EnsureSecret struct {
	Namespace, Name string
	Key             string
	Value           string // never logged: Describe omits it
	Owners          []metav1.OwnerReference
}

// Describe implements Effect.
func (s EnsureSecret) Describe() string {
	return fmt.Sprintf("create immutable Secret %s/%s (key %s), unless it exists", s.Namespace, s.Name, s.Key)
}

// GrantName names the Role and RoleBinding that grant a service account its
// FeatureFlags: "flagpole-featureflags-<sa namespace>.<sa name>" (a namespace has
// no dots, so the name is unambiguous), shortened with a hash when that is longer
// than a Role name may be.
func GrantName(sa Ref) string {
	return boundedName("flagpole-featureflags-"+sa.Namespace+"."+sa.Name, 253, sa.String())
}

// union returns the sorted union of two name lists.
func union(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
