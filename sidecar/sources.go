package sidecar

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// fileMountRoot is where file sources are mounted in the sidecar (OFO's layout:
// /etc/flagd/<ns>_<name>/<ns>_<name>.flagd.json).
const fileMountRoot = "/etc/flagd"

// httpAuthKey is the key of an http source's Authorization value in its Secret.
const httpAuthKey = "authorization"

// plannedSource is one FeatureFlagSource source as the merged spec lists it, with
// the object it came from (for messages and ownership).
type plannedSource struct {
	v1beta1.Source
	from *v1beta1.FeatureFlagSource
	// index is the source's position in its FeatureFlagSource's spec.sources.
	index int
}

// where names a source in messages: "FeatureFlagSource ns/name spec.sources[i]".
func (s plannedSource) where() string {
	return fmt.Sprintf("FeatureFlagSource %s/%s spec.sources[%d]", s.from.Namespace, s.from.Name, s.index)
}

// sidecarPlan is what the sources of a pod need: the --sources entries, and the
// volumes, mounts, environment and side effects that make them work.
type sidecarPlan struct {
	sources    []flagsync.SourceConfig
	k8sSync    bool
	proxy      bool // a flagd-proxy source: the proxy's token is mounted
	volumes    []corev1.Volume
	mounts     []corev1.VolumeMount
	sidecarEnv []corev1.EnvVar
	effects    []Effect
	grants     map[string][]string // FeatureFlag namespace → flags the pod's service account needs
}

// planSources turns every source into its --sources entry, or returns the denial
// that explains why the pod cannot get it.
func (r *Renderer) planSources(ctx context.Context, w Workload, sources []plannedSource, defaultProvider string) (*sidecarPlan, *Denial) {
	plan := &sidecarPlan{grants: map[string][]string{}}
	for i, src := range sources {
		provider := src.Provider
		if provider == "" {
			provider = defaultProvider
		}
		var d *Denial
		switch provider {
		case v1beta1.SyncProviderKubernetes:
			d = r.planKubernetes(ctx, w, src, plan)
		case v1beta1.SyncProviderFile:
			d = r.planFile(ctx, w, src, plan)
		case v1beta1.SyncProviderHTTP:
			d = r.planHTTP(w, src, i, plan)
		case v1beta1.SyncProviderGRPC:
			plan.sources = append(plan.sources, flagsync.SourceConfig{URI: src.Source.Source, Provider: flagsync.ProviderGRPC,
				TLS: src.TLS, CertPath: src.CertPath, ProviderID: src.ProviderID, Selector: src.Selector})
		case "":
			d = deny(http.StatusBadRequest, "%s: no provider, and no defaultSyncProvider in the pod's FeatureFlagSources or the operator's configuration", src.where())
		case v1beta1.SyncProviderFlagdProxy:
			d = r.planFlagdProxy(ctx, w, src, plan)
		case flagsync.ProviderGCS, flagsync.ProviderAzblob, flagsync.ProviderS3:
			d = deny(http.StatusBadRequest, "%s: provider %s (cloud blob storage) is not implemented by flagpole's sidecar; serve the flags over http(s) or from a FeatureFlag", src.where(), provider)
		default:
			d = deny(http.StatusBadRequest, "%s: unknown provider %q (kubernetes, file, http, grpc, flagd-proxy)", src.where(), provider)
		}
		if d != nil {
			return nil, d
		}
	}
	if err := flagsync.Validate(plan.sources); err != nil {
		return nil, deny(http.StatusBadRequest, "the sidecar would refuse its sources: %v", err)
	}
	return plan, nil
}

// Denial says why flagd cannot be rendered for a workload, with an HTTP-like code
// (the webhook's admission response code).
type Denial struct {
	Code    int32
	Message string
}

func (d *Denial) Error() string { return d.Message }

func deny(code int32, format string, args ...any) *Denial {
	return &Denial{Code: code, Message: fmt.Sprintf(format, args...)}
}

// featureFlag resolves a kubernetes or file source to its FeatureFlag, enforcing
// the cross-namespace rule.
func (r *Renderer) featureFlag(ctx context.Context, w Workload, src plannedSource) (*v1beta1.FeatureFlag, Ref, *Denial) {
	ref, err := ParseRef(src.Source.Source, w.Namespace)
	if err != nil {
		return nil, Ref{}, deny(http.StatusBadRequest, "%s: source %v", src.where(), err)
	}
	ff, err := r.Objects.FeatureFlag(ctx, ref)
	switch {
	case apierrors.IsNotFound(err):
		return nil, ref, deny(http.StatusNotFound, "%s: FeatureFlag %s not found", src.where(), ref)
	case err != nil:
		return nil, ref, deny(http.StatusInternalServerError, "%s: reading FeatureFlag %s: %v", src.where(), ref, err)
	}
	if d := r.CrossNamespaceCheck(w.Namespace, "FeatureFlag", ff); d != nil {
		return nil, ref, d
	}
	return ff, ref, nil
}

