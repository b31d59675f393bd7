package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/sidecar"
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
	Objects sidecar.Objects
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
	if pod.Annotations[AnnotationInjected] != "" && hasContainer(pod.Spec.InitContainers, sidecar.ContainerName) {
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
	refs, err := sidecar.ParseRefList(list, pod.Namespace)
	if err != nil {
		return Deny(http.StatusBadRequest, "annotation %s: %v", AnnotationFeatureFlagSource, err)
	}
	r := &sidecar.Renderer{Config: in.Config.Sidecar, Objects: in.Objects}
	var sources []*v1beta1.FeatureFlagSource
	for _, ref := range refs {
		ffs, err := in.Objects.FeatureFlagSource(ctx, ref)
		switch {
		case apierrors.IsNotFound(err):
			if d := r.CrossNamespaceMissing(pod.Namespace, "FeatureFlagSource", ref); d != nil {
				return Deny(d.Code, "%s", d.Message) // another namespace's: no existence oracle
			}
			return Deny(http.StatusNotFound, "%v", err)
		case err != nil:
			return Deny(http.StatusInternalServerError, "reading FeatureFlagSource %s: %v", ref, err)
		}
		if d := r.CrossNamespaceCheck(pod.Namespace, "FeatureFlagSource", ffs); d != nil {
			return Deny(d.Code, "%s", d.Message)
		}
		sources = append(sources, ffs)
	}
	w := sidecar.Workload{Namespace: pod.Namespace, ServiceAccount: pod.Spec.ServiceAccountName}
	if len(pod.OwnerReferences) > 0 { // what is created for another namespace's flags goes with the pod's owner
		o := pod.OwnerReferences[0]
		w.Owners = []metav1.OwnerReference{{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}}
	}
	rendered, d := r.Render(ctx, w, sources)
	if d != nil {
		return Deny(d.Code, "%s", d.Message)
	}
	if hasContainer(pod.Spec.Containers, sidecar.ContainerName) {
		return Deny(http.StatusBadRequest, "the pod already has a container named %q; the sidecar cannot be injected next to it", sidecar.ContainerName)
	}
	for _, v := range rendered.Volumes {
		if slices.ContainsFunc(pod.Spec.Volumes, func(pv corev1.Volume) bool { return pv.Name == v.Name }) {
			return Deny(http.StatusBadRequest, "the pod already has a volume named %q", v.Name)
		}
	}

	var p patch
	p.add(pointer("metadata", "annotations", AnnotationInjected), "true")
	if rendered.KubernetesSync {
		p.add(pointer("metadata", "annotations", AnnotationAllowK8sSync), "true")
	}
	switch i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == sidecar.ContainerName }); {
	case i >= 0: // OFO replaces an init container named flagd in place
		p.replace(pointer("spec", "initContainers", i), rendered.Container)
	case len(pod.Spec.InitContainers) == 0:
		p.add(pointer("spec", "initContainers"), []corev1.Container{rendered.Container})
	default: // first, so that the other init containers can read flags too
		p.add(pointer("spec", "initContainers", 0), rendered.Container)
	}
	addVolumes(&p, pod, rendered.Volumes)
	addEnv(&p, pod, rendered.AppEnv)
	return patched(p, rendered.Warnings, rendered.Effects)
}

// injectInProcess is in-process mode (§2.11): environment only, in every app
// container; no sidecar, no RBAC.
func (in *Injector) injectInProcess(ctx context.Context, pod *corev1.Pod, list string) Decision {
	refs, err := sidecar.ParseRefList(list, pod.Namespace)
	if err != nil {
		return Deny(http.StatusBadRequest, "annotation %s: %v", AnnotationInProcess, err)
	}
	r := &sidecar.Renderer{Config: in.Config.Sidecar, Objects: in.Objects}
	var specs []*v1beta1.InProcessConfigurationSpec
	for _, ref := range refs {
		ipc, err := in.Objects.InProcessConfiguration(ctx, ref)
		switch {
		case apierrors.IsNotFound(err):
			if d := r.CrossNamespaceMissing(pod.Namespace, "InProcessConfiguration", ref); d != nil {
				return Deny(d.Code, "%s", d.Message) // another namespace's: no existence oracle
			}
			return Deny(http.StatusNotFound, "%v", err)
		case err != nil:
			return Deny(http.StatusInternalServerError, "reading InProcessConfiguration %s: %v", ref, err)
		}
		if d := r.CrossNamespaceCheck(pod.Namespace, "InProcessConfiguration", ipc); d != nil {
			return Deny(d.Code, "%s", d.Message)
		}
		specs = append(specs, &ipc.Spec)
	}
	var pt patch
	pt.add(pointer("metadata", "annotations", AnnotationInjected), "true")
	addEnv(&pt, pod, sidecar.InProcessEnv(in.Config.InProcess, specs))
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
