package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/sidecar"
)

// Index names on the grant caches.
const (
	indexGrantsByAccount = "flagpole.grants.byServiceAccount" // Roles and RoleBindings by AnnotationGrantFor
	indexGrantsByFlag    = "flagpole.grants.byFlag"           // Roles by the FeatureFlags ("namespace/name") they grant
)

// GrantGrace is how long what a grant depends on (its ServiceAccount, a
// FeatureFlag, its Role) must have been seen gone before the grant is narrowed or
// removed: an object deleted and created again under the same name (kubectl replace
// --force, a GitOps replace) keeps its grant, which the webhook — trusting its cache
// — would not make again for the pods admitted meanwhile.
const GrantGrace = time.Minute

// Grants removes the RBAC grants the webhook made (a Role and a RoleBinding named
// sidecar.GrantName(sa) in a FeatureFlag's namespace, labelled as flagpole's and
// annotated flagpole.dev/grant-for) once they are no longer needed: when the
// ServiceAccount is gone, both go; when a FeatureFlag the Role names is gone, it is
// dropped from the Role, and when none is left both go. Whether pods still use a
// grant is not asked (no pod cache: memory does not grow with pods), so a grant
// lives as long as its ServiceAccount and one of its FeatureFlags. Every removal is
// decided on a live read of what looks gone (caches lag behind creations) and
// written with the resourceVersion it was decided on, so a grant the webhook widens
// meanwhile is not narrowed by a stale decision; and only after GrantGrace.
type Grants struct {
	*Controller
	cluster  *sidecar.Cluster
	rbac     rest.Interface
	recorder record.EventRecorder
	log      zerolog.Logger
	grace    time.Duration
	now      func() time.Time

	mu        sync.Mutex
	goneSince map[string]time.Time // "<grant key>|<what>" → when it was first seen gone
}

// NewGrants builds the grant clean-up controller on the cluster's Role,
// RoleBinding, ServiceAccount and FeatureFlag caches; it writes through clients.RBAC.
// grace is how long what a grant depends on must have been gone (0: GrantGrace).
func NewGrants(cluster *sidecar.Cluster, clients Clients, grace time.Duration, recorder record.EventRecorder, metrics *Metrics, log zerolog.Logger) (*Grants, error) {
	r := &Grants{cluster: cluster, rbac: clients.RBAC, recorder: recorder, log: log.With().Str("controller", "grants").Logger(),
		grace: cmp.Or(grace, GrantGrace), now: time.Now, goneSince: map[string]time.Time{}}
	r.Controller = New("grants", r.sync, log, metrics)
	errs := []error{
		cluster.Roles.AddIndexers(cache.Indexers{indexGrantsByAccount: grantAccount, indexGrantsByFlag: grantFlags}),
		cluster.RoleBindings.AddIndexers(cache.Indexers{indexGrantsByAccount: grantAccount}),
	}
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) {
		_, err := inf.AddEventHandler(h)
		errs = append(errs, err)
	}
	add(cluster.Roles, r.Handler())
	add(cluster.RoleBindings, r.Handler())
	add(cluster.ServiceAccounts, cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		r.enqueueIndexed(obj, indexGrantsByAccount, cluster.Roles, cluster.RoleBindings)
	}})
	add(cluster.FeatureFlags, cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		r.enqueueIndexed(obj, indexGrantsByFlag, cluster.Roles)
	}})
	return r, errors.Join(errs...)
}

// Informers are the caches the controller owns: none (it uses the cluster's).
func (r *Grants) Informers() []cache.SharedIndexInformer { return nil }

// grantAccount indexes a grant by the ServiceAccount it is for.
func grantAccount(obj any) ([]string, error) {
	if m, err := meta.Accessor(obj); err == nil {
		if sa, ok := grantSubject(m); ok {
			return []string{sa.String()}, nil
		}
	}
	return nil, nil
}

// grantFlags indexes a grant Role by the FeatureFlags it names.
func grantFlags(obj any) ([]string, error) {
	role, ok := obj.(*rbacv1.Role)
	if !ok {
		return nil, nil
	}
	if _, ok := grantSubject(role); !ok {
		return nil, nil
	}
	flags := sidecar.GrantedFlags(role)
	keys := make([]string, len(flags))
	for i, f := range flags {
		keys[i] = role.Namespace + "/" + f
	}
	return keys, nil
}

// grantSubject reads the ServiceAccount of a grant the webhook made: flagpole's
// label, the annotation, and the name the webhook gives that account's grants.
// Anything else is not a grant and is left alone.
func grantSubject(m metav1.Object) (sidecar.Ref, bool) {
	if m.GetLabels()[sidecar.LabelManagedBy] != sidecar.ManagedBy {
		return sidecar.Ref{}, false
	}
	owner, ok := m.GetAnnotations()[sidecar.AnnotationGrantFor]
	if !ok || !strings.Contains(owner, "/") {
		return sidecar.Ref{}, false
	}
	sa, err := sidecar.ParseRef(owner, "")
	if err != nil || sidecar.GrantName(sa) != m.GetName() {
		return sidecar.Ref{}, false
	}
	return sa, true
}

