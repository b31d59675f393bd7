package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// Clients are the REST clients the controllers read and write through, one per
// API group version, each with a scheme of only the types it carries.
type Clients struct {
	Core, Apps, Networking, RBAC, Flags rest.Interface
}

// NewClients builds the REST clients from cfg.
func NewClients(cfg *rest.Config) (Clients, error) {
	var c Clients
	var errs []error
	add := func(dst *rest.Interface, rc *rest.RESTClient, err error) {
		errs = append(errs, err)
		*dst = rc
	}
	rc, err := kube.RESTClient(cfg, corev1.SchemeGroupVersion, corev1.AddToScheme)
	add(&c.Core, rc, err)
	rc, err = kube.RESTClient(cfg, appsv1.SchemeGroupVersion, appsv1.AddToScheme)
	add(&c.Apps, rc, err)
	rc, err = kube.RESTClient(cfg, networkingv1.SchemeGroupVersion, networkingv1.AddToScheme)
	add(&c.Networking, rc, err)
	rc, err = kube.RESTClient(cfg, rbacv1.SchemeGroupVersion, rbacv1.AddToScheme)
	add(&c.RBAC, rc, err)
	rc, err = kube.RESTClient(cfg, v1beta1.SchemeGroupVersion, v1beta1.AddToScheme)
	add(&c.Flags, rc, err)
	return c, errors.Join(errs...)
}

// FlagdOptions are the operator settings a Flagd's children carry (OFO's --labels,
// --annotations and --image-pull-secrets apply to the Deployments it creates).
type FlagdOptions struct {
	Labels, Annotations map[string]string
	ImagePullSecrets    []string
}

// Flagd reconciles Flagd objects into a standalone flagd: a ServiceAccount (unless
// spec.serviceAccountName names one), a Deployment running this image in flagd
// mode on every interface, a Service, and an Ingress and a Gateway API HTTPRoute
// when enabled — all by server-side apply, owned by the Flagd, watched so that an
// edited or deleted child is restored, and removed when disabled. The container is
// rendered by package sidecar from the Flagd's FeatureFlagSource (the same rendering
// as the injected sidecar), so a change of the FeatureFlagSource that changes flagd
// rolls the Deployment, and its ports are one set in args, container, probes and
// Service.
type Flagd struct {
	*Controller
	renderer *sidecar.Renderer
	cluster  *sidecar.Cluster
	clients  Clients
	opts     FlagdOptions
	recorder record.EventRecorder
	log      zerolog.Logger

	flagds, deployments, services, serviceAccounts, ingresses cache.SharedIndexInformer

	gatewayMu      sync.Mutex
	gatewayChecked time.Time
	gatewayServed  bool
}

// indexBySource indexes Flagds by "<namespace>/<featureFlagSource>".
const indexBySource = "bySource"

