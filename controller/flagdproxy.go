package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/proxy"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// FlagdProxyOptions configure the flagd-proxy the controller deploys (OFO's
// FLAGD_PROXY_* settings, §5.2, and flagpole's caller authentication).
type FlagdProxyOptions struct {
	// Namespace is the operator's: the proxy runs there.
	Namespace string
	// Image is the proxy's image: the operator's own (the flagpole binary).
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Replicas, Port, ManagementPort and Debug are OFO's FLAGD_PROXY_REPLICA_COUNT,
	// FLAGD_PROXY_PORT, FLAGD_PROXY_MANAGEMENT_PORT and FLAGD_PROXY_DEBUG_LOGGING.
	Replicas             int32
	Port, ManagementPort int32
	Debug                bool
	// Auth and Audience are the proxy's --auth and --token-audience.
	Auth, Audience string
	// Labels and Annotations (--labels, --annotations) go on the proxy's pods;
	// ImagePullSecrets too.
	Labels, Annotations map[string]string
	ImagePullSecrets    []string
	// Version is the app.kubernetes.io/version label (the operator's version).
	Version string
	// TLS: the proxy serves its sync port with the certificate of the Secret
	// sidecar.FlagdProxyTLSSecret (which the operator issues), and CABundle
	// returns the CA bundle the controller keeps in every namespace's
	// sidecar.FlagdProxyCAConfigMap.
	TLS      bool
	CABundle func() []byte
}

// Where the proxy's pods mount its serving certificate.
const (
	proxyTLSVolume = "tls"
	proxyTLSDir    = "/etc/flagpole/flagd-proxy-tls"
)

// FlagdProxy reconciles the operator's flagd-proxy (OFO §4.2) whenever a
// FeatureFlagSource may send pods to it (sidecar.Config.UsesFlagdProxy, the
// default provider included): its ServiceAccount, the ClusterRoleBinding of the
// proxy's ClusterRole (proxy.ClusterRoleName, installed with the operator) to
// it, a Deployment running this image as `flagpole flagd-proxy start` with the port
// it is told (OFO forgets --port), probes, resources and a restricted security
// context, the Service flagd-proxy-svc and the PodDisruptionBudget — all applied
// server-side only when the caches show drift, watched so that an edited or
// deleted object is restored. Nothing is deleted when no FeatureFlagSource uses it
// any more (pods created earlier may still), as OFO. Objects of these names that
// neither flagpole nor the OpenFeature Operator manages are left alone and
// reported.
type FlagdProxy struct {
	*Controller
	cluster *sidecar.Cluster
	uses    func(*v1beta1.FeatureFlagSource) bool
	opts    FlagdProxyOptions
	key     cache.ObjectName
	log     zerolog.Logger
	clients Clients
	policy  rest.Interface
	// children are the proxy's objects, deployments among them.
	children    []proxyChild
	deployments proxyChild
}

// proxyChild is one object of the proxy, with its cache and its desired state.
type proxyChild struct {
	resource string
	client   rest.Interface
	informer cache.SharedIndexInformer
	name     string
	cluster  bool // cluster-scoped
	desired  func() (runtime.Object, error)
}

// FlagdProxyBindingName is the proxy's ClusterRoleBinding in namespace (a
// namespace has no dots, so two operators' bindings never share a name).
func FlagdProxyBindingName(namespace string) string { return proxy.ClusterRoleName + "." + namespace }

// ofoManagedBy is the OpenFeature Operator's managed-by label value: a proxy it
// deployed is taken over.
const ofoManagedBy = "open-feature-operator"

