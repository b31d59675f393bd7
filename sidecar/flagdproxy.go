package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// The flagd-proxy's objects in the operator's namespace: OFO's names (§4.2), so
// the sources OFO rendered keep working.
const (
	FlagdProxyDeployment     = "flagd-proxy"
	FlagdProxyService        = "flagd-proxy-svc"
	FlagdProxyPDB            = "flagd-proxy-pdb"
	FlagdProxyServiceAccount = "flagd-proxy"
	// FlagdProxyAudience is the default audience of the ServiceAccount tokens the
	// sidecar presents to the proxy (its --token-audience).
	FlagdProxyAudience = "flagpole-flagd-proxy"
	// FlagdProxyTLSSecret, in the operator's namespace, holds the proxy's CA and
	// serving certificate (the operator issues and renews them); the proxy's pods
	// mount its tls.crt and tls.key only.
	FlagdProxyTLSSecret = "flagd-proxy-tls" //nolint:gosec // G101: a Secret's name, not a credential
	// FlagdProxyCAConfigMap, in every namespace whose pods read through the proxy,
	// holds the proxy's CA bundle (public certificates only) under
	// FlagdProxyCAKey: the webhook creates it, the flagd-proxy controller keeps it
	// current as the CA rotates, and sidecars trust it (certPath).
	FlagdProxyCAConfigMap = "flagpole-flagd-proxy-ca"
	FlagdProxyCAKey       = "ca.crt"
	// AnnotationCAHash on FlagdProxyCAConfigMap is the hash (CAHash) of the bundle
	// last written into it: the controller compares it with the current bundle's
	// without reading the ConfigMap.
	AnnotationCAHash = "flagpole.dev/ca-sha256"
)

// CAHash is the value of AnnotationCAHash for a CA bundle.
func CAHash(bundle []byte) string { return shortHash(32, string(bundle)) }

// ErrFlagdProxyNotReady is OFO's denial while the proxy has no ready replica.
var ErrFlagdProxyNotReady = errors.New("flagd-proxy is not ready, deferring pod admission")

// Where the sidecar's projected ServiceAccount token for the proxy is mounted.
const (
	flagdProxyTokenVolume = "flagpole-flagd-proxy-token"                //nolint:gosec // G101: a volume name, not a credential
	flagdProxyTokenDir    = "/var/run/secrets/flagpole.dev/flagd-proxy" //nolint:gosec // G101: a mount path, not a credential
	flagdProxyTokenFile   = "token"
	// flagdProxyTokenSeconds is the projected token's lifetime: the kubelet renews
	// it at 80%, and the proxy ends a stream when its token expires (the sidecar
	// reconnects with the renewed one).
	flagdProxyTokenSeconds = 3600
)

// FlagdProxy is how sidecars reach the operator's flagd-proxy.
type FlagdProxy struct {
	// Namespace is the operator's, where the proxy runs.
	Namespace string
	// Port is the proxy Service's port (OFO's FLAGD_PROXY_PORT).
	Port int32
	// ClusterDomain is the cluster's DNS domain (FLAGD_CLUSTER_DOMAIN).
	ClusterDomain string
	// Audience is the audience of the projected token the sidecar presents.
	Audience string
	// TLS: sidecars connect with TLS and trust the proxy's CA bundle, mounted from
	// FlagdProxyCAConfigMap beside the token; false: plaintext, as OFO.
	TLS bool
	// CABundle returns the proxy's current CA bundle (PEM), for the ConfigMap the
	// webhook creates in a namespace that has none; empty while the operator has
	// not issued it (pods are then deferred). nil: not known here (`flagpole debug
	// inject`, which only describes the ConfigMap).
	CABundle func() []byte
	// Ready returns nil when the proxy's Deployment has a ready replica, else why
	// not (FlagdProxyReadiness). Pods are not admitted until it does, as in OFO; nil
	// skips the check (`flagpole debug inject`).
	Ready func() error
}

// DefaultFlagdProxy is OFO's flagd-proxy configuration in namespace, with TLS.
func DefaultFlagdProxy(namespace string) FlagdProxy {
	return FlagdProxy{Namespace: namespace, Port: 8015, ClusterDomain: "cluster.local", Audience: FlagdProxyAudience, TLS: true}
}

// URI is the proxy's address as OFO renders it:
// flagd-proxy-svc.<namespace>.svc.<cluster domain>:<port>.
func (p FlagdProxy) URI() string {
	return fmt.Sprintf("%s.%s.svc.%s:%d", FlagdProxyService, p.Namespace, p.ClusterDomain, p.Port)
}

// FlagdProxyReadiness judges the proxy's Deployment (nil: it does not exist) as
// OFO does: ready with a ready replica; otherwise ErrFlagdProxyNotReady, wrapped
// with its creation time once it has been waiting for more than 3 minutes.
func FlagdProxyReadiness(d *appsv1.Deployment, now time.Time) error {
	if d == nil {
		return ErrFlagdProxyNotReady
	}
	if d.Status.ReadyReplicas > 0 {
		return nil
	}
	if created := d.CreationTimestamp.Time; created.Before(now.Add(-3 * time.Minute)) {
		return fmt.Errorf("flagd-proxy not ready after 3 minutes, was created at %s: %w", created.String(), ErrFlagdProxyNotReady)
	}
	return ErrFlagdProxyNotReady
}