// NewFlagd builds the Flagd controller and registers its event handlers on the
// informers (the cluster's FeatureFlagSource and FeatureFlag caches among them).
func NewFlagd(renderer *sidecar.Renderer, cluster *sidecar.Cluster, clients Clients, opts FlagdOptions, recorder record.EventRecorder, metrics *Metrics, log zerolog.Logger) (*Flagd, error) {
	managed := kube.InformerOptions{LabelSelector: labelManagedBy + "=" + managedBy}
	r := &Flagd{renderer: renderer, cluster: cluster, clients: clients, opts: opts, recorder: recorder, log: log.With().Str("controller", "flagd").Logger(),
		flagds:          kube.NewInformer(clients.Flags, "flagds", &v1beta1.Flagd{}, &v1beta1.FlagdList{}, kube.InformerOptions{}),
		deployments:     kube.NewInformer(clients.Apps, "deployments", &appsv1.Deployment{}, &appsv1.DeploymentList{}, managed),
		services:        kube.NewInformer(clients.Core, "services", &corev1.Service{}, &corev1.ServiceList{}, managed),
		serviceAccounts: kube.NewInformer(clients.Core, "serviceaccounts", &corev1.ServiceAccount{}, &corev1.ServiceAccountList{}, managed),
		ingresses:       kube.NewInformer(clients.Networking, "ingresses", &networkingv1.Ingress{}, &networkingv1.IngressList{}, managed),
	}
	r.Controller = New("flagd", r.sync, log, metrics)
	if err := r.flagds.AddIndexers(cache.Indexers{indexBySource: func(obj any) ([]string, error) {
		f, ok := obj.(*v1beta1.Flagd)
		if !ok {
			return nil, nil
		}
		return []string{f.Namespace + "/" + f.Spec.FeatureFlagSource}, nil
	}}); err != nil {
		return nil, err
	}
	var errs []error
	add := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) {
		_, err := inf.AddEventHandler(h)
		errs = append(errs, err)
	}
	add(r.flagds, r.Handler())
	owner := r.ownerHandler()
	for _, inf := range []cache.SharedIndexInformer{r.deployments, r.services, r.serviceAccounts, r.ingresses} {
		add(inf, owner)
	}
	add(cluster.Sources, cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueueBySource,
		UpdateFunc: func(_, obj any) { r.enqueueBySource(obj) },
		DeleteFunc: r.enqueueBySource,
	})
	// a FeatureFlag that appears may unblock a Flagd whose source named it
	add(cluster.FeatureFlags, cache.ResourceEventHandlerFuncs{AddFunc: r.enqueueNamespace, DeleteFunc: r.enqueueNamespace})
	return r, errors.Join(errs...)
}

// Informers are the caches the controller owns (the caller runs them).
func (r *Flagd) Informers() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{r.flagds, r.deployments, r.services, r.serviceAccounts, r.ingresses}
}

// ownerHandler enqueues the Flagd that controls a changed or deleted child.
func (r *Flagd) ownerHandler() cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			return
		}
		if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == "Flagd" && ref.APIVersion == v1beta1.SchemeGroupVersion.String() {
			r.EnqueueKey(cache.ObjectName{Namespace: m.GetNamespace(), Name: ref.Name})
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}
}

func (r *Flagd) enqueueBySource(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	flagds, _ := r.flagds.GetIndexer().ByIndex(indexBySource, m.GetNamespace()+"/"+m.GetName())
	for _, f := range flagds {
		r.Enqueue(f)
	}
}

func (r *Flagd) enqueueNamespace(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	flagds, _ := r.flagds.GetIndexer().ByIndex(cache.NamespaceIndex, m.GetNamespace())
	for _, f := range flagds {
		r.Enqueue(f)
	}
}

// syncPort is the sync listener's port (flagd's default; a FeatureFlagSource has
// no field for it).
const syncPort = 8015

// sync reconciles one Flagd.
func (r *Flagd) sync(ctx context.Context, key cache.ObjectName) error {
	obj, exists, err := r.flagds.GetIndexer().GetByKey(key.String())
	if err != nil || !exists {
		return err // deleted: its children are collected by ownership
	}
	f := obj.(*v1beta1.Flagd).DeepCopy()
	err = r.reconcile(ctx, f)
	if conflict := (*childConflict)(nil); errors.As(err, &conflict) {
		return r.setStatus(ctx, f, metav1.ConditionFalse, ReasonConflict, conflict.Error(), "", 0)
	}
	return err
}

// childConflict is a child's name taken by an object the Flagd does not control: it
// is left alone (applying would take over someone else's Deployment, Service or
// ServiceAccount, and collect it with the Flagd).
type childConflict struct {
	resource, namespace, name string
}

func (c *childConflict) Error() string {
	return fmt.Sprintf("%s %s/%s exists and is not controlled by this Flagd; rename the Flagd or remove that object", c.resource, c.namespace, c.name)
}

