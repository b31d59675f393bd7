package sidecar

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

func proxyObjects() *StaticObjects {
	ff := func(ns, name string, allowed ...string) *v1beta1.FeatureFlag {
		f := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		if len(allowed) > 0 {
			f.Annotations = map[string]string{AnnotationAllowedNamespaces: strings.Join(allowed, ",")}
		}
		return f
	}
	return &StaticObjects{
		Flags:           []*v1beta1.FeatureFlag{ff("shop", "checkout"), ff("shop", "search"), ff("shared", "global", "shop"), ff("private", "secret")},
		ServiceAccounts: []*corev1.ServiceAccount{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}},
	}
}

func proxySources(sources ...v1beta1.Source) []*v1beta1.FeatureFlagSource {
	return []*v1beta1.FeatureFlagSource{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: sources}}}
}

func proxyRenderer(ready func() error) *Renderer {
	cfg := DefaultConfig("flagpole:test")
	cfg.FlagdProxy = DefaultFlagdProxy("ops")
	cfg.FlagdProxy.Ready = ready
	return &Renderer{Config: cfg, Objects: proxyObjects()}
}

// TestRenderFlagdProxy: flagd-proxy sources become OFO's grpc entries (the proxy's
// address in the operator's namespace, selector core.openfeature.dev/ns/name) with
// the pod's projected token for the proxy (one volume for all of them), sent as a
// bearer token; the pod's ServiceAccount is granted its FeatureFlags; the sidecar
// parses the args. With TLS (the default) the entries are tls with certPath the
// proxy's CA bundle, projected from the namespace's CA ConfigMap into the same
// volume, and the ConfigMap is created unless it exists; without, they are
// plaintext (allowInsecure), as OFO's.
func TestRenderFlagdProxy(t *testing.T) {
	const bundle = "-----BEGIN CERTIFICATE-----\nproxy CA\n-----END CERTIFICATE-----\n"
	expiry := int64(3600)
	token := corev1.VolumeProjection{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "flagpole-flagd-proxy", ExpirationSeconds: &expiry, Path: "token"}}
	ca := corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "flagpole-flagd-proxy-ca"},
		Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}}
	for name, tc := range map[string]struct {
		tls         bool
		caConfigMap bool // the namespace has its CA ConfigMap already
		projections []corev1.VolumeProjection
		effect      []EnsureFlagdProxyCA
	}{
		"tls":                            {tls: true, projections: []corev1.VolumeProjection{token, ca}, effect: []EnsureFlagdProxyCA{{Namespace: "shop", Bundle: bundle}}},
		"tls, the CA ConfigMap existing": {tls: true, caConfigMap: true, projections: []corev1.VolumeProjection{token, ca}},
		"plaintext":                      {projections: []corev1.VolumeProjection{token}},
	} {
		t.Run(name, func(t *testing.T) {
			r := proxyRenderer(func() error { return nil })
			r.Config.FlagdProxy.TLS = tc.tls
			r.Config.FlagdProxy.CABundle = func() []byte { return []byte(bundle) }
			if tc.caConfigMap {
				r.Objects.(*StaticObjects).ConfigMaps = []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "flagpole-flagd-proxy-ca"}}}
			}
			w := Workload{Namespace: "shop", ServiceAccount: "web"}
			out, d := r.Render(context.Background(), w, proxySources(
				v1beta1.Source{Source: "checkout", Provider: "flagd-proxy"},
				v1beta1.Source{Source: "shared/global", Provider: "flagd-proxy"},
				v1beta1.Source{Source: "search", Provider: "flagd-proxy"},
			))
			if d != nil {
				t.Fatal(d)
			}
			cfg, err := startconfig.Parse(out.Container.Args)
			if err != nil {
				t.Fatalf("the sidecar would refuse %q: %v", out.Container.Args, err)
			}
			entry := func(sel string) flagsync.SourceConfig {
				e := flagsync.SourceConfig{URI: "flagd-proxy-svc.ops.svc.cluster.local:8015", Provider: "grpc", Selector: "core.openfeature.dev/" + sel,
					BearerTokenFile: "/var/run/secrets/flagpole.dev/flagd-proxy/token", AllowInsecure: true}
				if tc.tls {
					e.AllowInsecure, e.TLS, e.CertPath = false, true, "/var/run/secrets/flagpole.dev/flagd-proxy/ca.crt"
				}
				return e
			}
			if diff := cmp.Diff(startconfig.SourceList{entry("shop/checkout"), entry("shared/global"), entry("shop/search")}, cfg.Sources); diff != "" {
				t.Errorf("sources (-want +got):\n%s", diff)
			}
			if _, err := cfg.SourceConfigs(); err != nil {
				t.Errorf("three selections of one proxy: %v", err)
			}
			wantVolume := corev1.Volume{Name: "flagpole-flagd-proxy-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: tc.projections}}}
			if diff := cmp.Diff([]corev1.Volume{wantVolume}, out.Volumes); diff != "" {
				t.Errorf("volumes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]corev1.VolumeMount{{Name: "flagpole-flagd-proxy-token", MountPath: "/var/run/secrets/flagpole.dev/flagd-proxy", ReadOnly: true}}, out.Container.VolumeMounts); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
			grants, cas := proxyEffects(out.Effects)
			if diff := cmp.Diff([]string{"shared:global to shop/web", "shop:checkout,search to shop/web"}, grants); diff != "" {
				t.Errorf("grants (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.effect, cas); diff != "" {
				t.Errorf("CA ConfigMaps created (-want +got):\n%s", diff)
			}
			if out.KubernetesSync {
				t.Error("a flagd-proxy pod is marked for kubernetes sync (OFO's allowkubernetessync annotation)")
			}
		})
	}
}

