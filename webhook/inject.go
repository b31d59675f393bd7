package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// OFO's messages (ofo-compat §2.3), kept word for word: scripts and runbooks match them.
const (
	msgDisabled   = "OpenFeature is disabled"
	msgOrphan     = "static or orphaned pods cannot be mutated"
	msgNoMode     = "cannot mutate pods without a 'featureflagsource' or 'inprocessconfiguration' annotation as openfeature.dev/enabled annotation is present with a value true"
	msgInjected   = "the flagd sidecar is already injected"
	msgNotCreated = "pods are mutated on CREATE only"
)

// Injector is the pod mutation webhook (/mutate-v1-pod): OFO's annotations and
// FeatureFlagSources give OFO's pods, with flagpole's sidecar and fixes (see
// docs/webhook.md).
type Injector struct {
	Config  InjectorConfig
	Objects Objects
}

// Admit implements AdmitFunc. Pods are mutated on CREATE only: a pod spec is
// immutable afterwards, and re-mutating UPDATEs is what makes OFO refuse every
// label change of an injected pod (#793).
func (in *Injector) Admit(ctx context.Context, req *admissionv1.AdmissionRequest) Decision {
	if req.Operation != admissionv1.Create {
		return Allow(msgNotCreated)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return Deny(http.StatusBadRequest, "decoding the pod: %v", err)
	}
	if pod.Namespace == "" { // old API servers leave it empty on CREATE (OFO #500)
		pod.Namespace = req.Namespace
	}
	if pod.Annotations[AnnotationEnabled] != "true" {
		return Allow(msgDisabled)
	}
	if pod.Annotations[AnnotationInjected] != "" && hasContainer(pod.Spec.InitContainers, SidecarName) {
		return Allow(msgInjected)
	}
	if len(pod.OwnerReferences) == 0 {
		return Deny(http.StatusForbidden, msgOrphan)
	}
	if list, ok := pod.Annotations[AnnotationFeatureFlagSource]; ok {
		return in.injectSidecar(ctx, &pod, list)
	}
	if list, ok := pod.Annotations[AnnotationInProcess]; ok {
		return in.injectInProcess(ctx, &pod, list)
	}
	return Deny(http.StatusForbidden, msgNoMode)
}

// injectSidecar is sidecar (rpc) mode: the flagd container as a native sidecar,
// the provider settings in every app container, and what the sources need.
func (in *Injector) injectSidecar(ctx context.Context, pod *corev1.Pod, list string) Decision {
	refs, err := ParseRefList(list, pod.Namespace)
	if err != nil {
		return Deny(http.StatusBadRequest, "annotation %s: %v", AnnotationFeatureFlagSource, err)
	}
	var specs []*v1beta1.FeatureFlagSourceSpec
	var sources []plannedSource
	for _, ref := range refs {
		ffs, err := in.Objects.FeatureFlagSource(ctx, ref)
		switch {
		case apierrors.IsNotFound(err):
			return Deny(http.StatusNotFound, "%v", err)
		case err != nil:
			return Deny(http.StatusInternalServerError, "reading FeatureFlagSource %s: %v", ref, err)
		}
		if d := in.crossNamespace(pod, "FeatureFlagSource", ffs); d != nil {
			return *d
		}
		specs = append(specs, &ffs.Spec)
		for i, s := range ffs.Spec.Sources {
			sources = append(sources, plannedSource{Source: s, from: ffs, index: i})
		}
	}
	spec := mergeSources(in.Config.Sidecar, specs)
	plan, d := in.planSources(ctx, pod, sources, spec.DefaultSyncProvider)
	if d != nil {
		return *d
	}
	if plan.k8sSync {
		grants, d := in.planGrants(ctx, pod, plan.grants)
		if d != nil {
			return *d
		}
		plan.effects = append(plan.effects, grants...)
	}
	if hasContainer(pod.Spec.Containers, SidecarName) {
		return Deny(http.StatusBadRequest, "the pod already has a container named %q; the sidecar cannot be injected next to it", SidecarName)
	}
	for _, v := range plan.volumes {
		if slices.ContainsFunc(pod.Spec.Volumes, func(pv corev1.Volume) bool { return pv.Name == v.Name }) {
			return Deny(http.StatusBadRequest, "the pod already has a volume named %q", v.Name)
		}
	}
	sidecar, err := in.sidecarContainer(&spec, plan)
	if err != nil {
		return Deny(http.StatusBadRequest, "%v", err)
	}

	var p patch
	p.add(pointer("metadata", "annotations", AnnotationInjected), "true")
	if plan.k8sSync {
		p.add(pointer("metadata", "annotations", AnnotationAllowK8sSync), "true")
	}
	switch i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == SidecarName }); {
	case i >= 0: // OFO replaces an init container named flagd in place
		p.replace(pointer("spec", "initContainers", i), sidecar)
	case len(pod.Spec.InitContainers) == 0:
		p.add(pointer("spec", "initContainers"), []corev1.Container{sidecar})
	default: // first, so that the other init containers can read flags too
		p.add(pointer("spec", "initContainers", 0), sidecar)
	}
	addVolumes(&p, pod, plan.volumes)
	addEnv(&p, pod, appEnv(&spec))
	var warnings []string
	if len(spec.SyncProviderArgs) > 0 {
		warnings = append(warnings, "syncProviderArgs are ignored: flagd removed --sync-provider-args (flagd #1075) and flagpole's sidecar has no such option")
	}
	return patched(p, warnings, plan.effects)
}