// reconcile brings one Flagd's children and status to the desired state.
func (r *Flagd) reconcile(ctx context.Context, f *v1beta1.Flagd) error {
	ffs, err := r.cluster.FeatureFlagSource(ctx, sidecar.Ref{Namespace: f.Namespace, Name: f.Spec.FeatureFlagSource})
	if apierrors.IsNotFound(err) {
		return r.setStatus(ctx, f, metav1.ConditionFalse, ReasonSourceNotFound,
			fmt.Sprintf("FeatureFlagSource %s/%s not found", f.Namespace, f.Spec.FeatureFlagSource), "", 0)
	}
	if err != nil {
		return err
	}
	sa := f.Spec.ServiceAccountName
	if sa == "" {
		sa = f.Name
		account := &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: sa, Labels: childLabels(f), OwnerReferences: ownerRef(f)}}
		if err := r.apply(ctx, r.serviceAccounts, r.clients.Core, "serviceaccounts", account); err != nil {
			return err
		}
	}
	w := sidecar.Workload{Namespace: f.Namespace, ServiceAccount: sa, Owners: ownerRef(f), Standalone: true}
	withAuth(&w, f.Spec.Auth)
	rendered, denial := r.renderer.Render(ctx, w, []*v1beta1.FeatureFlagSource{ffs})
	if denial != nil {
		if denial.Code >= http.StatusInternalServerError {
			return denial
		}
		return r.setStatus(ctx, f, metav1.ConditionFalse, ReasonInvalid, denial.Message, "", 0)
	}
	for _, e := range rendered.Effects {
		if err := r.cluster.Apply(ctx, e); err != nil {
			return err
		}
	}
	spec := rendered.Spec
	ports := flagdPorts{Evaluation: spec.Port, Management: spec.ManagementPort, Sync: syncPort, OFREP: spec.OfrepPort}
	if err := r.apply(ctx, r.deployments, r.clients.Apps, "deployments", r.deployment(f, sa, rendered)); err != nil {
		return err
	}
	if err := r.apply(ctx, r.services, r.clients.Core, "services", flagdService(f, ports)); err != nil {
		return err
	}
	if f.Spec.Ingress != nil && f.Spec.Ingress.Enabled {
		err = r.apply(ctx, r.ingresses, r.clients.Networking, "ingresses", flagdIngress(f, ports))
	} else {
		err = r.deleteOwned(ctx, r.ingresses, r.clients.Networking, "ingresses", f)
	}
	if err != nil {
		return err
	}
	if err := r.syncRoute(ctx, f, ports); err != nil {
		return err
	}
	return r.readiness(ctx, f, ports)
}

// Where a standalone flagd's access-control Secrets are mounted.
const (
	authMountPath = "/etc/flagpole/auth"
	tlsMountPath  = "/etc/flagpole/tls"
	caMountPath   = "/etc/flagpole/client-ca"
)

// withAuth mounts the Secrets of a Flagd's auth and passes them to flagd:
// --auth-token-file, --server-cert-path/--server-key-path with --ofrep-tls, and
// --client-ca-path. Secret volumes are updated in place by the kubelet, and flagd
// re-reads the files, so rotations need no restart.
func withAuth(w *sidecar.Workload, auth *v1beta1.FlagdAuth) {
	if auth == nil {
		return
	}
	secretVolume := func(name, secret, path string, items ...corev1.KeyToPath) {
		w.Volumes = append(w.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret, Items: items}}})
		w.Mounts = append(w.Mounts, corev1.VolumeMount{Name: name, MountPath: path, ReadOnly: true})
	}
	var configure []func(*startconfig.Config)
	if ref := auth.TokenSecretRef; ref != nil {
		secretVolume("flagpole-auth-token", ref.Name, authMountPath, corev1.KeyToPath{Key: ref.Key, Path: "tokens"})
		configure = append(configure, func(c *startconfig.Config) { c.AuthTokenFile = authMountPath + "/tokens" })
	}
	if t := auth.TLS; t != nil {
		secretVolume("flagpole-tls", t.SecretName, tlsMountPath)
		configure = append(configure, func(c *startconfig.Config) {
			c.ServerCertPath, c.ServerKeyPath, c.OfrepTLS = tlsMountPath+"/tls.crt", tlsMountPath+"/tls.key", true
		})
		if ref := t.ClientCASecretRef; ref != nil {
			secretVolume("flagpole-client-ca", ref.Name, caMountPath, corev1.KeyToPath{Key: ref.Key, Path: "ca.crt"})
			configure = append(configure, func(c *startconfig.Config) { c.ClientCAPath = caMountPath + "/ca.crt" })
		}
	}
	w.Configure = func(c *startconfig.Config) {
		for _, f := range configure {
			f(c)
		}
	}
}

