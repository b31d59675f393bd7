package controller

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/sidecar"
)

const (
	flagStatusPath = "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/flags/status"
	validMessage   = "the flags compile with flagd's strict rules (flagCount 1)"
	invalidMessage = `spec.flagSpec.flags.new-ui.defaultVariant: "missing" is not one of the variants ("off", "on")`
)

// featureFlag is team/flags at generation 2 with one flag whose default variant is
// defaultVariant, and the status the controller writes for it when valid.
func featureFlag(defaultVariant string, status *v1beta1.FeatureFlagStatus) *v1beta1.FeatureFlag {
	ff := &v1beta1.FeatureFlag{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "flags", Generation: 2, ResourceVersion: "10",
			Annotations: map[string]string{sidecar.AnnotationAllowedNamespaces: "apps,other"}},
		Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
			"new-ui": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`), DefaultVariant: defaultVariant},
		}}},
	}
	if status != nil {
		ff.Status = *status
	}
	return ff
}

func flagStatus(cond metav1.Condition, generation int64) *v1beta1.FeatureFlagStatus {
	count := int32(1)
	return &v1beta1.FeatureFlagStatus{Status: v1beta1.Status{ObservedGeneration: generation, Conditions: []metav1.Condition{cond}}, FlagCount: &count}
}

var (
	validStatus   = flagStatus(readyCondition(metav1.ConditionTrue, ReasonValid, validMessage, 2), 2)
	invalidStatus = flagStatus(readyCondition(metav1.ConditionFalse, ReasonInvalid, invalidMessage, 2), 2)
)

// document is what the file-source ConfigMaps of a FeatureFlag must hold.
func document(t *testing.T, ff *v1beta1.FeatureFlag) string {
	t.Helper()
	doc, err := flagdoc.Encode(&ff.Spec.FlagSpec)
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// configMap is a file-source ConfigMap as the cache holds it (no data).
func configMap(ns, name, flag, hash, rv string, ours bool) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv,
		Annotations: map[string]string{sidecar.AnnotationFeatureFlag: flag}}}
	if hash != "" {
		cm.Annotations[sidecar.AnnotationFlagsHash] = hash
	}
	if ours {
		cm.Labels = map[string]string{sidecar.LabelManagedBy: sidecar.ManagedBy}
	}
	return cm
}

// liveConfigMap is a ConfigMap as the API server answers it.
func liveConfigMap(cm *corev1.ConfigMap, rv, data string) *corev1.ConfigMap {
	live := cm.DeepCopy()
	live.ResourceVersion = rv
	live.Data = map[string]string{"team_flags.flagd.json": data}
	return live
}

func newFeatureFlagController(t *testing.T, f *fixture) *FeatureFlag {
	t.Helper()
	renderer := &sidecar.Renderer{Config: sidecar.DefaultConfig("flagpole:test"), Objects: f.cluster}
	r, err := NewFeatureFlag(renderer, f.cluster, f.clients, f.events, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return testNow }
	return r
}

// TestFeatureFlagSync is the FeatureFlag controller's decision table: the status
// (written only when it changes) and the file-source ConfigMaps (written only when
// they do not hold the current document, never for an invalid one, never when not
// the webhook's).
func TestFeatureFlagSync(t *testing.T) {
	valid := featureFlag("off", validStatus)
	doc := document(t, valid)
	hash := sidecar.FlagsHash([]byte(doc))
	oldDoc := document(t, featureFlag("on", nil))
	cmPath := "/api/v1/namespaces/apps/configmaps/flagpole-team.flags"
	patchCM := func(rv string) action {
		return action{Verb: "PATCH", Path: cmPath, Body: asJSON(t, map[string]any{
			"metadata": map[string]any{"resourceVersion": rv, "annotations": map[string]string{sidecar.AnnotationFlagsHash: hash}},
			"data":     map[string]string{"team_flags.flagd.json": doc}})}
	}
	updated := event{Object: "team/flags", Type: "Normal", Reason: ReasonConfigMapUpdated,
		Message: "ConfigMap apps/flagpole-team.flags now holds the flags of generation 2"}
	stale := configMap("apps", "flagpole-team.flags", "team/flags", "0123", "5", true)
	unhashed := configMap("apps", "flagpole-team.flags", "team/flags", "", "5", true)

	cases := []struct {
		name       string
		flag       *v1beta1.FeatureFlag
		configMaps []*corev1.ConfigMap
		live       map[string]runtime.Object
		fail       map[string]int32
		want       []action
		wantEvents []event
	}{{
		name: "valid, never observed: Ready True, flagCount, observedGeneration",
		flag: featureFlag("off", nil),
		want: []action{{Verb: "PATCH", Path: flagStatusPath, Body: statusPatch(t, validStatus)}},
	}, {
		name:       "invalid (bypassed the webhook): Ready False with the JSON paths, Warning",
		flag:       featureFlag("missing", validStatus),
		want:       []action{{Verb: "PATCH", Path: flagStatusPath, Body: statusPatch(t, invalidStatus)}},
		wantEvents: []event{{Object: "team/flags", Type: "Warning", Reason: ReasonInvalid, Message: invalidMessage}},
	}, {
		name: "valid and unchanged: nothing written",
		flag: valid,
	}, {
		name: "invalid and unchanged: nothing written, no Event",
		flag: featureFlag("missing", invalidStatus),
	}, {
		name:       "ConfigMap with another document's hash: updated at its resourceVersion, Event",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{stale},
		want:       []action{patchCM("5")},
		wantEvents: []event{updated},
	}, {
		name:       "ConfigMap with the current hash: nothing written",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{configMap("apps", "flagpole-team.flags", "team/flags", hash, "5", true)},
	}, {
		name:       "ConfigMap created by the webhook (no hash) holding the current document: read once, not written",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{unhashed},
		live:       map[string]runtime.Object{cmPath: liveConfigMap(unhashed, "6", doc)},
		want:       []action{{Verb: "GET", Path: cmPath}},
	}, {
		name:       "ConfigMap created by the webhook holding an older document: read, updated at the read resourceVersion",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{unhashed},
		live:       map[string]runtime.Object{cmPath: liveConfigMap(unhashed, "6", oldDoc)},
		want:       []action{{Verb: "GET", Path: cmPath}, patchCM("6")},
		wantEvents: []event{updated},
	}, {
		name:       "ConfigMap that lost flagpole's label since it was cached: read, not written",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{unhashed},
		live: map[string]runtime.Object{cmPath: func() runtime.Object {
			cm := liveConfigMap(unhashed, "6", oldDoc)
			cm.Labels = nil
			return cm
		}()},
		want: []action{{Verb: "GET", Path: cmPath}},
	}, {
		name:       "ConfigMap not created by flagpole (no label): not written",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{configMap("apps", "flagpole-team.flags", "team/flags", "0123", "5", false)},
	}, {
		name:       "ConfigMap of another FeatureFlag: not written",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{configMap("apps", "flagpole-team.other", "team/other", "0123", "5", true)},
	}, {
		name: "ConfigMap in a namespace the FeatureFlag does not admit (forged label and annotation): not written",
		flag: valid,
		configMaps: []*corev1.ConfigMap{configMap("elsewhere", "flagpole-team.flags", "team/flags", "", "5", true),
			configMap("elsewhere", "copy", "team/flags", "0123", "5", true)},
	}, {
		name:       "invalid FeatureFlag: its ConfigMaps keep the last good flags",
		flag:       featureFlag("missing", invalidStatus),
		configMaps: []*corev1.ConfigMap{stale},
	}, {
		name:       "ConfigMap changed while being updated (conflict): no error, no Event (its update re-enqueues)",
		flag:       valid,
		configMaps: []*corev1.ConfigMap{stale},
		fail:       map[string]int32{"PATCH " + cmPath: http.StatusConflict},
		want:       []action{patchCM("5")},
	}, {
		name: "several ConfigMaps, own namespace and others: each written",
		flag: valid,
		configMaps: []*corev1.ConfigMap{stale, configMap("team", "flags", "team/flags", "0123", "3", true),
			configMap("other", "flagpole-team.flags", "team/flags", hash, "4", true)},
		want: []action{patchCM("5"), {Verb: "PATCH", Path: "/api/v1/namespaces/team/configmaps/flags", Body: asJSON(t, map[string]any{
			"metadata": map[string]any{"resourceVersion": "3", "annotations": map[string]string{sidecar.AnnotationFlagsHash: hash}},
			"data":     map[string]string{"team_flags.flagd.json": doc}})}},
		wantEvents: []event{updated, {Object: "team/flags", Type: "Normal", Reason: ReasonConfigMapUpdated,
			Message: "ConfigMap team/flags now holds the flags of generation 2"}},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := newFeatureFlagController(t, f)
			f.seed(f.cluster.FeatureFlags, tc.flag)
			for _, cm := range tc.configMaps {
				f.seed(f.cluster.ConfigMaps, cm)
			}
			maps.Copy(f.api.live, tc.live)
			f.api.fail = tc.fail
			if err := r.sync(context.Background(), cache.ObjectName{Namespace: "team", Name: "flags"}); err != nil {
				t.Fatalf("sync: %v", err)
			}
			f.check(tc.name, tc.want, tc.wantEvents)
		})
	}
}

// TestFeatureFlagCrossNamespaceAllow: with --cross-namespace=allow (OFO's
// behaviour) the ConfigMaps of every namespace are kept in sync.
func TestFeatureFlagCrossNamespaceAllow(t *testing.T) {
	f := newFixture(t)
	r := newFeatureFlagController(t, f)
	r.renderer.Config.CrossNamespace = sidecar.CrossNamespaceAllow
	f.seed(f.cluster.FeatureFlags, featureFlag("off", validStatus))
	f.seed(f.cluster.ConfigMaps, configMap("elsewhere", "flagpole-team.flags", "team/flags", "0123", "5", true))
	if err := r.sync(context.Background(), cache.ObjectName{Namespace: "team", Name: "flags"}); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 1 || got[0].Path != "/api/v1/namespaces/elsewhere/configmaps/flagpole-team.flags" {
		t.Errorf("requests: %v", got)
	}
	f.events.take()
}

// TestFeatureFlagRemembersItsWrites: right after an update the ConfigMap cache may
// still show the old version (the FeatureFlag's own status write brings it back
// before); the next sync writes nothing.
func TestFeatureFlagRemembersItsWrites(t *testing.T) {
	f := newFixture(t)
	r := newFeatureFlagController(t, f)
	f.seed(f.cluster.FeatureFlags, featureFlag("off", validStatus))
	f.seed(f.cluster.ConfigMaps, configMap("apps", "flagpole-team.flags", "team/flags", "0123", "5", true))
	key := cache.ObjectName{Namespace: "team", Name: "flags"}
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if got := len(f.api.take()); got != 1 {
		t.Fatalf("first sync: %d requests, want 1 (the update)", got)
	}
	f.events.take()
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	f.check("second sync, stale cache", nil, nil)
}

// TestFeatureFlagWatchesItsConfigMaps: the handlers enqueue the FeatureFlag a
// ConfigMap holds (by its annotation, qualified or not), and the cache keeps the
// annotations but not the data.
func TestFeatureFlagWatchesItsConfigMaps(t *testing.T) {
	f := newFixture(t)
	r := newFeatureFlagController(t, f)
	for _, cm := range []*corev1.ConfigMap{
		configMap("apps", "a", "team/flags", "", "1", true),
		configMap("team", "flags", "flags", "", "1", true),
		configMap("apps", "b", "team/flags", "", "1", false), // not flagpole's
	} {
		r.enqueueFlagOf(cm)
	}
	if r.Len() != 1 {
		t.Errorf("%d keys queued, want 1 (team/flags)", r.Len())
	}
	in := configMap("apps", "a", "team/flags", "0123", "1", true)
	in.Data = map[string]string{"k": strings.Repeat("x", 100)}
	in.Annotations["other"] = "dropped"
	out, err := sidecar.KeepFileConfigMap(in)
	if err != nil {
		t.Fatal(err)
	}
	cm := out.(*corev1.ConfigMap)
	if cm.Data != nil || len(cm.Annotations) != 2 || cm.Labels[sidecar.LabelManagedBy] != sidecar.ManagedBy {
		t.Errorf("cached ConfigMap: %+v", cm)
	}
}

func TestBoundedList(t *testing.T) {
	cases := []struct {
		items          []string
		maxItems, size int
		want           string
	}{
		{[]string{"a", "b"}, 0, 100, "a; b"},
		{[]string{"aaaa", "bbbb", "cccc"}, 0, 24, "aaaa; ... and 2 more"},
		{[]string{"aaaa", "bbbb", "cccc"}, 2, 100, "aaaa; bbbb; ... and 1 more"},
		{[]string{strings.Repeat("é", 10), "b"}, 0, 21, "é...; ... and 1 more"},
		{[]string{strings.Repeat("é", 10), "b"}, 0, 20, "...; ... and 1 more"},
	}
	for _, tc := range cases {
		got := boundedList(tc.items, tc.maxItems, tc.size)
		if got != tc.want || len(got) > tc.size {
			t.Errorf("boundedList(%q, %d, %d) = %q, want %q", tc.items, tc.maxItems, tc.size, got, tc.want)
		}
	}
}