// proxyEffects lists the grants ("ns:flags to sa") and CA ConfigMaps of effects.
func proxyEffects(effects []Effect) (grants []string, cas []EnsureFlagdProxyCA) {
	for _, e := range effects {
		switch e := e.(type) {
		case GrantFlags:
			grants = append(grants, e.Namespace+":"+strings.Join(e.Flags, ",")+" to "+e.ServiceAccount.String())
		case EnsureFlagdProxyCA:
			cas = append(cas, e)
		}
	}
	return grants, cas
}

// TestRenderFlagdProxyDenials: a missing FeatureFlag, a refused cross-namespace
// FeatureFlag, and a proxy that is not ready (OFO's 403 and message; only for
// pods: a standalone Flagd's Deployment may wait for it).
func TestRenderFlagdProxyDenials(t *testing.T) {
	w := Workload{Namespace: "shop", ServiceAccount: "web"}
	for name, tc := range map[string]struct {
		source  string
		ready   error
		w       Workload
		noCA    bool // the operator has not issued the proxy's CA
		code    int32
		message string
	}{
		"missing FeatureFlag":   {source: "nope", code: http.StatusNotFound, message: "FeatureFlagSource shop/flags spec.sources[0]: FeatureFlag shop/nope not found"},
		"another namespace's":   {source: "private/secret", code: http.StatusForbidden, message: "FeatureFlag private/secret is in another namespace than the pod (shop)"},
		"proxy not ready":       {source: "checkout", ready: ErrFlagdProxyNotReady, code: http.StatusForbidden, message: "flagd-proxy is not ready, deferring pod admission"},
		"standalone, not ready": {source: "checkout", ready: ErrFlagdProxyNotReady, w: Workload{Namespace: "shop", ServiceAccount: "web", Standalone: true}},
		"CA not issued yet":     {source: "checkout", noCA: true, code: http.StatusForbidden, message: "the flagd-proxy's CA is not issued yet (Secret ops/flagd-proxy-tls), deferring pod admission"},
	} {
		t.Run(name, func(t *testing.T) {
			r := proxyRenderer(func() error { return tc.ready })
			r.Config.FlagdProxy.CABundle = func() []byte {
				if tc.noCA {
					return nil
				}
				return []byte("a CA")
			}
			ww := w
			if tc.w.Namespace != "" {
				ww = tc.w
			}
			_, d := r.Render(context.Background(), ww, proxySources(v1beta1.Source{Source: tc.source, Provider: "flagd-proxy"}))
			if tc.message == "" {
				if d != nil {
					t.Fatalf("denied: %v", d)
				}
				return
			}
			if d == nil || d.Code != tc.code || !strings.Contains(d.Message, tc.message) {
				t.Fatalf("denial %+v, want %d %q", d, tc.code, tc.message)
			}
		})
	}
	// the operator's default provider flagd-proxy reaches sources without one, and
	// so does its readiness check (OFO only checks the literal provider)
	r := proxyRenderer(func() error { return ErrFlagdProxyNotReady })
	r.Config.Defaults.DefaultSyncProvider = v1beta1.SyncProviderFlagdProxy
	if _, d := r.Render(context.Background(), w, proxySources(v1beta1.Source{Source: "checkout"})); d == nil || d.Message != ErrFlagdProxyNotReady.Error() {
		t.Errorf("default provider flagd-proxy, proxy not ready: %v", d)
	}
}