// planGrants returns the RBAC grants the pod's service account still lacks: read
// access to the FeatureFlags its kubernetes sources name, per namespace. Nothing is
// returned when the grant is already in place, so such an admission makes no API
// call.
func (in *Injector) planGrants(ctx context.Context, pod *corev1.Pod, needs map[string][]string) ([]Effect, *Decision) {
	name := pod.Spec.ServiceAccountName
	if name == "" {
		name = "default"
	}
	sa := Ref{Namespace: pod.Namespace, Name: name}
	if _, err := in.Objects.ServiceAccount(ctx, sa); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, deny(http.StatusForbidden, "serviceaccounts %q not found", name)
		}
		return nil, deny(http.StatusInternalServerError, "reading ServiceAccount %s: %v", sa, err)
	}
	namespaces := make([]string, 0, len(needs))
	for ns := range needs {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	var effects []Effect
	for _, ns := range namespaces {
		granted, bound := in.Objects.Grant(ns, sa)
		want := union(granted, needs[ns])
		if bound && len(want) == len(granted) {
			continue
		}
		effects = append(effects, GrantFlags{Namespace: ns, ServiceAccount: sa, Flags: want})
	}
	return effects, nil
}

// injectInProcess is in-process mode (§2.11): environment only, in every app
// container; no sidecar, no RBAC.
func (in *Injector) injectInProcess(ctx context.Context, pod *corev1.Pod, list string) Decision {
	refs, err := ParseRefList(list, pod.Namespace)
	if err != nil {
		return Deny(http.StatusBadRequest, "annotation %s: %v", AnnotationInProcess, err)
	}
	var specs []*v1beta1.InProcessConfigurationSpec
	for _, ref := range refs {
		ipc, err := in.Objects.InProcessConfiguration(ctx, ref)
		switch {
		case apierrors.IsNotFound(err):
			return Deny(http.StatusNotFound, "%v", err)
		case err != nil:
			return Deny(http.StatusInternalServerError, "reading InProcessConfiguration %s: %v", ref, err)
		}
		if d := in.crossNamespace(pod, "InProcessConfiguration", ipc); d != nil {
			return *d
		}
		specs = append(specs, &ipc.Spec)
	}
	cfg, userEnv := mergeInProcess(in.Config.InProcess, specs)
	p := cfg.EnvVarPrefix
	var env []corev1.EnvVar
	for _, e := range userEnv {
		v := *e.DeepCopy()
		v.Name = envKey(p, e.Name)
		env = append(env, v)
	}
	env = append(env,
		corev1.EnvVar{Name: envKey(p, "HOST"), Value: cfg.Host},
		corev1.EnvVar{Name: envKey(p, "PORT"), Value: strconv.Itoa(int(cfg.Port))},
		corev1.EnvVar{Name: envKey(p, "TLS"), Value: strconv.FormatBool(cfg.TLS)},
		corev1.EnvVar{Name: envKey(p, "CACHE"), Value: cfg.Cache},
		corev1.EnvVar{Name: envKey(p, "MAX_CACHE_SIZE"), Value: strconv.Itoa(int(cfg.CacheMaxSize))},
		corev1.EnvVar{Name: envKey(p, "RESOLVER"), Value: "in-process"},
	)
	for _, opt := range []struct{ name, value string }{
		{"SOCKET_PATH", cfg.SocketPath}, {"OFFLINE_FLAG_SOURCE_PATH", cfg.OfflineFlagSourcePath}, {"SOURCE_SELECTOR", cfg.Selector},
	} {
		if opt.value != "" {
			env = append(env, corev1.EnvVar{Name: envKey(p, opt.name), Value: opt.value})
		}
	}
	var pt patch
	pt.add(pointer("metadata", "annotations", AnnotationInjected), "true")
	addEnv(&pt, pod, env)
	return patched(pt, nil, nil)
}

func patched(p patch, warnings []string, effects []Effect) Decision {
	b, err := p.bytes()
	if err != nil {
		return Deny(http.StatusInternalServerError, "encoding the patch: %v", err)
	}
	return Decision{Allowed: true, Patch: b, Warnings: warnings, Effects: effects}
}

// addEnv adds env to every app container, except the names a container already
// defines (the app's own setting wins; OFO appends duplicates).
func addEnv(p *patch, pod *corev1.Pod, env []corev1.EnvVar) {
	for i, c := range pod.Spec.Containers {
		var missing []corev1.EnvVar
		for _, e := range env {
			if !slices.ContainsFunc(c.Env, func(have corev1.EnvVar) bool { return have.Name == e.Name }) {
				missing = append(missing, e)
			}
		}
		switch {
		case len(missing) == 0:
		case len(c.Env) == 0:
			p.add(pointer("spec", "containers", i, "env"), missing)
		default:
			for _, e := range missing {
				p.add(pointer("spec", "containers", i, "env", "-"), e)
			}
		}
	}
}

func addVolumes(p *patch, pod *corev1.Pod, volumes []corev1.Volume) {
	switch {
	case len(volumes) == 0:
	case len(pod.Spec.Volumes) == 0:
		p.add(pointer("spec", "volumes"), volumes)
	default:
		for _, v := range volumes {
			p.add(pointer("spec", "volumes", "-"), v)
		}
	}
}

func hasContainer(cs []corev1.Container, name string) bool {
	return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}
