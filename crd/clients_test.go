package crd_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	applymetav1 "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	applyv1beta1 "github.com/flagpole-dev/flagpole/crd/generated/applyconfiguration/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/generated/clientset/versioned/fake"
	"github.com/flagpole-dev/flagpole/crd/generated/informers/externalversions"
)

// TestGeneratedClients wires the generated clientset, informers and listers together
// on a fake clientset: what is created is listed through the informer's cache.
func TestGeneratedClients(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset()
	ff := &v1beta1.FeatureFlag{
		ObjectMeta: metav1.ObjectMeta{Name: "flags", Namespace: "shop"},
		Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
			"new-ui": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`), DefaultVariant: "off"},
		}}},
	}
	if _, err := client.CoreV1beta1().FeatureFlags("shop").Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := externalversions.NewSharedInformerFactoryWithOptions(client, time.Hour, externalversions.WithNamespace("shop"))
	informer := factory.Core().V1beta1().FeatureFlags()
	lister := informer.Lister()
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.Informer().HasSynced) {
		t.Fatal("the informer did not sync")
	}
	got, err := lister.FeatureFlags("shop").List(labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "flags" {
		t.Fatalf("lister returned %v", got)
	}
	if d := cmp.Diff(ff.Spec, got[0].Spec); d != "" {
		t.Errorf("spec through the informer (-created +listed):\n%s", d)
	}
	if _, err := lister.FeatureFlags("shop").Get("missing"); err == nil || err.Error() != `featureflag.core.openfeature.dev "missing" not found` {
		t.Errorf("Get(missing) = %v", err)
	}

	// Server-side apply of the status, then extraction of what the manager owns: the
	// apply configurations carry the CRD's schema (conditions are a map keyed by type).
	status := applyv1beta1.FeatureFlag("flags", "shop").WithStatus(applyv1beta1.FeatureFlagStatus().
		WithObservedGeneration(1).
		WithFlagCount(1).
		WithConditions(applymetav1.Condition().WithType(v1beta1.ConditionReady).WithStatus(metav1.ConditionTrue).
			WithReason("Accepted").WithMessage("1 flag").WithLastTransitionTime(metav1.Now())))
	applied, err := client.CoreV1beta1().FeatureFlags("shop").ApplyStatus(ctx, status, metav1.ApplyOptions{FieldManager: "flagpole", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	// The fake tracker records managed fields without the subresource, where an API
	// server records "status": ExtractFeatureFlagStatus is for the real thing.
	extracted, err := applyv1beta1.ExtractFeatureFlag(applied, "flagpole")
	if err != nil {
		t.Fatal(err)
	}
	if extracted.Status == nil || len(extracted.Status.Conditions) != 1 || *extracted.Status.Conditions[0].Reason != "Accepted" || *extracted.Status.FlagCount != 1 {
		t.Errorf("extracted status %+v", extracted.Status)
	}
	if extracted.Spec != nil {
		t.Errorf("the status manager owns spec fields: %+v", extracted.Spec)
	}
}

// TestApplyConfigurationShape checks that a server-side apply configuration built
// with the generated builders has the JSON shape of the manifests.
func TestApplyConfigurationShape(t *testing.T) {
	status := applyv1beta1.FeatureFlagStatus().
		WithObservedGeneration(3).
		WithFlagCount(1).
		WithConditions(applymetav1.Condition().
			WithType(v1beta1.ConditionReady).
			WithStatus(metav1.ConditionTrue).
			WithReason("Accepted").
			WithMessage("1 flag").
			WithLastTransitionTime(metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))))
	ac := applyv1beta1.FeatureFlag("flags", "shop").
		WithSpec(applyv1beta1.FeatureFlagSpec().WithFlagSpec(applyv1beta1.FlagSpec().
			WithFlags(map[string]applyv1beta1.FlagApplyConfiguration{
				"new-ui": *applyv1beta1.Flag().WithState("ENABLED").WithVariants(json.RawMessage(`{"on":true}`)),
			}))).
		WithStatus(status)
	data, err := json.Marshal(ac)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := utiljson.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"apiVersion": "core.openfeature.dev/v1beta1",
		"kind":       "FeatureFlag",
		"metadata":   map[string]any{"name": "flags", "namespace": "shop"},
		"spec": map[string]any{"flagSpec": map[string]any{"flags": map[string]any{
			"new-ui": map[string]any{"state": "ENABLED", "variants": map[string]any{"on": true}},
		}}},
		"status": map[string]any{
			"observedGeneration": int64(3),
			"flagCount":          int64(1),
			"conditions": []any{map[string]any{
				"type": "Ready", "status": "True", "reason": "Accepted", "message": "1 flag",
				"lastTransitionTime": "2026-01-02T03:04:05Z",
			}},
		},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("apply configuration (-want +got):\n%s", d)
	}
}
