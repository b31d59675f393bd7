package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/webhook"
)

const sidecarImage = "registry.example/flagpole:e2e"

// webhookEnv is a running `flagpole webhook` registered with the API server by URL,
// and a namespace with a ServiceAccount "web" and FeatureFlags "checkout" and "search".
type webhookEnv struct {
	c    *harness.Cluster
	hook *harness.Webhook
	ns   string
}

// startWebhook runs the webhook, registers it for a new namespace of the test's own
// (the configuration is deleted when the test ends) and prepares that namespace.
func startWebhook(t *testing.T) *webhookEnv {
	t.Helper()
	return startWebhookWith(t)
}

// startWebhookWith is startWebhook with more arguments for `flagpole webhook`.
func startWebhookWith(t *testing.T, args ...string) *webhookEnv {
	t.Helper()
	c := suite.Cluster
	hook := suite.StartWebhook(t, c, suite.TempDir(t), append([]string{"--sidecar-image", sidecarImage}, args...)...)
	env := &webhookEnv{c: c, hook: hook, ns: harness.Namespace(t, c, "inject")}
	ctx := t.Context()
	unregister, err := hook.Register(ctx, c, "flagpole-e2e-"+env.ns, env.ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unregister)
	for _, sa := range []string{"web", "default"} {
		if _, err := c.Kube.CoreV1().ServiceAccounts(env.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"checkout", "search"} {
		ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec(name)}}
		if _, err := c.Flags.CoreV1beta1().FeatureFlags(env.ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// source creates a FeatureFlagSource.
func (e *webhookEnv) source(t *testing.T, name string, sources ...v1beta1.Source) {
	t.Helper()
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: sources}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(t.Context(), ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pod is an annotated pod owned by a (never created) ReplicaSet; there is no
// controller manager in this control plane, so nothing collects it.
func (e *webhookEnv) pod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: types.UID("00000000-0000-0000-0000-000000000001")}}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

func rpc(list string) map[string]string {
	return map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationFeatureFlagSource: list}
}