// CrossNamespaceCheck refuses an object (of kind, for the message) of another
// namespace than the workload's unless the operator allows cross-namespace
// references or the object lists the workload's namespace in
// AnnotationAllowedNamespaces.
func (r *Renderer) CrossNamespaceCheck(namespace, kind string, obj metav1.Object) *Denial {
	if obj.GetNamespace() == namespace || r.Config.CrossNamespace == CrossNamespaceAllow {
		return nil
	}
	for ns := range strings.SplitSeq(obj.GetAnnotations()[AnnotationAllowedNamespaces], ",") {
		if ns = strings.TrimSpace(ns); ns == "*" || ns == namespace {
			return nil
		}
	}
	return deny(http.StatusForbidden, "%s %s/%s is in another namespace than the pod (%s): cross-namespace references are refused unless the %s lists %q in its %s annotation (or the operator runs with --cross-namespace=allow)",
		kind, obj.GetNamespace(), obj.GetName(), namespace, kind, namespace, AnnotationAllowedNamespaces)
}

func (r *Renderer) planKubernetes(ctx context.Context, w Workload, src plannedSource, plan *sidecarPlan) *Denial {
	_, ref, d := r.featureFlag(ctx, w, src)
	if d != nil {
		return d
	}
	plan.sources = append(plan.sources, flagsync.SourceConfig{URI: ref.String(), Provider: flagsync.ProviderKubernetes})
	plan.k8sSync = true
	if !slices.Contains(plan.grants[ref.Namespace], ref.Name) {
		plan.grants[ref.Namespace] = append(plan.grants[ref.Namespace], ref.Name)
	}
	return nil
}

// planFile mounts a ConfigMap holding the FeatureFlag's document. The ConfigMap is
// created in the workload's namespace (a pod cannot mount another namespace's; OFO
// creates it in the FeatureFlag's), named after the FeatureFlag for a flag of the
// workload's namespace (as OFO; owned by the FeatureFlag) and
// "flagpole-<namespace>.<name>" for another's (owned by the workload's owners; a
// namespace has no dots, so the name is unambiguous); the volume name is derived
// from the flag so it cannot collide with the app's.
func (r *Renderer) planFile(ctx context.Context, w Workload, src plannedSource, plan *sidecarPlan) *Denial {
	ff, ref, d := r.featureFlag(ctx, w, src)
	if d != nil {
		return d
	}
	dir := ref.Namespace + "_" + ref.Name
	key := dir + ".flagd.json"
	cmName := ref.Name
	owners := []metav1.OwnerReference{{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "FeatureFlag", Name: ff.Name, UID: ff.UID, Controller: new(true)}}
	if ref.Namespace != w.Namespace {
		cmName = boundedName("flagpole-"+ref.Namespace+"."+ref.Name, 253, ref.String())
		owners = w.Owners
	}
	volume := "flagd-file-" + shortHash(10, ref.String())
	if !r.Objects.ConfigMapExists(w.Namespace, cmName) {
		doc, err := flagdoc.Encode(&ff.Spec.FlagSpec)
		if err != nil {
			return deny(http.StatusInternalServerError, "%s: FeatureFlag %s: %v", src.where(), ref, err)
		}
		plan.effects = append(plan.effects, EnsureConfigMap{Namespace: w.Namespace, Name: cmName, FeatureFlag: ref, Key: key, Data: string(doc), Owners: owners})
	}
	plan.volumes = append(plan.volumes, corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cmName}}}})
	mountPath := path.Join(fileMountRoot, dir)
	plan.mounts = append(plan.mounts, corev1.VolumeMount{Name: volume, MountPath: mountPath, ReadOnly: true})
	plan.sources = append(plan.sources, flagsync.SourceConfig{URI: path.Join(mountPath, key), Provider: flagsync.ProviderFile})
	return nil
}

// planHTTP passes an http source; its bearer token goes into a Secret the webhook
// owns and reaches the sidecar through an environment variable (authHeaderEnv), so
// it appears neither in the pod's args nor in its spec (OFO puts it in the args).
// A plain http:// URL is allowed (the validating webhook warns about it), as OFO.
func (r *Renderer) planHTTP(w Workload, src plannedSource, i int, plan *sidecarPlan) *Denial {
	u, err := url.Parse(src.Source.Source)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return deny(http.StatusBadRequest, "%s: source %q is not an http(s) URL", src.where(), src.Source.Source)
	}
	cfg := flagsync.SourceConfig{URI: src.Source.Source, Provider: flagsync.ProviderHTTP, Interval: uint32(max(src.Interval, 0)),
		AllowInsecure: u.Scheme == "http" && !flagsync.IsLoopbackHost(u.Hostname())}
	if token := src.HTTPSyncBearerToken; token != "" {
		name := "flagpole-http-auth-" + shortHash(16, w.Namespace, src.from.Namespace, src.from.Name, token)
		env := fmt.Sprintf("FLAGPOLE_HTTP_AUTH_%d", i)
		var owners []metav1.OwnerReference
		if src.from.Namespace == w.Namespace {
			owners = []metav1.OwnerReference{{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "FeatureFlagSource", Name: src.from.Name, UID: src.from.UID}}
		}
		plan.effects = append(plan.effects, EnsureSecret{Namespace: w.Namespace, Name: name, Key: httpAuthKey, Value: "Bearer " + token, Owners: owners})
		plan.sidecarEnv = append(plan.sidecarEnv, corev1.EnvVar{Name: env, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: httpAuthKey}}})
		cfg.AuthHeaderEnv = env
	}
	plan.sources = append(plan.sources, cfg)
	return nil
}