func (r *Grants) enqueueIndexed(obj any, index string, infs ...cache.SharedIndexInformer) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, inf := range infs {
		objs, _ := inf.GetIndexer().ByIndex(index, m.GetNamespace()+"/"+m.GetName())
		for _, o := range objs {
			r.Enqueue(o)
		}
	}
}

// sync reconciles the grant (Role and RoleBinding) named key.
func (r *Grants) sync(ctx context.Context, key cache.ObjectName) error {
	var role *rbacv1.Role
	var binding *rbacv1.RoleBinding
	if obj, ok, err := r.cluster.Roles.GetIndexer().GetByKey(key.String()); err == nil && ok {
		role, _ = obj.(*rbacv1.Role)
	}
	if obj, ok, err := r.cluster.RoleBindings.GetIndexer().GetByKey(key.String()); err == nil && ok {
		binding, _ = obj.(*rbacv1.RoleBinding)
	}
	var sa sidecar.Ref
	var ok bool
	switch {
	case role != nil:
		sa, ok = grantSubject(role)
	case binding != nil:
		sa, ok = grantSubject(binding)
	}
	if !ok {
		r.forgetAll(key)
		return nil
	}
	_, err := r.cluster.ServiceAccount(ctx, sa) // the cache, then a live read
	if apierrors.IsNotFound(err) {
		if !r.settled(key, "serviceaccount") {
			return nil
		}
		return r.remove(ctx, key, role, binding, fmt.Sprintf("ServiceAccount %s is gone", sa))
	}
	if err != nil {
		return err
	}
	r.present(key, "serviceaccount")
	if role == nil {
		return r.danglingBinding(ctx, key, binding)
	}
	r.present(key, "role")
	var keep, gone []string
	for _, f := range sidecar.GrantedFlags(role) {
		_, err := r.cluster.FeatureFlag(ctx, sidecar.Ref{Namespace: key.Namespace, Name: f}) // the cache, then a live read
		switch {
		case apierrors.IsNotFound(err) && r.settled(key, "featureflag "+f):
			gone = append(gone, f)
		case apierrors.IsNotFound(err): // gone, but not for long enough: kept for now
			keep = append(keep, f)
		case err != nil:
			return err
		default:
			r.present(key, "featureflag "+f)
			keep = append(keep, f)
		}
	}
	switch {
	case len(gone) == 0:
		return nil
	case len(keep) == 0:
		return r.remove(ctx, key, role, binding, fmt.Sprintf("no FeatureFlag it grants is left (%s gone)", strings.Join(gone, ", ")))
	}
	return r.narrow(ctx, role, sa, keep, gone)
}

// settled reports whether what a grant depends on has been gone for the grace
// period, remembering when it was first seen gone; if not, the grant is checked
// again when it will have been.
func (r *Grants) settled(key cache.ObjectName, what string) bool {
	id := key.String() + "|" + what
	now := r.now()
	r.mu.Lock()
	since, ok := r.goneSince[id]
	if !ok {
		since = now
		r.goneSince[id] = now
	}
	r.mu.Unlock()
	if wait := r.grace - now.Sub(since); wait > 0 {
		r.log.Debug().Str("grant", key.String()).Str("gone", what).Dur("wait", wait).Msg("gone; checked again after the grace period")
		r.EnqueueAfter(key, wait)
		return false
	}
	return true
}

// present forgets that what a grant depends on was seen gone.
func (r *Grants) present(key cache.ObjectName, what string) {
	r.mu.Lock()
	delete(r.goneSince, key.String()+"|"+what)
	r.mu.Unlock()
}

// forgetAll forgets what was seen gone for a grant that is no more.
func (r *Grants) forgetAll(key cache.ObjectName) {
	prefix := key.String() + "|"
	r.mu.Lock()
	for id := range r.goneSince {
		if strings.HasPrefix(id, prefix) {
			delete(r.goneSince, id)
		}
	}
	r.mu.Unlock()
}