// planFlagdProxy points a flagd-proxy source at the operator's proxy (OFO's
// entry: the proxy's address, provider grpc, selector core.openfeature.dev/ns/name)
// with the pod's projected ServiceAccount token for the proxy's audience, mounted
// once per pod and sent as a bearer token (bearerTokenFile). Unlike OFO, the
// FeatureFlag must exist and may be referenced (the cross-namespace rule), and the
// pod's ServiceAccount is granted get on it, as for a kubernetes source: the
// proxy serves a caller only the FeatureFlags its ServiceAccount may get. With
// TLS (the default) the source is tls with certPath the proxy's CA bundle,
// projected from FlagdProxyCAConfigMap into the token's volume (created here in
// the pod's namespace when missing); without, it is plaintext in the cluster, as
// OFO's (allowInsecure: the token is bound to the pod, the audience and an hour).
func (r *Renderer) planFlagdProxy(ctx context.Context, w Workload, src plannedSource, plan *sidecarPlan) *Denial {
	_, ref, d := r.featureFlag(ctx, w, src)
	if d != nil {
		return d
	}
	p := r.Config.FlagdProxy
	if p.Namespace == "" || p.Port < 1 || p.Port > 65535 || p.Audience == "" {
		return deny(http.StatusInternalServerError, "%s: the operator has no flagd-proxy configuration (namespace, port, token audience)", src.where())
	}
	entry := flagsync.SourceConfig{URI: p.URI(), Provider: flagsync.ProviderGRPC,
		Selector: "core.openfeature.dev/" + ref.String(), BearerTokenFile: path.Join(flagdProxyTokenDir, flagdProxyTokenFile), AllowInsecure: true}
	if p.TLS {
		entry.AllowInsecure, entry.TLS, entry.CertPath = false, true, path.Join(flagdProxyTokenDir, FlagdProxyCAKey)
	}
	plan.sources = append(plan.sources, entry)
	if !plan.proxy {
		plan.proxy = true
		if d := r.planFlagdProxyVolume(w, plan); d != nil {
			return d
		}
	}
	if !slices.Contains(plan.grants[ref.Namespace], ref.Name) {
		plan.grants[ref.Namespace] = append(plan.grants[ref.Namespace], ref.Name)
	}
	return nil
}

// planFlagdProxyVolume mounts, once per pod, the projected volume of the proxy's
// token and, with TLS, of its CA bundle.
func (r *Renderer) planFlagdProxyVolume(w Workload, plan *sidecarPlan) *Denial {
	p := r.Config.FlagdProxy
	expiry := int64(flagdProxyTokenSeconds)
	projections := []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
		Audience: p.Audience, ExpirationSeconds: &expiry, Path: flagdProxyTokenFile}}}
	if p.TLS {
		if !r.Objects.ConfigMapExists(w.Namespace, FlagdProxyCAConfigMap) {
			var bundle []byte
			if p.CABundle != nil {
				if bundle = p.CABundle(); len(bundle) == 0 {
					return deny(http.StatusForbidden, "the flagd-proxy's CA is not issued yet (Secret %s/%s), deferring pod admission", p.Namespace, FlagdProxyTLSSecret)
				}
			}
			plan.effects = append(plan.effects, EnsureFlagdProxyCA{Namespace: w.Namespace, Bundle: string(bundle)})
		}
		projections = append(projections, corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: FlagdProxyCAConfigMap},
			Items:                []corev1.KeyToPath{{Key: FlagdProxyCAKey, Path: FlagdProxyCAKey}}}})
	}
	plan.volumes = append(plan.volumes, corev1.Volume{Name: flagdProxyTokenVolume, VolumeSource: corev1.VolumeSource{
		Projected: &corev1.ProjectedVolumeSource{Sources: projections}}})
	plan.mounts = append(plan.mounts, corev1.VolumeMount{Name: flagdProxyTokenVolume, MountPath: flagdProxyTokenDir, ReadOnly: true})
	return nil
}

// flagdProxyReady denies a pod while the proxy is not ready (OFO's 403).
func (r *Renderer) flagdProxyReady() *Denial {
	if r.Config.FlagdProxy.Ready == nil {
		return nil
	}
	if err := r.Config.FlagdProxy.Ready(); err != nil {
		return deny(http.StatusForbidden, "%v", err)
	}
	return nil
}

// UsesFlagdProxy reports whether pods using a FeatureFlagSource may need the
// flagd-proxy (the controller deploys it then): a flagd-proxy source, a
// defaultSyncProvider flagd-proxy (a pod merging this FeatureFlagSource with
// another gives that one's provider-less sources this default), or the operator's
// default provider flagd-proxy with a source that names no provider. OFO looks at
// the literal provider only, so sources that default to flagd-proxy never get a
// proxy and their pods are refused for ever.
func (c Config) UsesFlagdProxy(ffs *v1beta1.FeatureFlagSource) bool {
	if ffs.Spec.DefaultSyncProvider == v1beta1.SyncProviderFlagdProxy {
		return true
	}
	for _, s := range ffs.Spec.Sources {
		if s.Provider == v1beta1.SyncProviderFlagdProxy ||
			(s.Provider == "" && ffs.Spec.DefaultSyncProvider == "" && c.Defaults.DefaultSyncProvider == v1beta1.SyncProviderFlagdProxy) {
			return true
		}
	}
	return false
}
