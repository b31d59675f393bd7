package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// bookkeepingManagers are the field managers that server-side apply to every object
// of TestInformerCachesDropManagedFields, as GitOps tools, kubectl and other
// controllers do in a real cluster.
var bookkeepingManagers = []string{"argocd", "kubectl", "team-bot", "kustomize-controller"}

// TestInformerCachesDropManagedFields: objects that several field managers
// server-side applied to carry large managedFields on the API server; the caches
// the webhook and the controllers read (sidecar.Cluster, built by NewCluster as
// `flagpole webhook`, `controller` and `operator` build it, through kube.NewInformer
// like every other informer of those modes) hold them without any.
func TestInformerCachesDropManagedFields(t *testing.T) {
	c := suite.Cluster
	ctx := t.Context()
	ns := harness.Namespace(t, c, "bookkeeping")
	managed := map[string]string{sidecar.LabelManagedBy: sidecar.ManagedBy}
	flags := c.Flags.CoreV1beta1()
	created := []struct {
		kind, apiVersion string
		create           func() (metav1.Object, error)
		patch            func(manager string, body []byte) (metav1.Object, error)
	}{
		{"FeatureFlag", "core.openfeature.dev/v1beta1", func() (metav1.Object, error) {
			return flags.FeatureFlags(ns).Create(ctx, &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "obj"},
				Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec("red")}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return flags.FeatureFlags(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"FeatureFlagSource", "core.openfeature.dev/v1beta1", func() (metav1.Object, error) {
			return flags.FeatureFlagSources(ns).Create(ctx, &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "obj"},
				Spec: v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{{Source: "obj", Provider: "kubernetes"}}}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return flags.FeatureFlagSources(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"InProcessConfiguration", "core.openfeature.dev/v1beta1", func() (metav1.Object, error) {
			return flags.InProcessConfigurations(ns).Create(ctx, &v1beta1.InProcessConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "obj"}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return flags.InProcessConfigurations(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"ServiceAccount", "v1", func() (metav1.Object, error) {
			return c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "obj", Labels: map[string]string{"team": "web"}}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return c.Kube.CoreV1().ServiceAccounts(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"ConfigMap", "v1", func() (metav1.Object, error) {
			return c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "obj", Labels: managed},
				Data: map[string]string{"flags.flagd.json": "{}"}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return c.Kube.CoreV1().ConfigMaps(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"Role", "rbac.authorization.k8s.io/v1", func() (metav1.Object, error) {
			return c.Kube.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "obj", Labels: managed}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return c.Kube.RbacV1().Roles(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
		{"RoleBinding", "rbac.authorization.k8s.io/v1", func() (metav1.Object, error) {
			return c.Kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "obj", Labels: managed},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "obj"}}, metav1.CreateOptions{FieldManager: "creator"})
		}, func(m string, body []byte) (metav1.Object, error) {
			return c.Kube.RbacV1().RoleBindings(ns).Patch(ctx, "obj", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: m})
		}},
	}
	for _, o := range created {
		if _, err := o.create(); err != nil {
			t.Fatalf("creating the %s: %v", o.kind, err)
		}
		var live metav1.Object
		for _, m := range bookkeepingManagers {
			notes := map[string]string{}
			for i := range 25 {
				notes[fmt.Sprintf("%s.example.com/note-%02d", m, i)] = "x"
			}
			body, err := json.Marshal(map[string]any{"apiVersion": o.apiVersion, "kind": o.kind,
				"metadata": map[string]any{"name": "obj", "namespace": ns, "annotations": notes}})
			if err != nil {
				t.Fatal(err)
			}
			if live, err = o.patch(m, body); err != nil {
				t.Fatalf("server-side apply of the %s as %s: %v", o.kind, m, err)
			}
		}
		bookkeeping, err := json.Marshal(live.GetManagedFields())
		if err != nil {
			t.Fatal(err)
		}
		if len(live.GetManagedFields()) < len(bookkeepingManagers)+1 || len(bookkeeping) < 4096 {
			t.Fatalf("the %s carries %d managedFields entries (%d bytes): not the bookkeeping this test needs", o.kind, len(live.GetManagedFields()), len(bookkeeping))
		}
		t.Logf("%s: %d managedFields entries, %d bytes of JSON on the API server", o.kind, len(live.GetManagedFields()), len(bookkeeping))
	}

	cluster, err := sidecar.NewCluster(c.Config, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { cluster.Run(runCtx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	waitFor(t, "the caches synced", func() (bool, error) { return cluster.Synced(), nil })

	caches := map[string]cache.SharedIndexInformer{
		"FeatureFlag": cluster.FeatureFlags, "FeatureFlagSource": cluster.Sources, "InProcessConfiguration": cluster.InProcess,
		"ServiceAccount": cluster.ServiceAccounts, "ConfigMap": cluster.ConfigMaps, "Role": cluster.Roles, "RoleBinding": cluster.RoleBindings,
	}
	for kind, inf := range caches {
		// the test's object reaches the cache (the watch may deliver its last apply
		// a moment after the list)
		waitFor(t, "the "+kind+" in its cache", func() (bool, error) {
			obj, ok, err := inf.GetIndexer().GetByKey(ns + "/obj")
			if err != nil || !ok {
				return false, err
			}
			m, err := meta.Accessor(obj)
			return err == nil && m.GetResourceVersion() != "", err
		})
		// no cached object of the kind, the test's or any other test's, keeps
		// managedFields
		for _, obj := range inf.GetStore().List() {
			m, err := meta.Accessor(obj)
			if err != nil {
				t.Fatalf("%s cache holds a %T", kind, obj)
			}
			if n := len(m.GetManagedFields()); n != 0 {
				t.Errorf("the %s cache holds %s/%s with %d managedFields entries", kind, m.GetNamespace(), m.GetName(), n)
			}
		}
		if n := len(inf.GetStore().List()); n == 0 {
			t.Errorf("the %s cache is empty", kind)
		}
	}
}