// TestWebhookInjectsKubernetesSource: an annotated pod is created with the native
// sidecar whose args the sidecar accepts, the provider settings in the app, and a
// least-privilege grant: the pod's ServiceAccount reads its FeatureFlag and is
// forbidden to read another; an update of the pod is allowed; a dry run writes
// nothing.
func TestWebhookInjectsKubernetesSource(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	e.source(t, "flags", v1beta1.Source{Source: "checkout", Provider: "kubernetes"})
	pod, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-a", rpc("flags")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers %v", pod.Spec.InitContainers)
	}
	sidecar := pod.Spec.InitContainers[0]
	if sidecar.Name != "flagd" || sidecar.Image != sidecarImage || sidecar.RestartPolicy == nil || *sidecar.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("sidecar %s image %s restartPolicy %v", sidecar.Name, sidecar.Image, sidecar.RestartPolicy)
	}
	cfg, err := startconfig.Parse(sidecar.Args)
	if err != nil {
		t.Fatalf("the sidecar would refuse its args %q: %v", sidecar.Args, err)
	}
	if diff := cmp.Diff(startconfig.SourceList{{URI: e.ns + "/checkout", Provider: "kubernetes"}}, cfg.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if pod.Annotations[webhook.AnnotationAllowK8sSync] != "true" || pod.Annotations[webhook.AnnotationInjected] != "true" {
		t.Errorf("annotations %v", pod.Annotations)
	}
	if !slices.ContainsFunc(pod.Spec.Containers[0].Env, func(v corev1.EnvVar) bool { return v.Name == "FLAGD_RESOLVER" && v.Value == "rpc" }) {
		t.Errorf("app env %v", pod.Spec.Containers[0].Env)
	}

	// The grant: a Role listing exactly the flag, bound to the pod's ServiceAccount.
	grant := "flagpole-featureflags-" + e.ns + ".web"
	role, err := e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, grant, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{"core.openfeature.dev"}, Resources: []string{"featureflags"}, Verbs: []string{"get", "list", "watch"}, ResourceNames: []string{"checkout"}}}
	if diff := cmp.Diff(wantRules, role.Rules); diff != "" {
		t.Errorf("Role rules (-want +got):\n%s", diff)
	}
	binding, err := e.c.Kube.RbacV1().RoleBindings(e.ns).Get(ctx, grant, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]rbacv1.Subject{{Kind: "ServiceAccount", Namespace: e.ns, Name: "web"}}, binding.Subjects); diff != "" {
		t.Errorf("RoleBinding subjects (-want +got):\n%s", diff)
	}

	// The grant's effect, with the pod's ServiceAccount token: its flag is served,
	// another flag of the namespace is forbidden.
	dir := suite.TempDir(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := e.c.TokenKubeconfig(ctx, e.ns, "web", kubeconfig); err != nil {
		t.Fatal(err)
	}
	own := suite.StartFlagd(t, dir, kubeconfig, "--uri", "core.openfeature.dev/"+e.ns+"/checkout")
	if err := own.WaitReadyz(ctx, http.StatusOK, readyTimeout); err != nil {
		t.Fatalf("the sidecar cannot read the FeatureFlag its pod names: %v", err)
	}
	otherDir := suite.TempDir(t)
	other := suite.StartFlagd(t, otherDir, kubeconfig, "--uri", "core.openfeature.dev/"+e.ns+"/search")
	if _, _, err := other.WaitLog(ctx, 0, logTimeout, func(l harness.LogEntry) bool {
		return strings.Contains(l.Text(), "permission denied reading FeatureFlag "+e.ns+"/search")
	}); err != nil {
		t.Errorf("reading another FeatureFlag was not forbidden: %v", err)
	}
	if code, _, _ := other.Readyz(ctx); code != http.StatusPreconditionFailed {
		t.Errorf("/readyz of the forbidden sidecar: %d", code)
	}

	// UPDATE of an injected pod is allowed (OFO refuses it: #793).
	pod.Labels = map[string]string{"cni": "branch-eni"}
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Errorf("updating the injected pod's labels: %v", err)
	}

	// Dry run: the answer has the sidecar, the grant is not widened.
	e.source(t, "more", v1beta1.Source{Source: "search", Provider: "kubernetes"})
	dry, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-dry", rpc("more")), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.Spec.InitContainers) != 1 {
		t.Errorf("dry run: no sidecar in the answer")
	}
	role, err = e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, grant, metav1.GetOptions{})
	if err != nil || !cmp.Equal(role.Rules[0].ResourceNames, []string{"checkout"}) {
		t.Errorf("after a dry run the Role lists %v (%v), want [checkout]", role.Rules, err)
	}
	// ... and the real create widens it.
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-b", rpc("more")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role, err = e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, grant, metav1.GetOptions{})
	if err != nil || !cmp.Equal(role.Rules[0].ResourceNames, []string{"checkout", "search"}) {
		t.Errorf("after a second pod the Role lists %v (%v), want [checkout search]", role.Rules, err)
	}
}

// TestWebhookDenials: the API server refuses annotated pods the webhook cannot
// inject, with the webhook's messages.
func TestWebhookDenials(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	other := harness.Namespace(t, e.c, "other")
	shared := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
		Spec: v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(other).Create(ctx, shared, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.source(t, "to-missing", v1beta1.Source{Source: "nope", Provider: "kubernetes"})
	bare := e.pod("bare", rpc("to-missing"))
	bare.OwnerReferences = nil
	cases := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"missing FeatureFlagSource", e.pod("p1", rpc("gone")), `featureflagsources.core.openfeature.dev "` + e.ns + `/gone" not found`},
		{"missing FeatureFlag", e.pod("p2", rpc("to-missing")), "FeatureFlagSource " + e.ns + "/to-missing spec.sources[0]: FeatureFlag " + e.ns + "/nope not found"},
		{"bare pod", bare, "static or orphaned pods cannot be mutated"},
		{"cross-namespace", e.pod("p3", rpc(other+"/shared")), "FeatureFlagSource " + other + "/shared is in another namespace than the pod (" + e.ns + "): cross-namespace references are refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, tc.pod, metav1.CreateOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `admission webhook "mutate.openfeature.dev" denied the request`) {
				t.Errorf("error %v, want the webhook's denial containing %q", err, tc.want)
			}
		})
	}
	// an unannotated pod never reaches the webhook (matchConditions)
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("plain", nil), metav1.CreateOptions{}); err != nil {
		t.Errorf("unannotated pod: %v", err)
	}
}

