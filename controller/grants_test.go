package controller

import (
	"context"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// The grant of ServiceAccount apps/web in namespace team (where its FeatureFlags are).
var (
	grantSA   = sidecar.Ref{Namespace: "apps", Name: "web"}
	grantName = sidecar.GrantName(grantSA)
	grantKey  = cache.ObjectName{Namespace: "team", Name: grantName}
	rolePath  = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/roles/" + grantName
	bindPath  = "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings/" + grantName
	saPath    = "/api/v1/namespaces/apps/serviceaccounts/web"
)

func grantRole(flags ...string) *rbacv1.Role {
	role := sidecar.GrantRole(sidecar.GrantFlags{Namespace: "team", ServiceAccount: grantSA, Flags: flags})
	role.ResourceVersion = "7"
	return role
}

func grantBinding() *rbacv1.RoleBinding {
	b := sidecar.GrantBinding(sidecar.GrantFlags{Namespace: "team", ServiceAccount: grantSA})
	b.ResourceVersion = "8"
	return b
}

func teamFlag(name string) *v1beta1.FeatureFlag {
	return &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name}}
}

func deleteAt(path, rv string) action {
	return action{Verb: "DELETE", Path: path, Body: map[string]any{"preconditions": map[string]any{"resourceVersion": rv}}}
}

func removed(message string) event {
	return event{Object: "team/" + grantName, Type: "Normal", Reason: ReasonGrantRemoved, Message: message}
}