// deployment renders the Flagd's Deployment.
func (r *Flagd) deployment(f *v1beta1.Flagd, sa string, rendered *sidecar.Rendered) *appsv1.Deployment {
	labels := childLabels(f)
	for k, v := range r.opts.Labels {
		if _, ours := labels[k]; !ours {
			labels[k] = v
		}
	}
	replicas := int32(1)
	if f.Spec.Replicas != nil {
		replicas = *f.Spec.Replicas
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, s := range r.opts.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}
	nonRoot := true
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Name, Labels: labels, Annotations: r.opts.Annotations, OwnerReferences: ownerRef(f)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": f.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: r.opts.Annotations},
				Spec: corev1.PodSpec{
					ServiceAccountName: sa,
					Containers:         []corev1.Container{rendered.Container},
					Volumes:            rendered.Volumes,
					ImagePullSecrets:   pullSecrets,
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				},
			},
		},
	}
}

// apply server-side applies a child unless the cache shows it up to date.
func (r *Flagd) apply(ctx context.Context, cached cache.SharedIndexInformer, rc rest.Interface, resource string, obj runtime.Object) error {
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	patch, err := ApplyPatch(obj)
	if err != nil {
		return err
	}
	live, exists, _ := cached.GetIndexer().GetByKey(m.GetNamespace() + "/" + m.GetName())
	if exists {
		if lo, ok := live.(runtime.Object); ok && UpToDate(patch, lo) {
			return nil
		}
	} else if err := notTaken(ctx, rc.Get().Namespace(m.GetNamespace()).Resource(resource).Name(m.GetName()), resource, m); err != nil {
		return err
	}
	err = ApplyBytes(ctx, rc, resource, m.GetNamespace(), m.GetName(), patch)
	if apierrors.IsInvalid(err) && exists {
		// Someone else's edit made the object one that our fields cannot be merged into
		// (a Service port changed under its name: the apply would add a second port of
		// that name). Server-side apply cannot remove fields another manager owns, so a
		// child we control is replaced.
		if err := r.recreate(ctx, rc, resource, live, m); err != nil {
			return err
		}
		err = ApplyBytes(ctx, rc, resource, m.GetNamespace(), m.GetName(), patch)
	}
	if err != nil {
		return err
	}
	r.log.Info().Str("key", m.GetNamespace()+"/"+m.GetName()).Str("resource", resource).Msg("applied")
	return nil
}

// notTaken reads a child the (labelled) cache does not hold: absent, or ours and
// not cached yet, it may be applied; someone else's is a childConflict.
func notTaken(ctx context.Context, get *rest.Request, resource string, desired metav1.Object) error {
	raw, err := get.Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s %s/%s: %w", resource, desired.GetNamespace(), desired.GetName(), err)
	}
	var live struct {
		Metadata metav1.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &live); err != nil {
		return fmt.Errorf("reading %s %s/%s: %w", resource, desired.GetNamespace(), desired.GetName(), err)
	}
	if ref, want := metav1.GetControllerOf(&live.Metadata), metav1.GetControllerOfNoCopy(desired); ref != nil && want != nil && ref.UID == want.UID {
		return nil
	}
	return &childConflict{resource: resource, namespace: desired.GetNamespace(), name: desired.GetName()}
}