func TestFlagdProxyReadiness(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	d := func(ready int32, age time.Duration) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(now.Add(-age))}, Status: appsv1.DeploymentStatus{ReadyReplicas: ready}}
	}
	if err := FlagdProxyReadiness(nil, now); !errors.Is(err, ErrFlagdProxyNotReady) || err.Error() != "flagd-proxy is not ready, deferring pod admission" {
		t.Errorf("missing: %v", err)
	}
	if err := FlagdProxyReadiness(d(0, time.Minute), now); !errors.Is(err, ErrFlagdProxyNotReady) {
		t.Errorf("starting: %v", err)
	}
	if err := FlagdProxyReadiness(d(0, 5*time.Minute), now); !errors.Is(err, ErrFlagdProxyNotReady) || !strings.HasPrefix(err.Error(), "flagd-proxy not ready after 3 minutes, was created at 2025-01-02 02:59:05 +0000 UTC: ") {
		t.Errorf("stuck: %v", err)
	}
	if err := FlagdProxyReadiness(d(1, time.Hour), now); err != nil {
		t.Errorf("ready: %v", err)
	}
}

func TestUsesFlagdProxy(t *testing.T) {
	cfg := DefaultConfig("x")
	ffs := func(def string, providers ...string) *v1beta1.FeatureFlagSource {
		f := &v1beta1.FeatureFlagSource{Spec: v1beta1.FeatureFlagSourceSpec{DefaultSyncProvider: def}}
		for _, p := range providers {
			f.Spec.Sources = append(f.Spec.Sources, v1beta1.Source{Source: "f", Provider: p})
		}
		return f
	}
	for _, tc := range []struct {
		ffs             *v1beta1.FeatureFlagSource
		operatorDefault string
		want            bool
	}{
		{ffs("", "kubernetes", "flagd-proxy"), "kubernetes", true},
		{ffs("", "kubernetes", ""), "kubernetes", false},
		{ffs("flagd-proxy", ""), "kubernetes", true},
		{ffs("flagd-proxy", "http"), "kubernetes", true},
		{ffs("", ""), "flagd-proxy", true},
		{ffs("file", ""), "flagd-proxy", false},
	} {
		cfg.Defaults.DefaultSyncProvider = tc.operatorDefault
		if got := cfg.UsesFlagdProxy(tc.ffs); got != tc.want {
			t.Errorf("%+v with operator default %q: %v, want %v", tc.ffs.Spec, tc.operatorDefault, got, tc.want)
		}
	}
}