// NewFlagdProxy builds the flagd-proxy controller; uses says whether a
// FeatureFlagSource needs the proxy.
func NewFlagdProxy(cfg *rest.Config, cluster *sidecar.Cluster, clients Clients, uses func(*v1beta1.FeatureFlagSource) bool, opts FlagdProxyOptions, metrics *Metrics, log zerolog.Logger) (*FlagdProxy, error) {
	if opts.Namespace == "" || opts.Image == "" {
		return nil, errors.New("flagd-proxy: the operator's namespace and image are required")
	}
	policy, err := kube.RESTClient(cfg, policyv1.SchemeGroupVersion, policyv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	r := &FlagdProxy{cluster: cluster, uses: uses, opts: opts, clients: clients, policy: policy,
		key: cache.ObjectName{Namespace: opts.Namespace, Name: sidecar.FlagdProxyDeployment},
		log: log.With().Str("controller", "flagd-proxy").Logger()}
	r.Controller = New("flagd-proxy", r.sync, log, metrics)
	child := func(resource string, rc rest.Interface, obj, list runtime.Object, name string, clusterScoped bool, desired func() (runtime.Object, error)) proxyChild {
		o := kube.InformerOptions{Namespace: opts.Namespace, FieldSelector: "metadata.name=" + name}
		if clusterScoped {
			o.Namespace = ""
		}
		return proxyChild{resource: resource, client: rc, informer: kube.NewInformer(rc, resource, obj, list, o), name: name, cluster: clusterScoped, desired: desired}
	}
	fixed := func(obj runtime.Object) func() (runtime.Object, error) {
		return func() (runtime.Object, error) { return obj, nil }
	}
	r.deployments = child("deployments", clients.Apps, &appsv1.Deployment{}, &appsv1.DeploymentList{}, sidecar.FlagdProxyDeployment, false,
		func() (runtime.Object, error) { return r.deployment() })
	// in order: what the Deployment's pods need first
	r.children = []proxyChild{
		child("serviceaccounts", clients.Core, &corev1.ServiceAccount{}, &corev1.ServiceAccountList{}, sidecar.FlagdProxyServiceAccount, false, fixed(r.serviceAccount())),
		child("clusterrolebindings", clients.RBAC, &rbacv1.ClusterRoleBinding{}, &rbacv1.ClusterRoleBindingList{}, FlagdProxyBindingName(opts.Namespace), true, fixed(r.binding())),
		r.deployments,
		child("services", clients.Core, &corev1.Service{}, &corev1.ServiceList{}, sidecar.FlagdProxyService, false, fixed(r.service())),
		child("poddisruptionbudgets", policy, &policyv1.PodDisruptionBudget{}, &policyv1.PodDisruptionBudgetList{}, sidecar.FlagdProxyPDB, false, fixed(r.pdb())),
	}
	enqueue := func(any) { r.EnqueueKey(r.key) }
	var errs []error
	for _, c := range r.children {
		_, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue})
		errs = append(errs, err)
	}
	onSource := func(obj any) {
		if ffs, ok := obj.(*v1beta1.FeatureFlagSource); ok && uses(ffs) {
			r.EnqueueKey(r.key)
		}
	}
	_, err = cluster.Sources.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onSource, UpdateFunc: func(_, o any) { onSource(o) }})
	errs = append(errs, err)
	if opts.TLS && opts.CABundle == nil {
		errs = append(errs, errors.New("flagd-proxy: TLS needs the CA bundle"))
	}
	onConfigMap := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == sidecar.FlagdProxyCAConfigMap {
			r.EnqueueKey(r.key)
		}
	}
	_, err = cluster.ConfigMaps.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onConfigMap, UpdateFunc: func(_, o any) { onConfigMap(o) }})
	errs = append(errs, err)
	if _, err := r.deployment(); err != nil { // bad settings fail at start, not at the first reconcile
		errs = append(errs, err)
	}
	return r, errors.Join(errs...)
}

// Informers are the caches the controller owns (the caller runs them).
func (r *FlagdProxy) Informers() []cache.SharedIndexInformer {
	out := make([]cache.SharedIndexInformer, len(r.children))
	for i, c := range r.children {
		out[i] = c.informer
	}
	return out
}

// needed reports whether a FeatureFlagSource uses the proxy, or it is deployed
// already (kept current: an upgrade of the operator upgrades it, as OFO).
func (r *FlagdProxy) needed() bool {
	if _, ok, _ := r.deployments.informer.GetIndexer().GetByKey(r.key.String()); ok {
		return true
	}
	return slices.ContainsFunc(r.cluster.Sources.GetIndexer().List(), func(obj any) bool {
		ffs, ok := obj.(*v1beta1.FeatureFlagSource)
		return ok && r.uses(ffs)
	})
}

// CABundleChanged asks for the CA ConfigMaps to be brought up to date (the
// operator's certificate source calls it when the proxy's CA bundle changes).
func (r *FlagdProxy) CABundleChanged() { r.EnqueueKey(r.key) }

// sync applies the proxy's objects and brings the CA ConfigMaps up to date.
func (r *FlagdProxy) sync(ctx context.Context, _ cache.ObjectName) error {
	if !r.needed() {
		return nil
	}
	var errs []error
	for _, c := range r.children {
		obj, err := c.desired()
		if err == nil {
			err = r.apply(ctx, c, obj)
		}
		errs = append(errs, err)
	}
	errs = append(errs, r.syncCAConfigMaps(ctx))
	return errors.Join(errs...)
}