// recreate deletes a child we control (only that exact object: a UID precondition)
// so that it can be applied afresh.
func (r *Flagd) recreate(ctx context.Context, rc rest.Interface, resource string, live any, desired metav1.Object) error {
	lm, err := meta.Accessor(live)
	if err != nil {
		return err
	}
	ref := metav1.GetControllerOf(lm)
	if ref == nil || ref.Kind != "Flagd" {
		return fmt.Errorf("%s %s/%s cannot be repaired by an apply and is not controlled by a Flagd", resource, lm.GetNamespace(), lm.GetName())
	}
	uid := lm.GetUID()
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	err = rc.Delete().Namespace(lm.GetNamespace()).Resource(resource).Name(lm.GetName()).Body(&opts).Do(ctx).Error()
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("replacing %s %s/%s: %w", resource, lm.GetNamespace(), lm.GetName(), err)
	}
	r.log.Warn().Str("key", desired.GetNamespace()+"/"+desired.GetName()).Str("resource", resource).
		Msg("an edit made the object unmergeable with its desired state; re-created")
	return nil
}

// deleteOwned deletes the Flagd's child of a resource, if it has one.
func (r *Flagd) deleteOwned(ctx context.Context, cached cache.SharedIndexInformer, rc rest.Interface, resource string, f *v1beta1.Flagd) error {
	live, ok, _ := cached.GetIndexer().GetByKey(f.Namespace + "/" + f.Name)
	if !ok {
		return nil
	}
	m, err := meta.Accessor(live)
	if err != nil || !ownedBy(m, f) {
		return err
	}
	err = rc.Delete().Namespace(f.Namespace).Resource(resource).Name(f.Name).Do(ctx).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		r.log.Info().Str("key", f.Namespace+"/"+f.Name).Str("resource", resource).Msg("deleted (disabled)")
	}
	return err
}

func ownedBy(m metav1.Object, f *v1beta1.Flagd) bool {
	ref := metav1.GetControllerOf(m)
	return ref != nil && ref.Kind == "Flagd" && ref.UID == f.UID
}

// syncRoute applies or removes the HTTPRoute. The Gateway API is optional: when its
// CRD is not installed, an enabled route is reported in the status, not an error.
func (r *Flagd) syncRoute(ctx context.Context, f *v1beta1.Flagd, p flagdPorts) error {
	enabled := f.Spec.GatewayAPIRoutes != nil && f.Spec.GatewayAPIRoutes.Enabled
	served, err := r.gatewayAPIServed(ctx)
	if err != nil {
		return err
	}
	if !served {
		return nil
	}
	route := r.clients.Core.Get().AbsPath("/apis/gateway.networking.k8s.io/v1/namespaces", f.Namespace, "httproutes", f.Name)
	raw, err := route.Do(ctx).Raw()
	var live *unstructured.Unstructured
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("reading HTTPRoute %s/%s: %w", f.Namespace, f.Name, err)
	default:
		live = &unstructured.Unstructured{}
		if err := live.UnmarshalJSON(raw); err != nil {
			return err
		}
	}
	if !enabled {
		if live != nil && ownedBy(live, f) {
			return r.clients.Core.Delete().AbsPath("/apis/gateway.networking.k8s.io/v1/namespaces", f.Namespace, "httproutes", f.Name).Do(ctx).Error()
		}
		return nil
	}
	if live != nil && !ownedBy(live, f) {
		return &childConflict{resource: "httproutes", namespace: f.Namespace, name: f.Name}
	}
	desired := flagdHTTPRoute(f, p)
	patch, err := desired.MarshalJSON()
	if err != nil {
		return err
	}
	if live != nil && UpToDate(patch, live) {
		return nil
	}
	return r.clients.Core.Patch(types.ApplyPatchType).AbsPath("/apis/gateway.networking.k8s.io/v1/namespaces", f.Namespace, "httproutes", f.Name).
		Param("fieldManager", FieldManager).Param("force", "true").Body(patch).Do(ctx).Error()
}