// TestWebhookProviders: file (a ConfigMap with the flag document, mounted), http with
// a bearer token (a Secret the sidecar reads through its environment; the token is
// nowhere in the pod), and in-process mode (environment only).
func TestWebhookProviders(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	e.source(t, "file", v1beta1.Source{Source: "checkout", Provider: "file"})
	pod, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("file", rpc("file")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := e.c.Kube.CoreV1().ConfigMaps(e.ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var doc v1beta1.FlagSpec
	if err := json.Unmarshal([]byte(cm.Data[e.ns+"_checkout.flagd.json"]), &doc); err != nil || len(doc.Flags) != 2 {
		t.Errorf("ConfigMap data %v (%v)", cm.Data, err)
	}
	if len(pod.Spec.Volumes) == 0 || pod.Spec.Volumes[len(pod.Spec.Volumes)-1].ConfigMap == nil {
		t.Errorf("volumes %v", pod.Spec.Volumes)
	}

	const token = "e2e-s3cr3t-token"
	e.source(t, "http", v1beta1.Source{Source: "https://flags.example.com/flags.json", Provider: "http", HTTPSyncBearerToken: token})
	pod, err = e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("http", rpc("http")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), token) {
		t.Fatalf("the bearer token is in the pod")
	}
	var ref *corev1.SecretKeySelector
	for _, v := range pod.Spec.InitContainers[0].Env {
		if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
			ref = v.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil {
		t.Fatal("no secret reference in the sidecar's environment")
	}
	secret, err := e.c.Kube.CoreV1().Secrets(e.ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(secret.Data[ref.Key]) != "Bearer "+token || secret.Immutable == nil || !*secret.Immutable {
		t.Errorf("Secret %s: immutable %v", ref.Name, secret.Immutable)
	}

	ipc := &v1beta1.InProcessConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "ipc"}}
	if _, err := e.c.Flags.CoreV1beta1().InProcessConfigurations(e.ns).Create(ctx, ipc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err = e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("inproc", map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationInProcess: "ipc"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []corev1.EnvVar{{Name: "FLAGD_HOST", Value: "localhost"}, {Name: "FLAGD_PORT", Value: "8015"}, {Name: "FLAGD_TLS", Value: "false"},
		{Name: "FLAGD_CACHE", Value: "lru"}, {Name: "FLAGD_MAX_CACHE_SIZE", Value: "1000"}, {Name: "FLAGD_RESOLVER", Value: "in-process"}}
	if diff := cmp.Diff(want, pod.Spec.Containers[0].Env); diff != "" || len(pod.Spec.InitContainers) != 0 {
		t.Errorf("in-process env (-want +got):\n%s\ninit containers %v", diff, pod.Spec.InitContainers)
	}
}

// TestWebhookRegistrationAccepted: the API server accepts the rendered
// configurations as they are (matchConditions included), checked with a dry run.
func TestWebhookRegistrationAccepted(t *testing.T) {
	c := suite.Cluster
	ctx := t.Context()
	name := "flagpole-e2e-registration-" + strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000"), ".", ""))
	mutating, validating := webhook.Registration{MutatingName: name, ValidatingName: name, ServiceNamespace: "flagpole-system",
		ServiceName: "flagpole-webhook", ExcludeNamespaces: []string{"kube-system", "flagpole-system"}, Validation: true}.Configurations()
	m, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("the API server refuses the mutating configuration: %v", err)
	}
	v, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("the API server refuses the validating configuration: %v", err)
	}
	if len(m.Webhooks) != 1 || len(m.Webhooks[0].MatchConditions) != 1 || *m.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail || len(v.Webhooks) != 4 {
		t.Errorf("stored: %+v %+v", m.Webhooks, v.Webhooks)
	}
}

// warningRecorder collects the admission warnings the API server passes on.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningRecorder) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}

// TestWebhookSelfManagedTLSAndValidation runs the webhook binary as the install
// does: no certificate given, so it issues its own into a Secret and writes the CA
// into both configurations (registered here by URL with an empty caBundle); then
// pods are injected, a FeatureFlag that would fail at runtime is refused at apply
// with its JSON path, and risky content is admitted with a warning.
func TestWebhookSelfManagedTLSAndValidation(t *testing.T) {
	c := suite.Cluster
	ctx := t.Context()
	ns := harness.Namespace(t, c, "selfmanaged")
	name := "flagpole-e2e-" + ns
	mutating, validating := webhook.Registration{MutatingName: name, ValidatingName: name, URL: "https://127.0.0.1:1", Validation: true}.Configurations()
	hook := suite.StartSelfManagedWebhook(t, c, suite.TempDir(t), ns, "webhook-tls", name, name, "--sidecar-image", sidecarImage)
	// Register by URL now that the port is known; the webhook fills caBundle in.
	setURL := func(cc *admissionregistrationv1.WebhookClientConfig) {
		u := strings.Replace(*cc.URL, "127.0.0.1:1", hook.Address, 1)
		cc.URL = &u
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
	for i := range mutating.Webhooks {
		setURL(&mutating.Webhooks[i].ClientConfig)
		mutating.Webhooks[i].NamespaceSelector = sel
	}
	for i := range validating.Webhooks {
		setURL(&validating.Webhooks[i].ClientConfig)
		validating.Webhooks[i].NamespaceSelector = sel
	}
	if _, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if _, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		v, err2 := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err == nil && err2 == nil && len(m.Webhooks[0].ClientConfig.CABundle) > 0 && len(v.Webhooks[3].ClientConfig.CABundle) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caBundle not filled in by the webhook (%v, %v)", err, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Kube.CoreV1().Secrets(ns).Get(ctx, "webhook-tls", metav1.GetOptions{}); err != nil {
		t.Fatalf("the webhook's Secret: %v", err)
	}

	// Validation: a FeatureFlag whose defaultVariant is not a variant is refused with its path.
	bad := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"f": {State: "ENABLED", Variants: []byte(`{"on":true}`), DefaultVariant: "blue"}}}}}
	_, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, bad, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), `spec.flagSpec.flags.f.defaultVariant: "blue" is not one of the variants ("on")`) {
		t.Errorf("invalid FeatureFlag: %v", err)
	}
	good := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec("checkout")}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, good, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A plain-text bearer token is admitted, with a warning.
	warnCfg := *c.Config
	recorder := &warningRecorder{}
	warnCfg.WarningHandler = recorder
	warnClient, err := harness.NewCluster(&warnCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{
		{Source: "checkout", Provider: "kubernetes"}, {Source: "https://flags.example.com/f.json", Provider: "http", HTTPSyncBearerToken: "tok3n"}}}}
	if _, err := warnClient.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if w := recorder.all(); !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(s, "httpSyncBearerToken") }) {
		t.Errorf("no warning about the plain-text token: %q", w)
	}

	// Injection over the self-managed certificate.
	for _, sa := range []string{"web"} {
		if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e := &webhookEnv{c: c, hook: hook, ns: ns}
	pod, err := c.Kube.CoreV1().Pods(ns).Create(ctx, e.pod("web", rpc("flags")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "flagd" {
		t.Errorf("not injected: %v", pod.Spec.InitContainers)
	}
}
