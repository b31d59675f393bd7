package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// flagdFixture is a Flagd controller on the fixture's fake API server and caches.
type flagdFixture struct {
	*fixture
	r   *Flagd
	rec *record.FakeRecorder
}

func newFlagdFixture(t *testing.T) *flagdFixture {
	t.Helper()
	fx := newFixture(t)
	rec := record.NewFakeRecorder(16)
	renderer := &sidecar.Renderer{Config: sidecar.DefaultConfig("flagpole:test"), Objects: fx.cluster}
	r, err := NewFlagd(renderer, fx.cluster, fx.clients, FlagdOptions{Labels: map[string]string{"team": "web"}}, rec, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &flagdFixture{fixture: fx, r: r, rec: rec}
}

// sync reconciles the Flagd ns/shared.
func (f *flagdFixture) sync() error {
	return f.r.sync(context.Background(), cache.ObjectName{Namespace: "ns", Name: "shared"})
}

func fixtureFlagd(edit func(*v1beta1.Flagd)) *v1beta1.Flagd {
	fd := &v1beta1.Flagd{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared", UID: "flagd-uid", Generation: 3},
		Spec: v1beta1.FlagdSpec{FeatureFlagSource: "flags"}}
	if edit != nil {
		edit(fd)
	}
	return fd
}

func fixtureSource() *v1beta1.FeatureFlagSource {
	yes, no := true, false
	return &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "flags", UID: "ffs-uid"},
		Spec: v1beta1.FeatureFlagSourceSpec{ManagementPort: 8014, Port: 8013, Evaluator: "json", LogFormat: "json", EnvVarPrefix: "FLAGD",
			ProbesEnabled: &yes, DebugLogging: &no, RolloutOnChange: &no, OfrepPort: 8016,
			Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
}

func fixtureFlag() *v1beta1.FeatureFlag {
	return &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "checkout"}}
}

// decodeInto decodes a recorded body into a typed object.
func decodeInto(t *testing.T, body map[string]any, out any) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
}

// TestFlagdFirstReconcile: a new Flagd gets its ServiceAccount, the grant of its
// FeatureFlag, a Deployment and a Service (applied), and a status.
func TestFlagdFirstReconcile(t *testing.T) {
	f := newFlagdFixture(t)
	f.seed(f.r.flagds, fixtureFlagd(nil))
	f.seed(f.cluster.Sources, fixtureSource())
	f.seed(f.cluster.FeatureFlags, fixtureFlag())
	f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"PATCH /api/v1/namespaces/ns/serviceaccounts/shared",
		"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles",
		"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
		"PATCH /apis/apps/v1/namespaces/ns/deployments/shared",
		"PATCH /api/v1/namespaces/ns/services/shared",
		"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status",
	}
	if diff := cmp.Diff(want, f.api.writes()); diff != "" {
		t.Fatalf("writes (-want +got):\n%s", diff)
	}
	var d appsv1.Deployment
	decodeInto(t, f.api.body("PATCH", "/apis/apps/v1/namespaces/ns/deployments/shared"), &d)
	c := d.Spec.Template.Spec.Containers[0]
	cfg, err := startconfig.Parse(c.Args)
	if err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	type view struct {
		Replicas               int32
		SA, Image, Bind, Label string
		Owner                  string
		Sources                startconfig.SourceList
		Ports                  []corev1.ContainerPort
	}
	got := view{*d.Spec.Replicas, d.Spec.Template.Spec.ServiceAccountName, c.Image, cfg.BindAddress, d.Spec.Template.Labels["team"],
		d.OwnerReferences[0].Kind + "/" + d.OwnerReferences[0].Name, cfg.Sources, c.Ports}
	wantView := view{1, "shared", "flagpole:test", "", "web", "Flagd/shared", startconfig.SourceList{{URI: "ns/checkout", Provider: "kubernetes"}},
		[]corev1.ContainerPort{{Name: "management", ContainerPort: 8014}, {Name: "flagd", ContainerPort: 8013}, {Name: "ofrep", ContainerPort: 8016}}}
	if diff := cmp.Diff(wantView, got); diff != "" {
		t.Errorf("Deployment (-want +got):\n%s", diff)
	}
	var st struct {
		Status v1beta1.FlagdStatus `json:"status"`
	}
	decodeInto(t, f.api.body("PATCH", "/apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"), &st)
	if st.Status.Address != "shared.ns.svc:8013" || st.Status.ObservedGeneration != 3 || st.Status.Conditions[0].Reason != "Progressing" {
		t.Errorf("status %+v", st.Status)
	}
}

