package sidecar

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/kube"
)

// Labels on the objects the webhook writes: the informers select its own objects by
// them, and the controller cleans them up by them.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "flagpole"
	// AnnotationGrantFor names the service account ("namespace/name") a grant Role
	// and RoleBinding are for.
	AnnotationGrantFor = "flagpole.dev/grant-for"
)

var managedSelector = LabelManagedBy + "=" + ManagedBy

// Cluster is the webhook's view of the cluster: informer caches of the objects
// admissions read (FeatureFlagSources, FeatureFlags, InProcessConfigurations,
// ServiceAccounts, and the Roles, RoleBindings and ConfigMaps the webhook itself
// created) — never of pods, so memory does not grow with them — and the writes of
// admission side effects. An object not yet in a cache gets one live read before it
// is declared missing.
type Cluster struct {
	core, rbac, flags rest.Interface
	log               zerolog.Logger

	// The caches; the controllers add their event handlers to them.
	Sources, FeatureFlags, InProcess, ServiceAccounts, Roles, RoleBindings, ConfigMaps cache.SharedIndexInformer

	createdSecrets sync.Map // names of Secrets known to exist: "ns/name"
}

// NewCluster builds the caches and clients from cfg. Call Run to fill the caches.
func NewCluster(cfg *rest.Config, log zerolog.Logger) (*Cluster, error) {
	core, err := kube.RESTClient(cfg, corev1.SchemeGroupVersion, corev1.AddToScheme)
	if err != nil {
		return nil, err
	}
	rbac, err := kube.RESTClient(cfg, rbacv1.SchemeGroupVersion, rbacv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	flags, err := kube.RESTClient(cfg, v1beta1.SchemeGroupVersion, v1beta1.AddToScheme)
	if err != nil {
		return nil, err
	}
	return newCluster(core, rbac, flags, log), nil
}

func newCluster(core, rbac, flags rest.Interface, log zerolog.Logger) *Cluster {
	c := &Cluster{core: core, rbac: rbac, flags: flags, log: log}
	managed := kube.InformerOptions{LabelSelector: managedSelector}
	c.Sources = kube.NewInformer(flags, "featureflagsources", &v1beta1.FeatureFlagSource{}, &v1beta1.FeatureFlagSourceList{}, kube.InformerOptions{})
	c.FeatureFlags = kube.NewInformer(flags, "featureflags", &v1beta1.FeatureFlag{}, &v1beta1.FeatureFlagList{}, kube.InformerOptions{})
	c.InProcess = kube.NewInformer(flags, "inprocessconfigurations", &v1beta1.InProcessConfiguration{}, &v1beta1.InProcessConfigurationList{}, kube.InformerOptions{})
	c.ServiceAccounts = kube.NewInformer(core, "serviceaccounts", &corev1.ServiceAccount{}, &corev1.ServiceAccountList{}, kube.InformerOptions{Transform: stripServiceAccount})
	c.Roles = kube.NewInformer(rbac, "roles", &rbacv1.Role{}, &rbacv1.RoleList{}, managed)
	c.RoleBindings = kube.NewInformer(rbac, "rolebindings", &rbacv1.RoleBinding{}, &rbacv1.RoleBindingList{}, managed)
	c.ConfigMaps = kube.NewInformer(core, "configmaps", &corev1.ConfigMap{}, &corev1.ConfigMapList{}, kube.InformerOptions{LabelSelector: managedSelector, Transform: KeepFileConfigMap})
	return c
}

func (c *Cluster) informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{c.Sources, c.FeatureFlags, c.InProcess, c.ServiceAccounts, c.Roles, c.RoleBindings, c.ConfigMaps}
}

// Run fills and follows the caches until ctx ends.
func (c *Cluster) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, inf := range c.informers() {
		wg.Go(func() { inf.RunWithContext(ctx) })
	}
	wg.Wait()
}

// Synced reports whether every cache has listed its objects once (readiness).
func (c *Cluster) Synced() bool {
	for _, inf := range c.informers() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

// stripServiceAccount keeps only the identity: admissions ask whether it exists.
func stripServiceAccount(obj any) (any, error) {
	if sa, ok := obj.(*corev1.ServiceAccount); ok {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: sa.Namespace, Name: sa.Name, UID: sa.UID, ResourceVersion: sa.ResourceVersion}}, nil
	}
	return obj, nil
}

// cached returns the object of inf at r, or reads it live into out once when the
// cache does not hold it (created a moment ago, or the cache not synced yet).
func cached[T runtime.Object](ctx context.Context, inf cache.SharedIndexInformer, rc rest.Interface, resource string, gr schema.GroupResource, r Ref, out T) (T, error) {
	if obj, ok, err := inf.GetIndexer().GetByKey(r.Namespace + "/" + r.Name); err == nil && ok {
		if t, ok := obj.(T); ok {
			return t, nil
		}
	}
	var zero T
	if err := rc.Get().Namespace(r.Namespace).Resource(resource).Name(r.Name).Do(ctx).Into(out); err != nil {
		if apierrors.IsNotFound(err) {
			return zero, apierrors.NewNotFound(gr, r.String())
		}
		return zero, err
	}
	return out, nil
}

