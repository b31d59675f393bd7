package controller

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/proxy"
	"github.com/flagpole-dev/flagpole/sidecar"
)

func newProxyController(t *testing.T, f *fixture, opts FlagdProxyOptions) *FlagdProxy {
	t.Helper()
	if opts.Namespace == "" {
		opts = FlagdProxyOptions{Namespace: "ops", Image: "flagpole:test", Replicas: 1, Port: 8015, ManagementPort: 8016, Version: "v1.2.3",
			Labels: map[string]string{"team": "platform", "app": "not-ours"}, ImagePullSecrets: []string{"regcred"}}
	}
	cfg := sidecar.DefaultConfig("flagpole:test")
	u := f.clients.Core.Get().URL() // the fixture's API server
	r, err := NewFlagdProxy(&rest.Config{Host: u.Scheme + "://" + u.Host, QPS: -1}, f.cluster, f.clients, cfg.UsesFlagdProxy, opts, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func proxySource(name string, sources ...v1beta1.Source) *v1beta1.FeatureFlagSource {
	return &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: sources}}
}

// applied decodes the apply patches of a sync by path.
func applied(t *testing.T, actions []action) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, a := range actions {
		if a.Verb != "PATCH" {
			t.Errorf("unexpected %s %s", a.Verb, a.Path)
			continue
		}
		out[a.Path], _ = a.Body.(map[string]any)
	}
	return out
}