// TestFlagdSteadyState: when the caches show every child as desired and the status
// unchanged, a reconcile writes nothing.
func TestFlagdSteadyState(t *testing.T) {
	f := newFlagdFixture(t)
	f.seed(f.cluster.Sources, fixtureSource())
	f.seed(f.cluster.FeatureFlags, fixtureFlag())
	f.seed(f.r.flagds, fixtureFlagd(nil))
	f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	// feed what was written back into the caches, as the watches would
	decodeSeed := func(inf cache.SharedIndexInformer, path string, obj runtime.Object) {
		decodeInto(t, f.api.body("PATCH", path), obj)
		f.seed(inf, obj)
	}
	decodeSeed(f.r.serviceAccounts, "/api/v1/namespaces/ns/serviceaccounts/shared", &corev1.ServiceAccount{})
	decodeSeed(f.r.deployments, "/apis/apps/v1/namespaces/ns/deployments/shared", &appsv1.Deployment{})
	decodeSeed(f.r.services, "/api/v1/namespaces/ns/services/shared", &corev1.Service{})
	var role rbacv1.Role
	decodeInto(t, f.api.body("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles"), &role)
	f.seed(f.cluster.Roles, &role)
	f.seed(f.cluster.RoleBindings, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: role.Name}})
	// the Deployment now in the cache changes the status once; feed that back too
	feedStatus := func() {
		var st struct {
			Status v1beta1.FlagdStatus `json:"status"`
		}
		decodeInto(t, f.api.body("PATCH", "/apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"), &st)
		f.seed(f.r.flagds, fixtureFlagd(func(fd *v1beta1.Flagd) { fd.Status = st.Status }))
	}
	feedStatus()
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	feedStatus()
	f.api.take()
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	if w := f.api.writes(); len(w) != 0 {
		t.Errorf("steady state wrote %v", w)
	}
}

