package controller

import (
	"context"
	"encoding/json"
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