// narrow rewrites the Role's rule to the FeatureFlags that are left.
func (r *Grants) narrow(ctx context.Context, role *rbacv1.Role, sa sidecar.Ref, keep, gone []string) error {
	next := role.DeepCopy()
	next.Rules = sidecar.GrantRole(sidecar.GrantFlags{Namespace: role.Namespace, ServiceAccount: sa, Flags: keep}).Rules
	err := r.rbac.Put().Namespace(role.Namespace).Resource("roles").Name(role.Name).
		Param("fieldManager", FieldManager).Body(next).Do(ctx).Error()
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err): // changed meanwhile (the webhook widened it): its update event brings it back
		return nil
	case err != nil:
		return writeError("updating", "update", "Role", role.Namespace, role.Name, "roles", err)
	}
	for _, f := range gone {
		r.present(cache.ObjectName{Namespace: role.Namespace, Name: role.Name}, "featureflag "+f)
	}
	r.log.Info().Str("role", role.Namespace+"/"+role.Name).Str("serviceaccount", sa.String()).Strs("removed", gone).Strs("kept", keep).
		Msg("grant narrowed: FeatureFlags gone")
	r.event(role, fmt.Sprintf("no longer grants ServiceAccount %s the FeatureFlags %s (gone); still grants %s",
		sa, strings.Join(gone, ", "), strings.Join(keep, ", ")))
	return nil
}

// danglingBinding deletes a grant RoleBinding whose Role is gone (it grants
// nothing), once a live read confirms that the Role is gone: the webhook creates the
// Role first, and the Role cache may not have it yet.
func (r *Grants) danglingBinding(ctx context.Context, key cache.ObjectName, binding *rbacv1.RoleBinding) error {
	err := r.rbac.Get().Namespace(key.Namespace).Resource("roles").Name(key.Name).Do(ctx).Error()
	switch {
	case err == nil:
		r.present(key, "role")
		return nil
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading Role %s: %w", key, err)
	case !r.settled(key, "role"):
		return nil
	}
	return r.remove(ctx, key, nil, binding, "its Role is gone")
}

// remove deletes the grant's RoleBinding (first: access ends at once) and Role,
// each only at the resourceVersion the decision was made on.
func (r *Grants) remove(ctx context.Context, key cache.ObjectName, role *rbacv1.Role, binding *rbacv1.RoleBinding, why string) error {
	var removed []string
	if binding != nil {
		res, err := r.delete(ctx, "rolebindings", "RoleBinding", binding)
		switch {
		case err != nil:
			return err
		case res == changed: // decided again on its update event
			return nil
		case res == deleted:
			removed = append(removed, "RoleBinding")
		}
	}
	if role != nil {
		res, err := r.delete(ctx, "roles", "Role", role)
		if err != nil {
			return err
		}
		if res == deleted {
			removed = append(removed, "Role")
		}
	}
	r.forgetAll(key)
	if len(removed) == 0 {
		return nil
	}
	r.log.Info().Str("grant", key.String()).Strs("deleted", removed).Str("reason", why).Msg("grant removed")
	var on runtime.Object = role
	if role == nil {
		on = binding
	}
	r.event(on, fmt.Sprintf("%s deleted: %s", strings.Join(removed, " and "), why))
	return nil
}

// deletion is what a delete with a precondition did.
type deletion int

const (
	deleted deletion = iota
	gone             // already gone
	changed          // changed since the decision: not deleted
)

// delete deletes obj with a resourceVersion precondition.
func (r *Grants) delete(ctx context.Context, resource, kind string, obj metav1.Object) (deletion, error) {
	rv := obj.GetResourceVersion()
	opts, err := json.Marshal(metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if err != nil {
		return changed, err
	}
	err = r.rbac.Delete().Namespace(obj.GetNamespace()).Resource(resource).Name(obj.GetName()).Body(opts).Do(ctx).Error()
	switch {
	case apierrors.IsNotFound(err):
		return gone, nil
	case apierrors.IsConflict(err):
		return changed, nil
	case err != nil:
		return changed, writeError("deleting", "delete", kind, obj.GetNamespace(), obj.GetName(), resource, err)
	}
	return deleted, nil
}

// event records a GrantRemoved Event on a grant's Role or RoleBinding (in the
// FeatureFlag's namespace).
func (r *Grants) event(obj runtime.Object, message string) {
	obj = obj.DeepCopyObject()
	kind := "Role"
	if _, ok := obj.(*rbacv1.RoleBinding); ok {
		kind = "RoleBinding"
	}
	// the recorder's scheme knows no RBAC kinds: the object names its own
	obj.GetObjectKind().SetGroupVersionKind(rbacv1.SchemeGroupVersion.WithKind(kind))
	r.recorder.Event(obj, corev1.EventTypeNormal, ReasonGrantRemoved, message)
}

// writeError says what failed and, when forbidden, which permission is missing.
func writeError(doing, verb, kind, ns, name, resource string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s %s %s/%s: the operator's service account may not %s %s.rbac.authorization.k8s.io: %w",
			doing, kind, ns, name, verb, resource, err)
	}
	return fmt.Errorf("%s %s %s/%s: %w", doing, kind, ns, name, err)
}
