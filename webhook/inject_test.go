package webhook

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/sidecar"
)

const testImage = "registry.example/flagpole:v1"

// storedFFS is a FeatureFlagSource as the API server stores it: CRD defaults applied.
func storedFFS(ns, name string, sources []v1beta1.Source, edit func(*v1beta1.FeatureFlagSourceSpec)) *v1beta1.FeatureFlagSource {
	f := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)}}
	f.Spec = v1beta1.FeatureFlagSourceSpec{ManagementPort: 8014, Port: 8013, Evaluator: "json", Sources: sources, LogFormat: "json",
		EnvVarPrefix: "FLAGD", RolloutOnChange: new(false), ProbesEnabled: new(true), DebugLogging: new(false), OfrepPort: 8016}
	if edit != nil {
		edit(&f.Spec)
	}
	return f
}

func storedFF(ns, name string) *v1beta1.FeatureFlag {
	return &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
			"simple-flag": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`), DefaultVariant: "on"}}}}}
}

// appPod is an annotated pod owned by a ReplicaSet, as a Deployment creates it.
func appPod(annotations map[string]string, edit ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-abc", Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d9", UID: "rs-uid", Controller: new(true)}}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{
			{Name: "app", Image: "app:1"},
			{Name: "worker", Image: "worker:1", Env: []corev1.EnvVar{{Name: "FLAGD_PORT", Value: "9999"}}},
		}},
	}
	for _, e := range edit {
		e(p)
	}
	return p
}

func rpcPod(list string, edit ...func(*corev1.Pod)) *corev1.Pod {
	return appPod(map[string]string{AnnotationEnabled: "true", AnnotationFeatureFlagSource: list}, edit...)
}

func k8sSource(ref string) v1beta1.Source { return v1beta1.Source{Source: ref, Provider: "kubernetes"} }

func baseObjects() *sidecar.StaticObjects {
	return &sidecar.StaticObjects{
		Sources:         []*v1beta1.FeatureFlagSource{storedFFS("shop", "flags", []v1beta1.Source{k8sSource("checkout")}, nil)},
		Flags:           []*v1beta1.FeatureFlag{storedFF("shop", "checkout"), storedFF("shop", "search"), storedFF("payments", "limits")},
		ServiceAccounts: []*corev1.ServiceAccount{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}},
	}
}

// admitted runs the injector on pod (CREATE) and applies its patch with a JSON-patch
// library, returning the decision and the resulting pod.
func admitted(t *testing.T, in *Injector, pod *corev1.Pod) (Decision, *corev1.Pod) {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	d := in.Admit(context.Background(), &admissionv1.AdmissionRequest{UID: "u", Namespace: pod.Namespace, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: raw}})
	if len(d.Patch) == 0 {
		return d, pod
	}
	if !d.Allowed {
		t.Fatalf("a denial carries a patch")
	}
	p, err := jsonpatch.DecodePatch(d.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", d.Patch, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("applying %s: %v", d.Patch, err)
	}
	var mutated corev1.Pod
	if err := json.Unmarshal(out, &mutated); err != nil {
		t.Fatal(err)
	}
	return d, &mutated
}

func newInjector(objs *sidecar.StaticObjects) *Injector {
	return &Injector{Config: DefaultInjectorConfig(testImage), Objects: objs}
}

// wantSidecar is the injected container for the default FeatureFlagSource with the
// given --sources JSON.
func wantSidecar(sourcesJSON string) corev1.Container {
	always := corev1.ContainerRestartPolicyAlways
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8014), Scheme: "HTTP"}}}
	}
	live, ready, startup := probe("/healthz"), probe("/readyz"), probe("/readyz")
	live.InitialDelaySeconds, ready.InitialDelaySeconds = 5, 5
	startup.PeriodSeconds, startup.FailureThreshold = 1, 120
	return corev1.Container{
		Name: "flagd", Image: testImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Args: []string{"start", "--management-port", "8014", "--port", "8013", "--sources", sourcesJSON, "--ofrep-port", "8016",
			"--bind-address", "127.0.0.1", "--management-bind-address", "0.0.0.0"},
		Env: []corev1.EnvVar{
			{Name: "FLAGD_MANAGEMENT_PORT", Value: "8014"}, {Name: "FLAGD_PORT", Value: "8013"}, {Name: "FLAGD_EVALUATOR", Value: "json"},
			{Name: "FLAGD_LOG_FORMAT", Value: "json"}, {Name: "FLAGD_RESOLVER", Value: "rpc"},
		},
		Ports: []corev1.ContainerPort{{Name: "management", ContainerPort: 8014}, {Name: "flagd", ContainerPort: 8013}, {Name: "ofrep", ContainerPort: 8016}},
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		RestartPolicy: &always, LivenessProbe: live, ReadinessProbe: ready, StartupProbe: startup,
		SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}, Privileged: new(false),
			RunAsNonRoot: new(true), AllowPrivilegeEscalation: new(false), ReadOnlyRootFilesystem: new(true),
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
	}
}

var appEnvDefault = []corev1.EnvVar{
	{Name: "FLAGD_MANAGEMENT_PORT", Value: "8014"}, {Name: "FLAGD_PORT", Value: "8013"}, {Name: "FLAGD_EVALUATOR", Value: "json"},
	{Name: "FLAGD_LOG_FORMAT", Value: "json"}, {Name: "FLAGD_RESOLVER", Value: "rpc"},
}

var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// TestKubernetesProviderPod checks the whole injected pod for OFO's main case: a
// kubernetes source, the native sidecar, provider settings in the app containers, the
// annotations, and the RBAC grant as a side effect.
func TestKubernetesProviderPod(t *testing.T) {
	d, got := admitted(t, newInjector(baseObjects()), rpcPod("flags"))
	if !d.Allowed {
		t.Fatalf("denied: %s", d.Message)
	}
	want := rpcPod("flags")
	want.Annotations[AnnotationInjected] = "true"
	want.Annotations[AnnotationAllowK8sSync] = "true"
	want.Spec.InitContainers = []corev1.Container{wantSidecar(`[{"uri":"shop/checkout","provider":"kubernetes"}]`)}
	want.Spec.Containers[0].Env = appEnvDefault
	want.Spec.Containers[1].Env = append([]corev1.EnvVar{{Name: "FLAGD_PORT", Value: "9999"}}, // the app's own value wins
		appEnvDefault[0], appEnvDefault[2], appEnvDefault[3], appEnvDefault[4])
	if diff := cmp.Diff(want, got, quantities); diff != "" {
		t.Errorf("pod (-want +got):\n%s", diff)
	}
	wantEffects := []sidecar.Effect{sidecar.GrantFlags{Namespace: "shop", ServiceAccount: sidecar.Ref{Namespace: "shop", Name: "web"}, Flags: []string{"checkout"}}}
	if diff := cmp.Diff(wantEffects, d.Effects); diff != "" {
		t.Errorf("effects (-want +got):\n%s", diff)
	}
	// The sidecar contract: the args parse back into the configuration flagd mode runs.
	cfg, err := startconfig.Parse(got.Spec.InitContainers[0].Args)
	if err != nil {
		t.Fatalf("the sidecar would refuse its args: %v", err)
	}
	if cfg.BindAddress != "127.0.0.1" || len(cfg.Sources) != 1 || cfg.Sources[0].URI != "shop/checkout" {
		t.Errorf("parsed sidecar configuration: %+v", cfg)
	}
}

// TestDecisionFlow covers OFO's decision flow (ofo-compat §2.3, its Handle cases) and
// flagpole's differences, by message.
func TestDecisionFlow(t *testing.T) {
	objs := baseObjects()
	objs.Sources = append(objs.Sources,
		storedFFS("shop", "proxied", []v1beta1.Source{{Source: "checkout", Provider: "flagd-proxy"}}, nil),
		storedFFS("shop", "blob", []v1beta1.Source{{Source: "gs://bucket/flags.json", Provider: "gcs"}}, nil),
		storedFFS("shop", "odd", []v1beta1.Source{{Source: "x", Provider: "carrier-pigeon"}}, nil),
		storedFFS("shop", "missing-flag", []v1beta1.Source{k8sSource("nope")}, nil),
		storedFFS("shop", "no-provider", []v1beta1.Source{{Source: "checkout"}}, nil),
		storedFFS("ops", "shared", []v1beta1.Source{k8sSource("shop/checkout")}, nil),
		storedFFS("shop", "other-ns-flag", []v1beta1.Source{k8sSource("payments/limits")}, nil),
	)
	objs.InProcess = []*v1beta1.InProcessConfiguration{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ipc"}}}
	noOwner := func(p *corev1.Pod) { p.OwnerReferences = nil }
	noSA := func(p *corev1.Pod) { p.Spec.ServiceAccountName = "ghost" }
	cases := []struct {
		name    string
		pod     *corev1.Pod
		allowed bool
		code    int32
		message string
	}{
		{"not annotated", appPod(nil), true, 0, "OpenFeature is disabled"},
		{"enabled is case-sensitive", appPod(map[string]string{AnnotationEnabled: "True", AnnotationFeatureFlagSource: "flags"}), true, 0, "OpenFeature is disabled"},
		{"bare pod", rpcPod("flags", noOwner), false, 403, "static or orphaned pods cannot be mutated"},
		{"no mode annotation", appPod(map[string]string{AnnotationEnabled: "true"}), false, 403, msgNoMode},
		{"FeatureFlagSource missing", rpcPod("gone"), false, 404, `featureflagsources.core.openfeature.dev "shop/gone" not found`},
		{"bad reference", rpcPod("a/b/c"), false, 400, `annotation openfeature.dev/featureflagsource: "a/b/c": want name or namespace/name`},
		{"service account missing", rpcPod("flags", noSA), false, 403, `serviceaccounts "ghost" not found`},
		{"FeatureFlag missing", rpcPod("missing-flag"), false, 404, "FeatureFlagSource shop/missing-flag spec.sources[0]: FeatureFlag shop/nope not found"},
		{"flagd-proxy (readiness not checked without a cluster)", rpcPod("proxied"), true, 0, ""},
		{"blob provider", rpcPod("blob"), false, 400, "FeatureFlagSource shop/blob spec.sources[0]: provider gcs (cloud blob storage) is not implemented by flagpole's sidecar; serve the flags over http(s) or from a FeatureFlag"},
		{"unknown provider", rpcPod("odd"), false, 400, `FeatureFlagSource shop/odd spec.sources[0]: unknown provider "carrier-pigeon" (kubernetes, file, http, grpc, flagd-proxy)`},
		{"empty provider uses the default (kubernetes)", rpcPod("no-provider"), true, 0, ""},
		{"cross-namespace FeatureFlagSource", rpcPod("ops/shared"), false, 403,
			`FeatureFlagSource ops/shared is in another namespace than the pod (shop): cross-namespace references are refused unless the FeatureFlagSource lists "shop" in its flagpole.dev/allowed-namespaces annotation (or the operator runs with --cross-namespace=allow)`},
		{"cross-namespace FeatureFlag", rpcPod("other-ns-flag"), false, 403,
			`FeatureFlag payments/limits is in another namespace than the pod (shop): cross-namespace references are refused unless the FeatureFlag lists "shop" in its flagpole.dev/allowed-namespaces annotation (or the operator runs with --cross-namespace=allow)`},
		{"in-process configuration missing", appPod(map[string]string{AnnotationEnabled: "true", AnnotationInProcess: "nope"}), false, 404,
			`inprocessconfigurations.core.openfeature.dev "shop/nope" not found`},
		{"sidecar mode wins over in-process", appPod(map[string]string{AnnotationEnabled: "true", AnnotationFeatureFlagSource: "flags", AnnotationInProcess: "ipc"}), true, 0, ""},
		{"a container already named flagd", rpcPod("flags", func(p *corev1.Pod) { p.Spec.Containers[1].Name = "flagd" }), false, 400,
			`the pod already has a container named "flagd"; the sidecar cannot be injected next to it`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, got := admitted(t, newInjector(objs), tc.pod)
			if d.Allowed != tc.allowed || d.Code != tc.code || d.Message != tc.message {
				t.Errorf("got allowed=%v code=%d message %q\nwant allowed=%v code=%d message %q", d.Allowed, d.Code, d.Message, tc.allowed, tc.code, tc.message)
			}
			if !d.Allowed && len(d.Effects) > 0 {
				t.Errorf("a denial carries effects: %v", d.Effects)
			}
			if tc.allowed && tc.message == "" && !hasContainer(got.Spec.InitContainers, sidecar.ContainerName) {
				t.Errorf("no sidecar injected")
			}
		})
	}
}

// TestNotMutatedTwice: UPDATEs are allowed untouched (OFO re-mutates them and the
// API server refuses every change of an injected pod, #793), and a pod that already
// carries the injected sidecar is left alone.
func TestNotMutatedTwice(t *testing.T) {
	in := newInjector(baseObjects())
	_, injected := admitted(t, in, rpcPod("flags"))
	raw, err := json.Marshal(injected)
	if err != nil {
		t.Fatal(err)
	}
	update := in.Admit(context.Background(), &admissionv1.AdmissionRequest{Operation: admissionv1.Update, Object: runtime.RawExtension{Raw: raw}})
	if !update.Allowed || update.Patch != nil || update.Message != msgNotCreated {
		t.Errorf("UPDATE: %+v", update)
	}
	d, again := admitted(t, in, injected)
	if !d.Allowed || d.Patch != nil || d.Message != msgInjected {
		t.Errorf("re-created injected pod: %+v", d)
	}
	if diff := cmp.Diff(injected, again, quantities); diff != "" {
		t.Errorf("re-created injected pod changed (-want +got):\n%s", diff)
	}
}

// TestGrants: an admission that needs nothing new makes no write; a new flag widens
// the Role to the union; a missing RoleBinding is restored.
func TestGrants(t *testing.T) {
	sa := sidecar.Ref{Namespace: "shop", Name: "web"}
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: sidecar.GrantName(sa)},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1beta1.GroupName}, Resources: []string{"featureflags"}, Verbs: []string{"get", "list", "watch"}, ResourceNames: []string{"search"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: sidecar.GrantName(sa)}}
	cases := []struct {
		name     string
		roles    []*rbacv1.Role
		bindings []*rbacv1.RoleBinding
		source   string
		want     []sidecar.Effect
	}{
		{"nothing granted yet", nil, nil, "checkout", []sidecar.Effect{sidecar.GrantFlags{Namespace: "shop", ServiceAccount: sa, Flags: []string{"checkout"}}}},
		{"already granted: no write", []*rbacv1.Role{role}, []*rbacv1.RoleBinding{binding}, "search", nil},
		{"another flag: the union", []*rbacv1.Role{role}, []*rbacv1.RoleBinding{binding}, "checkout", []sidecar.Effect{sidecar.GrantFlags{Namespace: "shop", ServiceAccount: sa, Flags: []string{"checkout", "search"}}}},
		{"binding missing", []*rbacv1.Role{role}, nil, "search", []sidecar.Effect{sidecar.GrantFlags{Namespace: "shop", ServiceAccount: sa, Flags: []string{"search"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := baseObjects()
			objs.Roles, objs.RoleBindings = tc.roles, tc.bindings
			objs.Sources = []*v1beta1.FeatureFlagSource{storedFFS("shop", "flags", []v1beta1.Source{k8sSource(tc.source)}, nil)}
			d, _ := admitted(t, newInjector(objs), rpcPod("flags"))
			if diff := cmp.Diff(tc.want, d.Effects); diff != "" {
				t.Errorf("effects (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCrossNamespace: refused by default, allowed when the referenced object lists
// the pod's namespace (or "*"), or with --cross-namespace=allow; the grant is then
// made in the FeatureFlag's namespace.
func TestCrossNamespace(t *testing.T) {
	for _, tc := range []struct {
		name       string
		annotation string
		mode       sidecar.CrossNamespace
		allowed    bool
	}{
		{"default", "", sidecar.CrossNamespaceDeny, false},
		{"opt-in by name", "billing, shop", sidecar.CrossNamespaceDeny, true},
		{"opt-in for all", "*", sidecar.CrossNamespaceDeny, true},
		{"other namespaces only", "billing", sidecar.CrossNamespaceDeny, false},
		{"operator allows", "", sidecar.CrossNamespaceAllow, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := baseObjects()
			shared := storedFF("payments", "limits")
			shared.Annotations = map[string]string{sidecar.AnnotationAllowedNamespaces: tc.annotation}
			objs.Flags = []*v1beta1.FeatureFlag{shared}
			objs.Sources = []*v1beta1.FeatureFlagSource{storedFFS("shop", "flags", []v1beta1.Source{k8sSource("payments/limits")}, nil)}
			in := newInjector(objs)
			in.Config.Sidecar.CrossNamespace = tc.mode
			d, _ := admitted(t, in, rpcPod("flags"))
			if d.Allowed != tc.allowed {
				t.Fatalf("allowed = %v (%s)", d.Allowed, d.Message)
			}
			if tc.allowed {
				want := []sidecar.Effect{sidecar.GrantFlags{Namespace: "payments", ServiceAccount: sidecar.Ref{Namespace: "shop", Name: "web"}, Flags: []string{"limits"}}}
				if diff := cmp.Diff(want, d.Effects); diff != "" {
					t.Errorf("effects (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestProviders: the --sources entry, volumes, environment and effects of each
// provider.
func TestProviders(t *testing.T) {
	fileFFS := storedFFS("shop", "file", []v1beta1.Source{{Source: "checkout", Provider: "file"}}, nil)
	httpFFS := storedFFS("shop", "http", []v1beta1.Source{{Source: "https://flags.example.com/f.json", Provider: "http", Interval: 30, HTTPSyncBearerToken: "s3cr3t"},
		{Source: "http://flags.internal/f.json", Provider: "http"}}, nil)
	grpcFFS := storedFFS("shop", "grpc", []v1beta1.Source{{Source: "flagd-upstream:8015", Provider: "grpc", TLS: true, CertPath: "/ca.pem", ProviderID: "p", Selector: "s"}}, nil)
	objs := baseObjects()
	objs.Sources = append(objs.Sources, fileFFS, httpFFS, grpcFFS)

	t.Run("file", func(t *testing.T) {
		d, pod := admitted(t, newInjector(objs), rpcPod("file"))
		sc := pod.Spec.InitContainers[0]
		volume := "flagd-file-1dfc2ea56f" // flagd-file-<hash of shop/checkout>
		wantVolumes := []corev1.Volume{{Name: volume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "checkout"}}}}}
		if diff := cmp.Diff(wantVolumes, pod.Spec.Volumes); diff != "" {
			t.Errorf("volumes (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]corev1.VolumeMount{{Name: volume, MountPath: "/etc/flagd/shop_checkout", ReadOnly: true}}, sc.VolumeMounts); diff != "" {
			t.Errorf("mounts (-want +got):\n%s", diff)
		}
		if got := argAfter(sc.Args, "--sources"); got != `[{"uri":"/etc/flagd/shop_checkout/shop_checkout.flagd.json","provider":"file"}]` {
			t.Errorf("--sources %s", got)
		}
		want := []sidecar.Effect{sidecar.EnsureConfigMap{Namespace: "shop", Name: "checkout", FeatureFlag: sidecar.Ref{Namespace: "shop", Name: "checkout"}, Key: "shop_checkout.flagd.json",
			Data:   `{"flags":{"simple-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`,
			Owners: []metav1.OwnerReference{{APIVersion: "core.openfeature.dev/v1beta1", Kind: "FeatureFlag", Name: "checkout", UID: "uid-checkout", Controller: new(true)}}}}
		if diff := cmp.Diff(want, d.Effects); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}
		withCM := *objs
		withCM.ConfigMaps = []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout"}}}
		if d, _ := admitted(t, newInjector(&withCM), rpcPod("file")); len(d.Effects) != 0 {
			t.Errorf("ConfigMap exists: effects %v", d.Effects)
		}
	})
	t.Run("http: the token reaches the sidecar through a Secret, never the pod spec", func(t *testing.T) {
		d, pod := admitted(t, newInjector(objs), rpcPod("http"))
		if strings.Contains(string(d.Patch), "s3cr3t") {
			t.Fatalf("the bearer token is in the patch: %s", d.Patch)
		}
		secret := "flagpole-http-auth-3ecbfda28265c4f8" // flagpole-http-auth-<hash of the content>
		wantEffects := []sidecar.Effect{sidecar.EnsureSecret{Namespace: "shop", Name: secret, Key: "authorization", Value: "Bearer s3cr3t",
			Owners: []metav1.OwnerReference{{APIVersion: "core.openfeature.dev/v1beta1", Kind: "FeatureFlagSource", Name: "http", UID: "uid-http"}}}}
		if diff := cmp.Diff(wantEffects, d.Effects); diff != "" {
			t.Errorf("effects (-want +got):\n%s", diff)
		}
		sc := pod.Spec.InitContainers[0]
		wantEnv := corev1.EnvVar{Name: "FLAGPOLE_HTTP_AUTH_0", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "authorization"}}}
		if diff := cmp.Diff(wantEnv, sc.Env[len(sc.Env)-1]); diff != "" {
			t.Errorf("sidecar env (-want +got):\n%s", diff)
		}
		want := `[{"uri":"https://flags.example.com/f.json","provider":"http","interval":30,"authHeaderEnv":"FLAGPOLE_HTTP_AUTH_0"},` +
			`{"uri":"http://flags.internal/f.json","provider":"http","allowInsecure":true}]`
		if got := argAfter(sc.Args, "--sources"); got != want {
			t.Errorf("--sources\n got %s\nwant %s", got, want)
		}
		for _, c := range pod.Spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil {
					t.Errorf("app container %s got a secret reference %s", c.Name, e.Name)
				}
			}
		}
	})
	t.Run("grpc", func(t *testing.T) {
		_, pod := admitted(t, newInjector(objs), rpcPod("grpc"))
		want := `[{"uri":"flagd-upstream:8015","provider":"grpc","certPath":"/ca.pem","tls":true,"providerID":"p","selector":"s"}]`
		if got := argAfter(pod.Spec.InitContainers[0].Args, "--sources"); got != want {
			t.Errorf("--sources\n got %s\nwant %s", got, want)
		}
	})
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestMergeAndRender: several FeatureFlagSources merge in order (a later source left
// at the CRD default does not erase an earlier explicit value: OFO's ffs-one 8090 /
// ffs-two case), and every option of the spec reaches the sidecar.
func TestMergeAndRender(t *testing.T) {
	one := storedFFS("shop", "one", []v1beta1.Source{k8sSource("checkout")}, func(s *v1beta1.FeatureFlagSourceSpec) {
		s.Port, s.ManagementPort = 8090, 8091
		s.DebugLogging = new(true)
		s.OtelCollectorURI = "otel-collector.observability:4317"
		s.ContextValues = map[string]string{"env": "prod", "tier": "gold"}
		s.HeaderToContextMappings = map[string]string{"X-Tenant": "tenant"}
		s.Cors = []string{"https://old.example"}
		s.EnvVars = []corev1.EnvVar{{Name: "DEBUG_SYNC", Value: "1"}, {Name: "AWS_REGION", Value: "eu-west-1"}}
		s.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}
		s.SyncProviderArgs = []string{"a=b"}
	})
	two := storedFFS("shop", "two", []v1beta1.Source{k8sSource("search")}, func(s *v1beta1.FeatureFlagSourceSpec) {
		s.ContextValues = map[string]string{"tier": "silver"}
		s.Cors = []string{"https://*.example.com"}
		s.OfrepPort = 9016
		s.ProbesEnabled = new(false)
		s.EnvVars = []corev1.EnvVar{{Name: "DEBUG_SYNC", Value: "2"}}
	})
	objs := baseObjects()
	objs.Sources = []*v1beta1.FeatureFlagSource{one, two}
	d, pod := admitted(t, newInjector(objs), rpcPod("one,two"))
	if !d.Allowed {
		t.Fatal(d.Message)
	}
	sc := pod.Spec.InitContainers[0]
	wantArgs := []string{"start", "--management-port", "8091", "--port", "8090",
		"--sources", `[{"uri":"shop/checkout","provider":"kubernetes"},{"uri":"shop/search","provider":"kubernetes"}]`,
		"--debug", "--metrics-exporter", "otel", "--otel-collector-uri", "otel-collector.observability:4317",
		"--context-value", "env=prod", "--context-value", "tier=silver", "--context-from-header", "X-Tenant=tenant",
		"--cors-origin", "https://*.example.com", "--ofrep-port", "9016", "--bind-address", "127.0.0.1", "--management-bind-address", "0.0.0.0"}
	if diff := cmp.Diff(wantArgs, sc.Args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	wantEnv := []corev1.EnvVar{{Name: "AWS_REGION", Value: "eu-west-1"}, {Name: "FLAGD_DEBUG_SYNC", Value: "2"},
		{Name: "FLAGD_MANAGEMENT_PORT", Value: "8091"}, {Name: "FLAGD_PORT", Value: "8090"}, {Name: "FLAGD_EVALUATOR", Value: "json"},
		{Name: "FLAGD_LOG_FORMAT", Value: "json"}, {Name: "FLAGD_RESOLVER", Value: "rpc"}}
	if diff := cmp.Diff(wantEnv, sc.Env); diff != "" {
		t.Errorf("sidecar env (-want +got):\n%s", diff)
	}
	if sc.LivenessProbe != nil || sc.ReadinessProbe != nil || sc.StartupProbe != nil {
		t.Errorf("probesEnabled false still renders probes")
	}
	wantResources := corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
	}
	if diff := cmp.Diff(wantResources, sc.Resources, quantities); diff != "" {
		t.Errorf("resources merge per resource name (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]corev1.ContainerPort{{Name: "management", ContainerPort: 8091}, {Name: "flagd", ContainerPort: 8090}, {Name: "ofrep", ContainerPort: 9016}}, sc.Ports); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "AWS_REGION" || e.Name == "FLAGD_DEBUG_SYNC" {
				t.Errorf("app container %s got the sidecar's envVar %s (OFO copies them, secrets included)", c.Name, e.Name)
			}
		}
	}
	if diff := cmp.Diff([]string{"syncProviderArgs are ignored: flagd removed --sync-provider-args (flagd #1075) and flagpole's sidecar has no such option"}, d.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if _, err := startconfig.Parse(sc.Args); err != nil {
		t.Errorf("the sidecar would refuse its args: %v", err)
	}
}