// TestFlagdDecisions covers the rest of the decision table by the writes made.
func TestFlagdDecisions(t *testing.T) {
	ownedIngress := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared",
		OwnerReferences: ownerRef(fixtureFlagd(nil))}}
	foreignIngress := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}}
	cases := []struct {
		name       string
		flagd      *v1beta1.Flagd
		source     bool
		flag       bool
		ingress    *networkingv1.Ingress
		wantWrites []string
		wantReason string
		wantEvent  bool
	}{
		{name: "source missing", flagd: fixtureFlagd(nil), flag: true, wantWrites: []string{
			"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"}, wantReason: "FeatureFlagSourceNotFound", wantEvent: true},
		{name: "FeatureFlag missing: the source cannot be rendered", flagd: fixtureFlagd(nil), source: true, wantWrites: []string{
			"PATCH /api/v1/namespaces/ns/serviceaccounts/shared",
			"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"}, wantReason: "Invalid", wantEvent: true},
		{name: "ingress enabled", flagd: fixtureFlagd(func(fd *v1beta1.Flagd) {
			fd.Spec.Ingress = &v1beta1.IngressSpec{Enabled: true, Hosts: []string{"flags.example.com"}}
			fd.Spec.ServiceAccountName = "given"
		}), source: true, flag: true, wantWrites: []string{
			"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles",
			"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
			"PATCH /apis/apps/v1/namespaces/ns/deployments/shared",
			"PATCH /api/v1/namespaces/ns/services/shared",
			"PATCH /apis/networking.k8s.io/v1/namespaces/ns/ingresses/shared",
			"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"}, wantReason: "Progressing"},
		{name: "ingress disabled: the owned Ingress is deleted", flagd: fixtureFlagd(func(fd *v1beta1.Flagd) { fd.Spec.ServiceAccountName = "given" }),
			source: true, flag: true, ingress: ownedIngress, wantWrites: []string{
				"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles",
				"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
				"PATCH /apis/apps/v1/namespaces/ns/deployments/shared",
				"PATCH /api/v1/namespaces/ns/services/shared",
				"DELETE /apis/networking.k8s.io/v1/namespaces/ns/ingresses/shared",
				"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"}, wantReason: "Progressing"},
		{name: "ingress disabled: someone else's Ingress is left alone", flagd: fixtureFlagd(func(fd *v1beta1.Flagd) { fd.Spec.ServiceAccountName = "given" }),
			source: true, flag: true, ingress: foreignIngress, wantWrites: []string{
				"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles",
				"POST /apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
				"PATCH /apis/apps/v1/namespaces/ns/deployments/shared",
				"PATCH /api/v1/namespaces/ns/services/shared",
				"PATCH /apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"}, wantReason: "Progressing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlagdFixture(t)
			f.seed(f.r.flagds, tc.flagd)
			if tc.source {
				f.seed(f.cluster.Sources, fixtureSource())
			}
			if tc.flag {
				f.seed(f.cluster.FeatureFlags, fixtureFlag())
			}
			if tc.ingress != nil {
				f.seed(f.r.ingresses, tc.ingress)
			}
			for _, sa := range []string{"shared", "given"} {
				f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: sa}})
			}
			if err := f.sync(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantWrites, f.api.writes()); diff != "" {
				t.Errorf("writes (-want +got):\n%s", diff)
			}
			var st struct {
				Status v1beta1.FlagdStatus `json:"status"`
			}
			decodeInto(t, f.api.body("PATCH", "/apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"), &st)
			if len(st.Status.Conditions) != 1 || st.Status.Conditions[0].Reason != tc.wantReason {
				t.Errorf("status %+v, want reason %s", st.Status, tc.wantReason)
			}
			if got := len(f.rec.Events) > 0; got != tc.wantEvent {
				t.Errorf("event recorded: %v, want %v", got, tc.wantEvent)
			}
		})
	}
}

// TestFlagdLeavesOthersObjectsAlone: a Deployment of the Flagd's name that it does
// not control (not in the labelled cache, found by a live read) is not taken over:
// no write to it, a Conflict status and Event naming it. Its own Deployment, not
// cached yet, is applied.
func TestFlagdLeavesOthersObjectsAlone(t *testing.T) {
	const path = "/apis/apps/v1/namespaces/ns/deployments/shared"
	for _, tc := range []struct {
		name       string
		owners     []metav1.OwnerReference
		wantApply  bool
		wantReason string
	}{
		{name: "someone else's", wantReason: ReasonConflict},
		{name: "another Flagd's", owners: []metav1.OwnerReference{{Kind: "Flagd", Name: "shared", UID: "older-uid", Controller: new(true)}}, wantReason: ReasonConflict},
		{name: "its own, not cached yet", owners: ownerRef(fixtureFlagd(nil)), wantApply: true, wantReason: "Progressing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlagdFixture(t)
			f.seed(f.r.flagds, fixtureFlagd(nil))
			f.seed(f.cluster.Sources, fixtureSource())
			f.seed(f.cluster.FeatureFlags, fixtureFlag())
			f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
			f.api.live[path] = &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared", OwnerReferences: tc.owners}}
			if err := f.sync(); err != nil {
				t.Fatal(err)
			}
			if applied := slices.Contains(f.api.writes(), "PATCH "+path); applied != tc.wantApply {
				t.Errorf("applied: %v, want %v (writes %v)", applied, tc.wantApply, f.api.writes())
			}
			var st struct {
				Status v1beta1.FlagdStatus `json:"status"`
			}
			decodeInto(t, f.api.body("PATCH", "/apis/core.openfeature.dev/v1beta1/namespaces/ns/flagds/shared/status"), &st)
			c := st.Status.Conditions[0]
			if c.Reason != tc.wantReason {
				t.Errorf("status reason %s (%s), want %s", c.Reason, c.Message, tc.wantReason)
			}
			if tc.wantReason == ReasonConflict && c.Message != "deployments ns/shared exists and is not controlled by this Flagd; rename the Flagd or remove that object" {
				t.Errorf("message %q", c.Message)
			}
		})
	}
}