// syncCAConfigMaps writes the current CA bundle into every CA ConfigMap the
// webhook created (sidecar.FlagdProxyCAConfigMap, in the namespaces of pods that
// read through the proxy) whose hash annotation shows another: a new CA reaches
// the sidecars (the kubelet updates the projected file, the grpc source reads it
// for its next connection) before it signs the proxy's certificate
// (webhook/certs' propagation time). Nothing is written while the bundle is
// unknown, and ConfigMaps of that name without the webhook's label are not
// touched.
func (r *FlagdProxy) syncCAConfigMaps(ctx context.Context) error {
	if !r.opts.TLS {
		return nil
	}
	bundle := r.opts.CABundle()
	if len(bundle) == 0 {
		return nil
	}
	hash := sidecar.CAHash(bundle)
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{sidecar.AnnotationCAHash: hash}},
		"data":     map[string]string{sidecar.FlagdProxyCAKey: string(bundle)},
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range r.cluster.ConfigMaps.GetIndexer().List() {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != sidecar.FlagdProxyCAConfigMap || cm.Labels[sidecar.LabelManagedBy] != sidecar.ManagedBy || cm.Annotations[sidecar.AnnotationCAHash] == hash {
			continue
		}
		err := r.clients.Core.Patch(types.MergePatchType).Namespace(cm.Namespace).Resource("configmaps").Name(cm.Name).
			Param("fieldManager", FieldManager).Body(patch).Do(ctx).Error()
		switch {
		case apierrors.IsNotFound(err): // deleted meanwhile: the webhook re-creates it for the next pod
		case err != nil:
			errs = append(errs, fmt.Errorf("updating the flagd-proxy CA in ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err))
		default:
			r.log.Info().Str("configmap", cm.Namespace+"/"+cm.Name).Str("ca_sha256", hash).Msg("flagd-proxy CA bundle updated")
		}
	}
	return errors.Join(errs...)
}

// apply server-side applies one object unless the cache shows it up to date. An
// object of that name that neither flagpole nor OFO manages is not touched; one
// that an apply cannot be merged into (a Deployment selector changed) is replaced.
func (r *FlagdProxy) apply(ctx context.Context, c proxyChild, obj runtime.Object) error {
	key := c.name
	if !c.cluster {
		key = r.opts.Namespace + "/" + c.name
	}
	ns := r.opts.Namespace
	if c.cluster {
		ns = ""
	}
	patch, err := ApplyPatch(obj)
	if err != nil {
		return err
	}
	live, exists, _ := c.informer.GetIndexer().GetByKey(key)
	if exists {
		m, err := meta.Accessor(live)
		if err != nil {
			return err
		}
		if by := m.GetLabels()[labelManagedBy]; by != managedBy && by != ofoManagedBy {
			return fmt.Errorf("%s %s exists and is not managed by flagpole (label %s=%q): rename or delete it so that the operator can deploy the flagd-proxy", c.resource, key, labelManagedBy, by)
		}
		if lo, ok := live.(runtime.Object); ok && UpToDate(patch, lo) {
			return nil
		}
	}
	err = ApplyBytes(ctx, c.client, c.resource, ns, c.name, patch)
	if apierrors.IsInvalid(err) && exists {
		m, _ := meta.Accessor(live)
		uid := m.GetUID()
		opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
		if derr := c.client.Delete().Namespace(ns).Resource(c.resource).Name(c.name).Body(&opts).Do(ctx).Error(); derr != nil && !apierrors.IsNotFound(derr) {
			return fmt.Errorf("replacing %s %s: %w", c.resource, key, derr)
		}
		r.log.Warn().Str("key", key).Str("resource", c.resource).Msg("an edit made the object unmergeable with its desired state; re-created")
		err = ApplyBytes(ctx, c.client, c.resource, ns, c.name, patch)
	}
	if err != nil {
		return err
	}
	r.log.Info().Str("key", key).Str("resource", c.resource).Msg("applied")
	return nil
}

// proxyLabels are the labels of every proxy object (OFO's, managed by flagpole).
func (r *FlagdProxy) proxyLabels() map[string]string {
	l := map[string]string{"app": sidecar.FlagdProxyDeployment, labelManagedBy: managedBy}
	if r.opts.Version != "" {
		l["app.kubernetes.io/version"] = r.opts.Version
	}
	return l
}

// selector selects the proxy's pods (OFO's Service and PDB selector).
func (r *FlagdProxy) selector() map[string]string {
	return map[string]string{"app.kubernetes.io/name": sidecar.FlagdProxyDeployment, labelManagedBy: managedBy}
}

func (r *FlagdProxy) meta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: r.opts.Namespace, Name: name, Labels: r.proxyLabels()}
}

func (r *FlagdProxy) serviceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: r.meta(sidecar.FlagdProxyServiceAccount)}
}

func (r *FlagdProxy) binding() *rbacv1.ClusterRoleBinding {
	m := r.meta(FlagdProxyBindingName(r.opts.Namespace))
	m.Namespace = ""
	return &rbacv1.ClusterRoleBinding{TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: m,
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: proxy.ClusterRoleName},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: r.opts.Namespace, Name: sidecar.FlagdProxyServiceAccount}}}
}

