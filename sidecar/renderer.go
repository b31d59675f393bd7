package sidecar

import (
	"context"
	"net/http"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
)

// Renderer renders flagd for workloads.
type Renderer struct {
	Config  Config
	Objects Objects
}

// Workload is where flagd runs: the namespace, the service account its pods run as
// (kubernetes sources are granted to it), the owners of what is created for it in
// its namespace from another namespace's objects, and whether it is a standalone
// flagd (a Deployment serving other pods) or a pod's sidecar.
type Workload struct {
	Namespace      string
	ServiceAccount string // "" is "default"
	Owners         []metav1.OwnerReference
	Standalone     bool
	// Configure, when set, adjusts flagd's configuration after the
	// FeatureFlagSources are applied (a standalone Flagd's TLS and tokens); Volumes
	// and Mounts are what those settings read.
	Configure func(*startconfig.Config)
	Volumes   []corev1.Volume
	Mounts    []corev1.VolumeMount
}

// Rendered is flagd for one workload.
type Rendered struct {
	// Spec is the merged FeatureFlagSource spec.
	Spec v1beta1.FeatureFlagSourceSpec
	// Container is the flagd container; Volumes are what its mounts need.
	Container corev1.Container
	Volumes   []corev1.Volume
	// AppEnv is what the application containers of a sidecar's pod get: the
	// provider settings.
	AppEnv []corev1.EnvVar
	// KubernetesSync says a source reads FeatureFlags through the API server.
	KubernetesSync bool
	// Effects are the writes the sources need (grants, ConfigMaps, Secrets), already
	// reduced to what the caches say is missing.
	Effects  []Effect
	Warnings []string
}

// Render merges the workload's FeatureFlagSources, in order, over the operator's
// defaults and renders flagd, or says why it cannot (a missing FeatureFlag, a
// refused cross-namespace reference, a provider flagpole does not run, ...). The
// FeatureFlagSources' own cross-namespace check is the caller's (it resolves them).
func (r *Renderer) Render(ctx context.Context, w Workload, sources []*v1beta1.FeatureFlagSource) (*Rendered, *Denial) {
	specs := make([]*v1beta1.FeatureFlagSourceSpec, len(sources))
	var planned []plannedSource
	for i, ffs := range sources {
		specs[i] = &ffs.Spec
		for j, s := range ffs.Spec.Sources {
			planned = append(planned, plannedSource{Source: s, from: ffs, index: j})
		}
	}
	spec := mergeSources(r.Config.Defaults, specs)
	plan, d := r.planSources(ctx, w, planned, spec.DefaultSyncProvider)
	if d != nil {
		return nil, d
	}
	if plan.proxy && !w.Standalone {
		if d := r.flagdProxyReady(); d != nil {
			return nil, d
		}
	}
	if len(plan.grants) > 0 {
		grants, d := r.planGrants(ctx, w, plan.grants)
		if d != nil {
			return nil, d
		}
		plan.effects = append(plan.effects, grants...)
	}
	c, err := r.container(w, &spec, plan)
	if err != nil {
		return nil, deny(http.StatusBadRequest, "%v", err)
	}
	out := &Rendered{Spec: spec, Container: c, Volumes: append(plan.volumes, w.Volumes...), AppEnv: appEnv(&spec), KubernetesSync: plan.k8sSync, Effects: plan.effects}
	if len(spec.SyncProviderArgs) > 0 {
		out.Warnings = append(out.Warnings, "syncProviderArgs are ignored: flagd removed --sync-provider-args (flagd #1075) and flagpole's sidecar has no such option")
	}
	return out, nil
}

// planGrants returns the RBAC grants the workload's service account still lacks:
// read access to the FeatureFlags its kubernetes and flagd-proxy sources name, per
// namespace.
// Nothing is returned when the grant is already in place, so such a rendering makes
// no API call.
func (r *Renderer) planGrants(ctx context.Context, w Workload, needs map[string][]string) ([]Effect, *Denial) {
	name := w.ServiceAccount
	if name == "" {
		name = "default"
	}
	sa := Ref{Namespace: w.Namespace, Name: name}
	if _, err := r.Objects.ServiceAccount(ctx, sa); err != nil {
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
		granted, bound := r.Objects.Grant(ns, sa)
		want := union(granted, needs[ns])
		if bound && len(want) == len(granted) {
			continue
		}
		effects = append(effects, GrantFlags{Namespace: ns, ServiceAccount: sa, Flags: want})
	}
	return effects, nil
}