// FeatureFlagSource implements Objects.
func (c *Cluster) FeatureFlagSource(ctx context.Context, r Ref) (*v1beta1.FeatureFlagSource, error) {
	return cached[*v1beta1.FeatureFlagSource](ctx, c.Sources, c.flags, "featureflagsources", resourceFeatureFlagSources, r, &v1beta1.FeatureFlagSource{})
}

// FeatureFlag implements Objects.
func (c *Cluster) FeatureFlag(ctx context.Context, r Ref) (*v1beta1.FeatureFlag, error) {
	return cached[*v1beta1.FeatureFlag](ctx, c.FeatureFlags, c.flags, "featureflags", resourceFeatureFlags, r, &v1beta1.FeatureFlag{})
}

// InProcessConfiguration implements Objects.
func (c *Cluster) InProcessConfiguration(ctx context.Context, r Ref) (*v1beta1.InProcessConfiguration, error) {
	return cached[*v1beta1.InProcessConfiguration](ctx, c.InProcess, c.flags, "inprocessconfigurations", resourceInProcessConfigs, r, &v1beta1.InProcessConfiguration{})
}

// ServiceAccount implements Objects.
func (c *Cluster) ServiceAccount(ctx context.Context, r Ref) (*corev1.ServiceAccount, error) {
	sa, err := cached[*corev1.ServiceAccount](ctx, c.ServiceAccounts, c.core, "serviceaccounts", resourceServiceAccounts, r, &corev1.ServiceAccount{})
	if apierrors.IsNotFound(err) {
		return nil, apierrors.NewNotFound(resourceServiceAccounts, r.Name)
	}
	return sa, err
}

// ConfigMapExists implements Objects.
func (c *Cluster) ConfigMapExists(ns, name string) bool {
	_, ok, err := c.ConfigMaps.GetIndexer().GetByKey(ns + "/" + name)
	return err == nil && ok
}

// Grant implements Objects.
func (c *Cluster) Grant(ns string, sa Ref) ([]string, bool) {
	key := ns + "/" + GrantName(sa)
	var flags []string
	if obj, ok, err := c.Roles.GetIndexer().GetByKey(key); err == nil && ok {
		if role, ok := obj.(*rbacv1.Role); ok {
			flags = grantedFlags(role)
		}
	}
	_, bound, err := c.RoleBindings.GetIndexer().GetByKey(key)
	return flags, bound && err == nil
}

// Apply implements EffectApplier.
func (c *Cluster) Apply(ctx context.Context, e Effect) error {
	switch e := e.(type) {
	case GrantFlags:
		return c.grant(ctx, e)
	case EnsureConfigMap:
		return c.ensureConfigMap(ctx, e)
	case EnsureFlagdProxyCA:
		return c.ensureFlagdProxyCA(ctx, e)
	case EnsureSecret:
		return c.ensureSecret(ctx, e)
	}
	return fmt.Errorf("no way to apply %T", e)
}

func managedMeta(ns, name string, owners []metav1.OwnerReference) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{LabelManagedBy: ManagedBy}, OwnerReferences: owners}
}

// grant creates or widens the Role and creates the RoleBinding of a GrantFlags.
func (c *Cluster) grant(ctx context.Context, g GrantFlags) error {
	name := GrantName(g.ServiceAccount)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var live rbacv1.Role
		err := c.rbac.Get().Namespace(g.Namespace).Resource("roles").Name(name).Do(ctx).Into(&live)
		if apierrors.IsNotFound(err) {
			err = c.rbac.Post().Namespace(g.Namespace).Resource("roles").Body(GrantRole(g)).Do(ctx).Error()
			if apierrors.IsAlreadyExists(err) { // created meanwhile: read it and merge
				return apierrors.NewConflict(schema.GroupResource{Group: rbacv1.GroupName, Resource: "roles"}, name, err)
			}
			return err
		}
		if err != nil {
			return err
		}
		have := grantedFlags(&live)
		want := union(have, g.Flags)
		if slices.Equal(want, have) && len(live.Rules) == 1 {
			return nil
		}
		live.Rules = GrantRole(GrantFlags{Namespace: g.Namespace, ServiceAccount: g.ServiceAccount, Flags: want}).Rules
		return c.rbac.Put().Namespace(g.Namespace).Resource("roles").Name(name).Body(&live).Do(ctx).Error()
	})
	if err != nil {
		return explainWrite("Role", g.Namespace, name, "create, get and update roles.rbac.authorization.k8s.io", err)
	}
	err = c.rbac.Post().Namespace(g.Namespace).Resource("rolebindings").Body(GrantBinding(g)).Do(ctx).Error()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return explainWrite("RoleBinding", g.Namespace, name, "create rolebindings.rbac.authorization.k8s.io", err)
	}
	return nil
}