// TestGrantsSync is the RBAC clean-up's decision table. What looks gone in a cache
// is read live first; deletions carry the resourceVersion they were decided on.
func TestGrantsSync(t *testing.T) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"}}
	narrowed := grantRole("a")
	narrowed.TypeMeta = metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}
	cases := []struct {
		name       string
		roles      []*rbacv1.Role
		bindings   []*rbacv1.RoleBinding
		cached     []runtime.Object // ServiceAccounts and FeatureFlags in the caches
		live       map[string]runtime.Object
		fail       map[string]int32
		want       []action
		wantEvents []event
	}{{
		name:     "ServiceAccount and FeatureFlags exist: nothing to do, nothing read",
		roles:    []*rbacv1.Role{grantRole("a", "b")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa, teamFlag("a"), teamFlag("b")},
	}, {
		name:       "ServiceAccount gone (confirmed live): RoleBinding, then Role deleted",
		roles:      []*rbacv1.Role{grantRole("a", "b")},
		bindings:   []*rbacv1.RoleBinding{grantBinding()},
		cached:     []runtime.Object{teamFlag("a"), teamFlag("b")},
		want:       []action{{Verb: "GET", Path: saPath}, deleteAt(bindPath, "8"), deleteAt(rolePath, "7")},
		wantEvents: []event{removed("RoleBinding and Role deleted: ServiceAccount apps/web is gone")},
	}, {
		name:     "ServiceAccount not cached yet but there (live): nothing deleted",
		roles:    []*rbacv1.Role{grantRole("a")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{teamFlag("a")},
		live:     map[string]runtime.Object{saPath: sa},
		want:     []action{{Verb: "GET", Path: saPath}},
	}, {
		name:     "one FeatureFlag gone (confirmed live): dropped from the Role",
		roles:    []*rbacv1.Role{grantRole("a", "b")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa, teamFlag("a")},
		want: []action{{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b"},
			{Verb: "PUT", Path: rolePath, Body: asJSON(t, narrowed)}},
		wantEvents: []event{removed("no longer grants ServiceAccount apps/web the FeatureFlags b (gone); still grants a")},
	}, {
		name:     "FeatureFlag not cached yet but there (live): kept",
		roles:    []*rbacv1.Role{grantRole("a", "b")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa, teamFlag("a")},
		live:     map[string]runtime.Object{"/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b": teamFlag("b")},
		want:     []action{{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b"}},
	}, {
		name:     "every FeatureFlag gone: RoleBinding and Role deleted",
		roles:    []*rbacv1.Role{grantRole("a", "b")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa},
		want: []action{{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/a"},
			{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b"},
			deleteAt(bindPath, "8"), deleteAt(rolePath, "7")},
		wantEvents: []event{removed("RoleBinding and Role deleted: no FeatureFlag it grants is left (a, b gone)")},
	}, {
		name:       "RoleBinding already gone: the Role is still deleted",
		roles:      []*rbacv1.Role{grantRole("a")},
		bindings:   []*rbacv1.RoleBinding{grantBinding()},
		fail:       map[string]int32{"DELETE " + bindPath: http.StatusNotFound},
		want:       []action{{Verb: "GET", Path: saPath}, deleteAt(bindPath, "8"), deleteAt(rolePath, "7")},
		wantEvents: []event{removed("Role deleted: ServiceAccount apps/web is gone")},
	}, {
		name:     "RoleBinding changed since it was cached (conflict): nothing more deleted, no Event",
		roles:    []*rbacv1.Role{grantRole("a")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		fail:     map[string]int32{"DELETE " + bindPath: http.StatusConflict},
		want:     []action{{Verb: "GET", Path: saPath}, deleteAt(bindPath, "8")},
	}, {
		name:     "Role widened by the webhook meanwhile (conflict): not narrowed, no Event",
		roles:    []*rbacv1.Role{grantRole("a", "b")},
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa, teamFlag("a")},
		fail:     map[string]int32{"PUT " + rolePath: http.StatusConflict},
		want: []action{{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b"},
			{Verb: "PUT", Path: rolePath, Body: asJSON(t, narrowed)}},
	}, {
		name:       "RoleBinding whose Role is gone (confirmed live): deleted",
		bindings:   []*rbacv1.RoleBinding{grantBinding()},
		cached:     []runtime.Object{sa},
		want:       []action{{Verb: "GET", Path: rolePath}, deleteAt(bindPath, "8")},
		wantEvents: []event{removed("RoleBinding deleted: its Role is gone")},
	}, {
		name:     "RoleBinding whose Role is not cached yet but there (live): kept",
		bindings: []*rbacv1.RoleBinding{grantBinding()},
		cached:   []runtime.Object{sa},
		live:     map[string]runtime.Object{rolePath: grantRole("a")},
		want:     []action{{Verb: "GET", Path: rolePath}},
	}, {
		name: "not a grant (no grant-for annotation): left alone",
		roles: func() []*rbacv1.Role {
			r := grantRole("a")
			r.Annotations = nil
			return []*rbacv1.Role{r}
		}(),
	}, {
		name: "not a grant (a name the webhook does not give that account's grant): left alone",
		roles: func() []*rbacv1.Role {
			r := grantRole("a")
			r.Annotations[sidecar.AnnotationGrantFor] = "apps/other"
			return []*rbacv1.Role{r}
		}(),
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r, err := NewGrants(f.cluster, f.clients, 0, f.events, nil, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			r.grace = 0 // TestGrantsGracePeriod
			for _, role := range tc.roles {
				f.seed(f.cluster.Roles, role)
			}
			for _, b := range tc.bindings {
				f.seed(f.cluster.RoleBindings, b)
			}
			for _, o := range tc.cached {
				switch o.(type) {
				case *corev1.ServiceAccount:
					f.seed(f.cluster.ServiceAccounts, o)
				default:
					f.seed(f.cluster.FeatureFlags, o)
				}
			}
			maps.Copy(f.api.live, tc.live)
			f.api.fail = tc.fail
			if err := r.sync(context.Background(), grantKey); err != nil {
				t.Fatalf("sync: %v", err)
			}
			f.check(tc.name, tc.want, tc.wantEvents)
		})
	}
}

// TestGrantsGracePeriod: what is found gone is acted on only once it has been gone
// for the grace period; an object created again meanwhile keeps its grant.
func TestGrantsGracePeriod(t *testing.T) {
	f := newFixture(t)
	r, err := NewGrants(f.cluster, f.clients, 0, f.events, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	now := testNow
	r.now = func() time.Time { return now }
	f.seed(f.cluster.Roles, grantRole("a", "b"))
	f.seed(f.cluster.RoleBindings, grantBinding())
	f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"}})
	f.seed(f.cluster.FeatureFlags, teamFlag("a"))
	getB := action{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/b"}
	sync := func(step string, want []action, wantEvents []event) {
		t.Helper()
		if err := r.sync(context.Background(), grantKey); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		f.check(step, want, wantEvents)
	}

	sync("b found gone", []action{getB}, nil)
	now = now.Add(GrantGrace / 2)
	f.api.live[getB.Path] = teamFlag("b") // created again
	sync("b created again within the grace period", []action{getB}, nil)
	delete(f.api.live, getB.Path) // deleted again: the grace period starts over
	now = now.Add(GrantGrace / 2)
	sync("b gone again", []action{getB}, nil)
	now = now.Add(GrantGrace - time.Second)
	sync("not yet", []action{getB}, nil)
	now = now.Add(time.Second)
	narrowed := grantRole("a")
	narrowed.TypeMeta = metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"}
	sync("gone for the grace period", []action{getB, {Verb: "PUT", Path: rolePath, Body: asJSON(t, narrowed)}},
		[]event{removed("no longer grants ServiceAccount apps/web the FeatureFlags b (gone); still grants a")})
}

// TestGrantsHandlers: a deleted ServiceAccount enqueues its grants in every
// namespace; a deleted FeatureFlag the grants that name it.
func TestGrantsHandlers(t *testing.T) {
	f := newFixture(t)
	r, err := NewGrants(f.cluster, f.clients, 0, f.events, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	other := sidecar.GrantRole(sidecar.GrantFlags{Namespace: "shared", ServiceAccount: grantSA, Flags: []string{"x"}})
	unrelated := sidecar.GrantRole(sidecar.GrantFlags{Namespace: "team", ServiceAccount: sidecar.Ref{Namespace: "apps", Name: "db"}, Flags: []string{"c"}})
	f.seed(f.cluster.Roles, grantRole("a", "b"), other, unrelated)
	f.seed(f.cluster.RoleBindings, grantBinding())
	r.enqueueIndexed(&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"}}, indexGrantsByAccount, f.cluster.Roles, f.cluster.RoleBindings)
	if r.Len() != 2 {
		t.Errorf("ServiceAccount deleted: %d keys queued, want 2 (team and shared)", r.Len())
	}
	r.enqueueIndexed(cache.DeletedFinalStateUnknown{Obj: teamFlag("c")}, indexGrantsByFlag, f.cluster.Roles)
	if r.Len() != 3 {
		t.Errorf("FeatureFlag deleted: %d keys queued, want 3", r.Len())
	}
}