// deployment renders the proxy's Deployment.
func (r *FlagdProxy) deployment() (*appsv1.Deployment, error) {
	cfg := proxy.DefaultConfig()
	var err error
	if cfg.Port, err = tcpPort("FLAGD_PROXY_PORT", r.opts.Port); err != nil {
		return nil, err
	}
	if cfg.ManagementPort, err = tcpPort("FLAGD_PROXY_MANAGEMENT_PORT", r.opts.ManagementPort); err != nil {
		return nil, err
	}
	cfg.Debug = r.opts.Debug
	if r.opts.Auth != "" {
		cfg.Auth = r.opts.Auth
	}
	if r.opts.Audience != "" {
		cfg.TokenAudience = r.opts.Audience
	}
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if r.opts.TLS {
		cfg.ServerCertPath, cfg.ServerKeyPath = proxyTLSDir+"/tls.crt", proxyTLSDir+"/tls.key"
		// the serving key pair only: the Secret's CA key stays out of the pod
		volumes = []corev1.Volume{{Name: proxyTLSVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: sidecar.FlagdProxyTLSSecret, Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}}}}}
		mounts = []corev1.VolumeMount{{Name: proxyTLSVolume, MountPath: proxyTLSDir, ReadOnly: true}}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("flagd-proxy: %w", err)
	}
	args, err := cfg.Args()
	if err != nil {
		return nil, err
	}
	podLabels := r.proxyLabels()
	maps.Copy(podLabels, r.selector())
	for k, v := range r.opts.Labels {
		if _, ours := podLabels[k]; !ours {
			podLabels[k] = v
		}
	}
	var pullSecrets []corev1.LocalObjectReference
	for _, s := range r.opts.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(r.opts.ManagementPort), Scheme: corev1.URISchemeHTTP}},
			InitialDelaySeconds: 5}
	}
	yes, no := true, false
	replicas := r.opts.Replicas
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: r.meta(sidecar.FlagdProxyDeployment),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": sidecar.FlagdProxyDeployment}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: r.opts.Annotations},
				Spec: corev1.PodSpec{
					ServiceAccountName: sidecar.FlagdProxyServiceAccount,
					ImagePullSecrets:   pullSecrets,
					Volumes:            volumes,
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &yes, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
						WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: r.selector()}}},
					Containers: []corev1.Container{{
						Name:            sidecar.FlagdProxyDeployment,
						Image:           r.opts.Image,
						ImagePullPolicy: r.opts.ImagePullPolicy,
						Args:            args,
						VolumeMounts:    mounts,
						Ports: []corev1.ContainerPort{{Name: "port", ContainerPort: r.opts.Port, Protocol: corev1.ProtocolTCP},
							{Name: "management-port", ContainerPort: r.opts.ManagementPort, Protocol: corev1.ProtocolTCP}},
						// the Go runtime collects harder as it nears the container's limit
						Env: []corev1.EnvVar{{Name: "GOMEMLIMIT", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{
							Resource: "limits.memory", Divisor: resource.MustParse("1")}}}},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							Privileged: &no, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
							SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					}},
				},
			},
		},
	}, nil
}

func (r *FlagdProxy) service() *corev1.Service {
	grpc := "grpc"
	return &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: r.meta(sidecar.FlagdProxyService),
		Spec: corev1.ServiceSpec{Selector: r.selector(), Ports: []corev1.ServicePort{{Name: "flagd-proxy", AppProtocol: &grpc,
			Port: r.opts.Port, TargetPort: intstr.FromInt32(r.opts.Port), Protocol: corev1.ProtocolTCP}}}}
}

// pdb is OFO's PodDisruptionBudget: minAvailable 0 for one replica, else half.
func (r *FlagdProxy) pdb() *policyv1.PodDisruptionBudget {
	minAvailable := intstr.FromInt32(0)
	if r.opts.Replicas > 1 {
		minAvailable = intstr.FromInt32(r.opts.Replicas / 2)
	}
	return &policyv1.PodDisruptionBudget{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"}, ObjectMeta: r.meta(sidecar.FlagdProxyPDB),
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvailable, Selector: &metav1.LabelSelector{MatchLabels: r.selector()}}}
}

// tcpPort is a port setting as a TCP port; out of range is an error naming it.
func tcpPort(name string, v int32) (uint16, error) {
	if v < 1 || v > math.MaxUint16 {
		return 0, fmt.Errorf("flagd-proxy: %s %d: want a TCP port, 1-65535", name, v)
	}
	return uint16(v), nil
}