// TestInitContainerPlacement: the sidecar comes first among init containers (so they
// can read flags), and replaces an init container named flagd in place (OFO).
func TestInitContainerPlacement(t *testing.T) {
	in := newInjector(baseObjects())
	_, pod := admitted(t, in, rpcPod("flags", func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m:1"}} }))
	if names := containerNames(pod.Spec.InitContainers); !cmp.Equal(names, []string{"flagd", "migrate"}) {
		t.Errorf("init containers %v", names)
	}
	_, pod = admitted(t, in, rpcPod("flags", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "m:1"}, {Name: "flagd", Image: "ghcr.io/open-feature/flagd:v0.15.4"}}
	}))
	if names := containerNames(pod.Spec.InitContainers); !cmp.Equal(names, []string{"migrate", "flagd"}) || pod.Spec.InitContainers[1].Image != testImage {
		t.Errorf("init containers %v, flagd image %s", names, pod.Spec.InitContainers[1].Image)
	}
}

func containerNames(cs []corev1.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// TestInProcess reproduces OFO's e2e `in-process` scenario (ofo-compat §6.2 #5): two
// InProcessConfigurations merged, the environment on every app container. flagpole
// keeps the envVars in their order (OFO reverses them).
func TestInProcess(t *testing.T) {
	objs := baseObjects()
	objs.InProcess = []*v1beta1.InProcessConfiguration{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "source-configuration"}, Spec: v1beta1.InProcessConfigurationSpec{
			Port: 8015, Host: "localhost", TLS: true, OfflineFlagSourcePath: "my-path", Cache: "lru", CacheMaxSize: 11, EnvVarPrefix: "my-prefix",
			EnvVars: []corev1.EnvVar{{Name: "name1", Value: "val1"}, {Name: "name2", Value: "val2"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "source-configuration2"}, Spec: v1beta1.InProcessConfigurationSpec{
			Port: 8015, Host: "my-host", Cache: "lru", CacheMaxSize: 1000, EnvVarPrefix: "my-second-prefix"}},
	}
	pod := appPod(map[string]string{AnnotationEnabled: "true", AnnotationInProcess: "source-configuration,source-configuration2"},
		func(p *corev1.Pod) { p.Spec.Containers[1].Env = nil })
	d, got := admitted(t, newInjector(objs), pod)
	if !d.Allowed || len(d.Effects) != 0 || got.Spec.InitContainers != nil {
		t.Fatalf("decision %+v, init containers %v", d, got.Spec.InitContainers)
	}
	want := []corev1.EnvVar{
		{Name: "my-second-prefix_name1", Value: "val1"}, {Name: "my-second-prefix_name2", Value: "val2"},
		{Name: "my-second-prefix_HOST", Value: "my-host"}, {Name: "my-second-prefix_PORT", Value: "8015"},
		{Name: "my-second-prefix_TLS", Value: "true"}, {Name: "my-second-prefix_CACHE", Value: "lru"},
		{Name: "my-second-prefix_MAX_CACHE_SIZE", Value: "11"}, {Name: "my-second-prefix_RESOLVER", Value: "in-process"},
		{Name: "my-second-prefix_OFFLINE_FLAG_SOURCE_PATH", Value: "my-path"},
	}
	for _, c := range got.Spec.Containers {
		if diff := cmp.Diff(want, c.Env, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("container %s env (-want +got):\n%s", c.Name, diff)
		}
	}
}