// gatewayAPIServed reports whether the API server serves httproutes of
// gateway.networking.k8s.io/v1, asking at most once a minute.
func (r *Flagd) gatewayAPIServed(ctx context.Context) (bool, error) {
	r.gatewayMu.Lock()
	defer r.gatewayMu.Unlock()
	if time.Since(r.gatewayChecked) < time.Minute {
		return r.gatewayServed, nil
	}
	raw, err := r.clients.Core.Get().AbsPath("/apis/gateway.networking.k8s.io/v1").Do(ctx).Raw()
	switch {
	case apierrors.IsNotFound(err):
		r.gatewayServed = false
	case err != nil:
		return false, fmt.Errorf("discovering the Gateway API: %w", err)
	default:
		var list metav1.APIResourceList
		if err := json.Unmarshal(raw, &list); err != nil {
			return false, fmt.Errorf("discovering the Gateway API: %w", err)
		}
		r.gatewayServed = slices.ContainsFunc(list.APIResources, func(res metav1.APIResource) bool { return res.Name == "httproutes" })
	}
	r.gatewayChecked = time.Now()
	return r.gatewayServed, nil
}

// readiness reports the Deployment's availability and the Service address.
func (r *Flagd) readiness(ctx context.Context, f *v1beta1.Flagd, p flagdPorts) error {
	address := f.Name + "." + f.Namespace + ".svc:" + strconv.Itoa(int(p.Evaluation))
	var ready int32
	status, reason, message := metav1.ConditionFalse, "Progressing", "waiting for the Deployment"
	if obj, ok, _ := r.deployments.GetIndexer().GetByKey(f.Namespace + "/" + f.Name); ok {
		d := obj.(*appsv1.Deployment)
		ready = d.Status.ReadyReplicas
		switch {
		case d.Status.ObservedGeneration < d.Generation:
			message = "the Deployment is being updated"
		case ready > 0:
			status, reason, message = metav1.ConditionTrue, "Available", fmt.Sprintf("%d of %d flagd pods ready", ready, d.Status.Replicas)
		case f.Spec.Replicas != nil && *f.Spec.Replicas == 0:
			status, reason, message = metav1.ConditionTrue, "ScaledToZero", "no replicas requested"
		default:
			message = fmt.Sprintf("0 of %d flagd pods ready", d.Status.Replicas)
		}
	}
	if f.Spec.GatewayAPIRoutes != nil && f.Spec.GatewayAPIRoutes.Enabled {
		if served, err := r.gatewayAPIServed(ctx); err == nil && !served {
			message += "; gatewayApiRoutes is enabled but the Gateway API (httproutes.gateway.networking.k8s.io/v1) is not installed"
		}
	}
	return r.setStatus(ctx, f, status, reason, message, address, ready)
}

// setStatus writes the Flagd's status if it changed (a merge patch of the status
// subresource), so that a steady state writes nothing.
func (r *Flagd) setStatus(ctx context.Context, f *v1beta1.Flagd, status metav1.ConditionStatus, reason, message, address string, ready int32) error {
	next := f.Status.DeepCopy()
	next.ObservedGeneration = f.Generation
	next.Address, next.ReadyReplicas = address, ready
	changed := meta.SetStatusCondition(&next.Conditions, metav1.Condition{Type: v1beta1.ConditionReady, Status: status,
		Reason: reason, Message: message, ObservedGeneration: f.Generation})
	if !changed && next.ObservedGeneration == f.Status.ObservedGeneration && next.Address == f.Status.Address && next.ReadyReplicas == f.Status.ReadyReplicas {
		return nil
	}
	if status == metav1.ConditionFalse && reason != "Progressing" {
		r.recorder.Event(f, corev1.EventTypeWarning, reason, message)
	}
	return patchStatus(ctx, r.clients.Flags, "flagds", f.Namespace, f.Name, next)
}