// seedApplied puts what was applied into the caches, as the informers would list it.
func seedApplied(t *testing.T, r *FlagdProxy, patches map[string]map[string]any) {
	t.Helper()
	for _, c := range r.children {
		for path, body := range patches {
			if !strings.HasSuffix(path, "/"+c.resource+"/"+c.name) {
				continue
			}
			var typed runtime.Object
			switch c.resource {
			case "serviceaccounts":
				typed = &corev1.ServiceAccount{}
			case "clusterrolebindings":
				typed = &rbacv1.ClusterRoleBinding{}
			case "deployments":
				typed = &appsv1.Deployment{}
			case "services":
				typed = &corev1.Service{}
			case "poddisruptionbudgets":
				typed = &policyv1.PodDisruptionBudget{}
			}
			decodeInto(t, body, typed)
			if err := c.informer.GetIndexer().Add(typed); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestFlagdProxyDeployed: nothing is applied while no FeatureFlagSource uses the
// proxy; once one does, its ServiceAccount, ClusterRoleBinding, Deployment (this
// image, `flagd-proxy start` with the port, probes, a restricted security
// context), Service and PodDisruptionBudget are applied; a steady state writes
// nothing; drift is repaired.
func TestFlagdProxyDeployed(t *testing.T) {
	f := newFixture(t)
	r := newProxyController(t, f, FlagdProxyOptions{})
	ctx := context.Background()
	f.seed(f.cluster.Sources, proxySource("k8s", v1beta1.Source{Source: "flags", Provider: "kubernetes"}))
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 0 {
		t.Fatalf("no FeatureFlagSource uses the proxy, yet: %v", got)
	}
	f.seed(f.cluster.Sources, proxySource("proxied", v1beta1.Source{Source: "flags", Provider: "flagd-proxy"}))
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	actions := f.api.take()
	var paths []string
	for _, a := range actions {
		paths = append(paths, a.Path)
	}
	wantPaths := []string{
		"/api/v1/namespaces/ops/serviceaccounts/flagd-proxy",
		"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/flagpole-flagd-proxy.ops",
		"/apis/apps/v1/namespaces/ops/deployments/flagd-proxy",
		"/api/v1/namespaces/ops/services/flagd-proxy-svc",
		"/apis/policy/v1/namespaces/ops/poddisruptionbudgets/flagd-proxy-pdb",
	}
	if diff := cmp.Diff(wantPaths, paths); diff != "" {
		t.Fatalf("applied (-want +got):\n%s", diff)
	}
	patches := applied(t, actions)

	var d appsv1.Deployment
	decodeInto(t, patches[wantPaths[2]], &d)
	c := d.Spec.Template.Spec.Containers[0]
	cfg, err := proxy.Parse(c.Args)
	if err != nil {
		t.Fatalf("the proxy would refuse its args %q: %v", c.Args, err)
	}
	if cfg.Port != 8015 || cfg.ManagementPort != 8016 || cfg.Auth != proxy.AuthServiceAccount || !slices.Contains(c.Args, "--port") {
		t.Errorf("args %q", c.Args)
	}
	if c.Image != "flagpole:test" || c.Name != "flagd-proxy" || d.Spec.Template.Spec.ServiceAccountName != "flagd-proxy" ||
		c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil ||
		c.SecurityContext == nil || !*c.SecurityContext.ReadOnlyRootFilesystem || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container %+v", c)
	}
	if diff := cmp.Diff(map[string]string{"app": "flagd-proxy"}, d.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("selector (OFO's, immutable) (-want +got):\n%s", diff)
	}
	pl := d.Spec.Template.Labels
	if pl["app"] != "flagd-proxy" || pl["team"] != "platform" || pl["app.kubernetes.io/name"] != "flagd-proxy" || pl["app.kubernetes.io/version"] != "v1.2.3" {
		t.Errorf("pod labels %v (--labels added, never over ours)", pl)
	}
	if len(d.Spec.Template.Spec.ImagePullSecrets) != 1 || *d.Spec.Replicas != 1 {
		t.Errorf("pull secrets %v, replicas %d", d.Spec.Template.Spec.ImagePullSecrets, *d.Spec.Replicas)
	}
	var crb rbacv1.ClusterRoleBinding
	decodeInto(t, patches[wantPaths[1]], &crb)
	if crb.RoleRef.Name != proxy.ClusterRoleName || len(crb.Subjects) != 1 || crb.Subjects[0].Name != "flagd-proxy" || crb.Subjects[0].Namespace != "ops" {
		t.Errorf("binding %+v", crb)
	}
	var svc corev1.Service
	decodeInto(t, patches[wantPaths[3]], &svc)
	if p := svc.Spec.Ports; len(p) != 1 || p[0].Port != 8015 || p[0].TargetPort.IntVal != 8015 || *p[0].AppProtocol != "grpc" {
		t.Errorf("service ports %+v", p)
	}
	var pdb policyv1.PodDisruptionBudget
	decodeInto(t, patches[wantPaths[4]], &pdb)
	if pdb.Spec.MinAvailable.IntVal != 0 {
		t.Errorf("minAvailable %v, want 0 for one replica", pdb.Spec.MinAvailable)
	}

	// steady state: nothing written
	seedApplied(t, r, patches)
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 0 {
		t.Fatalf("steady state wrote: %v", got)
	}
	// drift: an edited Deployment is applied again
	obj, _, _ := r.deployments.informer.GetIndexer().GetByKey("ops/flagd-proxy")
	edited := obj.(*appsv1.Deployment).DeepCopy()
	edited.Spec.Template.Spec.Containers[0].Args = []string{"flagd-proxy", "start"}
	if err := r.deployments.informer.GetIndexer().Update(edited); err != nil {
		t.Fatal(err)
	}
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 1 || got[0].Path != wantPaths[2] {
		t.Fatalf("drift repair: %v", got)
	}
}

// TestFlagdProxyDefaultProviderAndReplicas: a FeatureFlagSource whose sources get
// flagd-proxy from defaultSyncProvider gets the proxy (OFO does not deploy it); three
// replicas have a PodDisruptionBudget of one; --auth none and the audience reach the args.
func TestFlagdProxyDefaultProviderAndReplicas(t *testing.T) {
	f := newFixture(t)
	r := newProxyController(t, f, FlagdProxyOptions{Namespace: "ops", Image: "flagpole:test", Replicas: 3, Port: 9015, ManagementPort: 9016,
		Auth: proxy.AuthNone, Audience: "custom", Debug: true})
	ffs := proxySource("defaulted", v1beta1.Source{Source: "flags"})
	ffs.Spec.DefaultSyncProvider = v1beta1.SyncProviderFlagdProxy
	f.seed(f.cluster.Sources, ffs)
	if err := r.sync(context.Background(), r.key); err != nil {
		t.Fatal(err)
	}
	patches := applied(t, f.api.take())
	if len(patches) != 5 {
		t.Fatalf("applied %d objects, want 5", len(patches))
	}
	var d appsv1.Deployment
	decodeInto(t, patches["/apis/apps/v1/namespaces/ops/deployments/flagd-proxy"], &d)
	want := []string{"flagd-proxy", "start", "--port", "9015", "--management-port", "9016", "--debug", "--auth", "none", "--token-audience", "custom"}
	if diff := cmp.Diff(want, d.Spec.Template.Spec.Containers[0].Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	var pdb policyv1.PodDisruptionBudget
	decodeInto(t, patches["/apis/policy/v1/namespaces/ops/poddisruptionbudgets/flagd-proxy-pdb"], &pdb)
	if pdb.Spec.MinAvailable.IntVal != 1 {
		t.Errorf("minAvailable %v, want 1 for three replicas", pdb.Spec.MinAvailable)
	}
}

// TestFlagdProxyLeavesForeignObjects: a Service named flagd-proxy-svc that neither
// flagpole nor OFO manages is not overwritten, and the error says so; the
// OpenFeature Operator's Deployment is taken over.
func TestFlagdProxyLeavesForeignObjects(t *testing.T) {
	f := newFixture(t)
	r := newProxyController(t, f, FlagdProxyOptions{})
	f.seed(f.cluster.Sources, proxySource("proxied", v1beta1.Source{Source: "flags", Provider: "flagd-proxy"}))
	for _, c := range r.children {
		var obj runtime.Object
		switch c.resource {
		case "services":
			obj = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "flagd-proxy-svc"}}
		case "deployments":
			obj = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ops", Name: "flagd-proxy", Labels: map[string]string{labelManagedBy: ofoManagedBy}}}
		default:
			continue
		}
		f.seed(c.informer, obj)
	}
	err := r.sync(context.Background(), r.key)
	if err == nil || !strings.Contains(err.Error(), `services ops/flagd-proxy-svc exists and is not managed by flagpole (label app.kubernetes.io/managed-by="")`) {
		t.Fatalf("error %v", err)
	}
	var paths []string
	for _, a := range f.api.take() {
		paths = append(paths, a.Path)
	}
	if slices.Contains(paths, "/api/v1/namespaces/ops/services/flagd-proxy-svc") || !slices.Contains(paths, "/apis/apps/v1/namespaces/ops/deployments/flagd-proxy") {
		t.Errorf("applied %v", paths)
	}
}

// TestFlagdProxyTLS: with TLS the proxy's pods mount only the key pair of the
// Secret flagd-proxy-tls (never its CA key) and serve it (--server-cert-path,
// --server-key-path); every CA ConfigMap the webhook created whose hash shows
// another bundle gets the current one (data and hash in one merge patch), others
// are left alone: up to date, not the webhook's, or another name. Nothing is
// written while the bundle is unknown, and a steady state writes nothing.
func TestFlagdProxyTLS(t *testing.T) {
	f := newFixture(t)
	var bundle []byte
	opts := FlagdProxyOptions{Namespace: "ops", Image: "flagpole:test", Replicas: 1, Port: 8015, ManagementPort: 8016,
		TLS: true, CABundle: func() []byte { return bundle }}
	r := newProxyController(t, f, opts)
	ctx := context.Background()
	managed := map[string]string{sidecar.LabelManagedBy: sidecar.ManagedBy}
	caConfigMap := func(ns, name string, labels map[string]string, hash string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
			Annotations: map[string]string{sidecar.AnnotationCAHash: hash}}}
	}
	const oldBundle, newBundle = "old CA\n", "new CA\nold CA\n"
	f.seed(f.cluster.Sources, proxySource("proxied", v1beta1.Source{Source: "flags", Provider: "flagd-proxy"}))
	f.seed(f.cluster.ConfigMaps,
		caConfigMap("team", sidecar.FlagdProxyCAConfigMap, managed, sidecar.CAHash([]byte(oldBundle))),
		caConfigMap("current", sidecar.FlagdProxyCAConfigMap, managed, sidecar.CAHash([]byte(newBundle))),
		caConfigMap("foreign", sidecar.FlagdProxyCAConfigMap, nil, ""),
		caConfigMap("team", "flags", managed, ""))

	// no bundle yet: the proxy's objects only
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	actions := f.api.take()
	patches := applied(t, actions)
	if len(actions) != 5 {
		t.Fatalf("without a CA bundle: %v", actions)
	}
	var d appsv1.Deployment
	decodeInto(t, patches["/apis/apps/v1/namespaces/ops/deployments/flagd-proxy"], &d)
	spec := d.Spec.Template.Spec
	cfg, err := proxy.Parse(spec.Containers[0].Args)
	if err != nil {
		t.Fatalf("the proxy would refuse its args %q: %v", spec.Containers[0].Args, err)
	}
	if cfg.ServerCertPath != "/etc/flagpole/flagd-proxy-tls/tls.crt" || cfg.ServerKeyPath != "/etc/flagpole/flagd-proxy-tls/tls.key" {
		t.Errorf("TLS args %q", spec.Containers[0].Args)
	}
	wantVolumes := []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "flagd-proxy-tls",
		Items: []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}}}}}
	if diff := cmp.Diff(wantVolumes, spec.Volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.VolumeMount{{Name: "tls", MountPath: "/etc/flagpole/flagd-proxy-tls", ReadOnly: true}}, spec.Containers[0].VolumeMounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	seedApplied(t, r, patches)

	// the bundle is known: the stale ConfigMap gets it
	bundle = []byte(newBundle)
	r.CABundleChanged()
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	want := []action{{Verb: "PATCH", Path: "/api/v1/namespaces/team/configmaps/flagpole-flagd-proxy-ca", Body: map[string]any{
		"metadata": map[string]any{"annotations": map[string]any{"flagpole.dev/ca-sha256": sidecar.CAHash([]byte(newBundle))}},
		"data":     map[string]any{"ca.crt": newBundle},
	}}}
	if diff := cmp.Diff(want, f.api.take()); diff != "" {
		t.Fatalf("CA ConfigMap updates (-want +got):\n%s", diff)
	}

	// steady state
	f.seed(f.cluster.ConfigMaps, caConfigMap("team", sidecar.FlagdProxyCAConfigMap, managed, sidecar.CAHash([]byte(newBundle))))
	if err := r.sync(ctx, r.key); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 0 {
		t.Fatalf("steady state wrote: %v", got)
	}
}