func TestSyncPortIsTheSidecarContractDefault(t *testing.T) {
	if startconfig.Default().SyncPort != syncPort {
		t.Errorf("the Service's sync port %d is not flagd mode's default %d", syncPort, startconfig.Default().SyncPort)
	}
}

// TestFlagdAuth: a Flagd's token Secret, TLS Secret and client CA are mounted and
// passed to flagd, through the sidecar contract (the args parse back).
func TestFlagdAuth(t *testing.T) {
	f := newFlagdFixture(t)
	f.seed(f.cluster.Sources, fixtureSource())
	f.seed(f.cluster.FeatureFlags, fixtureFlag())
	f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
	f.seed(f.r.flagds, fixtureFlagd(func(fd *v1beta1.Flagd) {
		fd.Spec.Auth = &v1beta1.FlagdAuth{TokenSecretRef: &v1beta1.SecretKeyRef{Name: "flagd-tokens", Key: "apps"},
			TLS: &v1beta1.FlagdTLS{SecretName: "flagd-tls", ClientCASecretRef: &v1beta1.SecretKeyRef{Name: "clients", Key: "ca.pem"}}}
	}))
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	decodeInto(t, f.api.body("PATCH", "/apis/apps/v1/namespaces/ns/deployments/shared"), &d)
	c := d.Spec.Template.Spec.Containers[0]
	cfg, err := startconfig.Parse(c.Args)
	if err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	type view struct{ Token, Cert, Key, CA string }
	if diff := cmp.Diff(view{"/etc/flagpole/auth/tokens", "/etc/flagpole/tls/tls.crt", "/etc/flagpole/tls/tls.key", "/etc/flagpole/client-ca/ca.crt"},
		view{cfg.AuthTokenFile, cfg.ServerCertPath, cfg.ServerKeyPath, cfg.ClientCAPath}); diff != "" || !cfg.OfrepTLS {
		t.Errorf("flagd configuration (-want +got):\n%s\nofrep TLS %v", diff, cfg.OfrepTLS)
	}
	var secrets []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secrets = append(secrets, v.Name+"="+v.Secret.SecretName)
		}
	}
	want := []string{"flagpole-auth-token=flagd-tokens", "flagpole-tls=flagd-tls", "flagpole-client-ca=clients"}
	if diff := cmp.Diff(want, secrets); diff != "" {
		t.Errorf("secret volumes (-want +got):\n%s", diff)
	}
	if len(c.VolumeMounts) != 3 {
		t.Errorf("mounts %v", c.VolumeMounts)
	}
}