// grantMeta is the metadata of a grant's Role and RoleBinding.
func grantMeta(g GrantFlags) metav1.ObjectMeta {
	meta := managedMeta(g.Namespace, GrantName(g.ServiceAccount), nil)
	meta.Annotations = map[string]string{AnnotationGrantFor: g.ServiceAccount.String()}
	return meta
}

// GrantRole is the Role of a grant: get, list and watch on exactly its FeatureFlags.
func GrantRole(g GrantFlags) *rbacv1.Role {
	return &rbacv1.Role{ObjectMeta: grantMeta(g), Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1beta1.GroupName},
		Resources: []string{"featureflags"}, Verbs: []string{"get", "list", "watch"}, ResourceNames: g.Flags}}}
}

// GrantBinding binds a grant's Role to its service account.
func GrantBinding(g GrantFlags) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: grantMeta(g),
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: GrantName(g.ServiceAccount)},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: g.ServiceAccount.Namespace, Name: g.ServiceAccount.Name}}}
}

// ensureConfigMap creates a file source's ConfigMap unless the webhook's exists.
func (c *Cluster) ensureConfigMap(ctx context.Context, e EnsureConfigMap) error {
	cm := corev1.ConfigMap{ObjectMeta: managedMeta(e.Namespace, e.Name, e.Owners), Data: map[string]string{e.Key: e.Data}}
	cm.Annotations = map[string]string{AnnotationFeatureFlag: e.FeatureFlag.String()}
	return c.createConfigMap(ctx, &cm, "rename it or use another provider")
}

// ensureFlagdProxyCA creates a namespace's flagd-proxy CA ConfigMap unless the
// webhook's exists.
func (c *Cluster) ensureFlagdProxyCA(ctx context.Context, e EnsureFlagdProxyCA) error {
	cm := corev1.ConfigMap{ObjectMeta: managedMeta(e.Namespace, FlagdProxyCAConfigMap, nil), Data: map[string]string{FlagdProxyCAKey: e.Bundle}}
	cm.Annotations = map[string]string{AnnotationCAHash: CAHash([]byte(e.Bundle))}
	return c.createConfigMap(ctx, &cm, "delete or rename it")
}

// createConfigMap creates cm unless the webhook's exists; a ConfigMap of that name
// that the webhook did not create is never mounted (the error ends with fix).
func (c *Cluster) createConfigMap(ctx context.Context, cm *corev1.ConfigMap, fix string) error {
	err := c.core.Post().Namespace(cm.Namespace).Resource("configmaps").Body(cm).Do(ctx).Error()
	if apierrors.IsAlreadyExists(err) {
		var live corev1.ConfigMap
		if err := c.core.Get().Namespace(cm.Namespace).Resource("configmaps").Name(cm.Name).Do(ctx).Into(&live); err != nil {
			return explainWrite("ConfigMap", cm.Namespace, cm.Name, "get configmaps", err)
		}
		if live.Labels[LabelManagedBy] != ManagedBy {
			return fmt.Errorf("ConfigMap %s/%s exists and was not created by flagpole (label %s=%s missing): %s", cm.Namespace, cm.Name, LabelManagedBy, ManagedBy, fix)
		}
		return nil
	}
	if err != nil {
		return explainWrite("ConfigMap", cm.Namespace, cm.Name, "create configmaps", err)
	}
	return nil
}

// ensureSecret creates an immutable, content-named Secret once; the webhook may
// create Secrets but never reads any.
func (c *Cluster) ensureSecret(ctx context.Context, e EnsureSecret) error {
	key := e.Namespace + "/" + e.Name
	if _, ok := c.createdSecrets.Load(key); ok {
		return nil
	}
	s := corev1.Secret{ObjectMeta: managedMeta(e.Namespace, e.Name, e.Owners), Immutable: new(true),
		Type: corev1.SecretTypeOpaque, StringData: map[string]string{e.Key: e.Value}}
	err := c.core.Post().Namespace(e.Namespace).Resource("secrets").Body(&s).Do(ctx).Error()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return explainWrite("Secret", e.Namespace, e.Name, "create secrets", err)
	}
	c.createdSecrets.Store(key, struct{}{})
	return nil
}

// explainWrite turns a failed write into an error that says what to fix.
func explainWrite(kind, ns, name, verbs string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s %s/%s: the operator's service account lacks RBAC (%s): %w", kind, ns, name, verbs, err)
	}
	return fmt.Errorf("%s %s/%s: %w", kind, ns, name, err)
}

// WaitForSync waits until every cache has synced or ctx ends.
func (c *Cluster) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), c.Synced)
}