// TestFlagdDeploymentRestricted: the standalone Flagd's Deployment meets the
// "restricted" Pod Security Standard whatever its FeatureFlagSource and auth ask
// for: every container non-root, read-only root file system, no privilege
// escalation, all capabilities dropped, RuntimeDefault seccomp, not privileged; the
// pod non-root with RuntimeDefault seccomp, no host namespaces, host ports or host
// paths.
func TestFlagdDeploymentRestricted(t *testing.T) {
	yes := true
	cases := map[string]struct {
		source func(*v1beta1.FeatureFlagSource)
		flagd  func(*v1beta1.Flagd)
	}{
		"kubernetes source": {},
		"every source kind, debug and env": {source: func(s *v1beta1.FeatureFlagSource) {
			s.Spec.Sources = []v1beta1.Source{
				{Source: "checkout", Provider: "kubernetes"},
				{Source: "https://flags.example.com/flags.json", Provider: "http"},
				{Source: "flags.example.com:8015", Provider: "grpc"},
				{Source: "checkout", Provider: "flagd-proxy"},
			}
			s.Spec.DebugLogging = &yes
			s.Spec.EnvVars = []corev1.EnvVar{{Name: "EXTRA", Value: "1"}}
		}},
		"auth with token, TLS and client CA": {flagd: func(fd *v1beta1.Flagd) {
			fd.Spec.Auth = &v1beta1.FlagdAuth{TokenSecretRef: &v1beta1.SecretKeyRef{Name: "flagd-tokens", Key: "apps"},
				TLS: &v1beta1.FlagdTLS{SecretName: "flagd-tls", ClientCASecretRef: &v1beta1.SecretKeyRef{Name: "clients", Key: "ca.pem"}}}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFlagdFixture(t)
			src := fixtureSource()
			if tc.source != nil {
				tc.source(src)
			}
			f.seed(f.cluster.Sources, src)
			f.seed(f.cluster.FeatureFlags, fixtureFlag())
			f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
			f.seed(f.r.flagds, fixtureFlagd(tc.flagd))
			if err := f.sync(); err != nil {
				t.Fatal(err)
			}
			var d appsv1.Deployment
			decodeInto(t, f.api.body("PATCH", "/apis/apps/v1/namespaces/ns/deployments/shared"), &d)
			for _, problem := range restrictedProblems(&d.Spec.Template.Spec) {
				t.Error(problem)
			}
		})
	}
}

// restrictedProblems lists how a pod spec falls short of the restricted Pod
// Security Standard (the checks that apply to what flagpole renders).
func restrictedProblems(p *corev1.PodSpec) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if p.HostNetwork || p.HostPID || p.HostIPC {
		bad("pod shares host namespaces: network %v, PID %v, IPC %v", p.HostNetwork, p.HostPID, p.HostIPC)
	}
	psc := p.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("pod securityContext.runAsNonRoot is not true: %+v", psc)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("pod securityContext.seccompProfile is not RuntimeDefault: %+v", psc)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		bad("pod runs as UID 0")
	}
	for _, v := range p.Volumes {
		if v.HostPath != nil {
			bad("volume %s is a hostPath (%s)", v.Name, v.HostPath.Path)
		}
	}
	containers := append(slices.Clone(p.InitContainers), p.Containers...)
	if len(containers) == 0 {
		bad("no container")
	}
	for _, c := range containers {
		sc := c.SecurityContext
		if sc == nil {
			bad("container %s has no securityContext", c.Name)
			continue
		}
		check := func(field string, ok bool, got any) {
			if !ok {
				bad("container %s: securityContext.%s is %v", c.Name, field, got)
			}
		}
		check("runAsNonRoot (want true)", sc.RunAsNonRoot != nil && *sc.RunAsNonRoot, ptrString(sc.RunAsNonRoot))
		check("readOnlyRootFilesystem (want true)", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, ptrString(sc.ReadOnlyRootFilesystem))
		check("allowPrivilegeEscalation (want false)", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, ptrString(sc.AllowPrivilegeEscalation))
		check("privileged (want unset or false)", sc.Privileged == nil || !*sc.Privileged, ptrString(sc.Privileged))
		check("capabilities (want drop [ALL], add none)", sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0, sc.Capabilities)
		check("seccompProfile (want RuntimeDefault)", sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile)
		check("runAsUser (want not 0)", sc.RunAsUser == nil || *sc.RunAsUser != 0, ptrString(sc.RunAsUser))
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				bad("container %s: port %s binds host port %d", c.Name, port.Name, port.HostPort)
			}
		}
	}
	return out
}

// ptrString prints a pointer's value, or "unset".
func ptrString[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
