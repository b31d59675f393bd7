package controller

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/sidecar"
)

const sourceStatusPath = "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflagsources/flags/status"

// source is FeatureFlagSource team/flags at generation, with status.observedGeneration
// observed (0: never), rolloutOnChange, and sources; pods of namespaces apps and
// apps2 may use it.
func source(generation, observed int64, rollout bool, sources ...v1beta1.Source) *v1beta1.FeatureFlagSource {
	ffs := &v1beta1.FeatureFlagSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "flags", Generation: generation, ResourceVersion: "20",
			Annotations: map[string]string{sidecar.AnnotationAllowedNamespaces: "apps, apps2"}},
		Spec: v1beta1.FeatureFlagSourceSpec{Sources: sources, RolloutOnChange: &rollout, Port: 8013, ManagementPort: 8014, OfrepPort: 8016},
	}
	if observed > 0 {
		ffs.Status.ObservedGeneration = observed
		ffs.Status.Conditions = []metav1.Condition{readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", observed)}
	}
	return ffs
}

// k8sSource names FeatureFlag team/my-flag, which pods of apps (not apps2) may read.
var k8sSource = v1beta1.Source{Source: "team/my-flag", Provider: "kubernetes"}

func sourceStatus(observed int64, cond metav1.Condition) v1beta1.FeatureFlagSourceStatus {
	return v1beta1.FeatureFlagSourceStatus{Status: v1beta1.Status{ObservedGeneration: observed, Conditions: []metav1.Condition{cond}}}
}

// workload is a Deployment, StatefulSet or DaemonSet as the slim cache holds it.
func workload(kind, ns, name, enabled, sources string) runtime.Object {
	om := metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: "1"}
	t := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{AnnotationEnabled: enabled, AnnotationFeatureFlagSource: sources}}}
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{ObjectMeta: om, Spec: appsv1.StatefulSetSpec{Template: t}}
	case "DaemonSet":
		return &appsv1.DaemonSet{ObjectMeta: om, Spec: appsv1.DaemonSetSpec{Template: t}}
	}
	return &appsv1.Deployment{ObjectMeta: om, Spec: appsv1.DeploymentSpec{Template: t}}
}

// workloads reference team/flags in every way, and some do not.
var workloads = []runtime.Object{
	workload("Deployment", "team", "web", "true", "flags"),                // bare name, same namespace: restarted
	workload("StatefulSet", "team", "db", "true", "other, team/flags"),    // in a list, qualified: restarted
	workload("DaemonSet", "apps", "agent", "true", "team/flags"),          // another namespace the FeatureFlagSource and flag admit: restarted
	workload("Deployment", "apps", "web", "true", "flags"),                // bare name: apps/flags, not this one
	workload("Deployment", "team", "other", "true", "other"),              // another FeatureFlagSource
	workload("Deployment", "team", "off", "false", "flags"),               // not injected
	workload("Deployment", "denied", "x", "true", "team/flags"),           // a namespace the FeatureFlagSource does not admit: refused by the webhook
	workload("Deployment", "apps2", "y", "true", "team/flags"),            // admitted, but team/my-flag is not readable from apps2
	workload("StatefulSet", "team", "broken", "true", "Not A Valid/List"), // unparsable: refused by the webhook
}

func restartAction(t *testing.T, resource, ns, name string) action {
	t.Helper()
	return action{Verb: "PATCH", Path: "/apis/apps/v1/namespaces/" + ns + "/" + resource + "/" + name, Body: asJSON(t, map[string]any{
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{"annotations": map[string]string{
			AnnotationRestartedAt: "2025-01-02T03:04:05Z"}}}}})}
}

func rolledOut(id string) event {
	return event{Object: "team/flags", Type: "Normal", Reason: ReasonRolledOut, Message: "restarted " + id + " for generation 3"}
}

var skippedApps2 = event{Object: "team/flags", Type: "Warning", Reason: ReasonRolloutSkipped,
	Message: "Deployment apps2/y not restarted for generation 3: FeatureFlagSource team/flags spec.sources[0]: FeatureFlag team/my-flag is in another namespace than the pod (apps2): " +
		`cross-namespace references are refused unless the FeatureFlag lists "apps2" in its flagpole.dev/allowed-namespaces annotation (or the operator runs with --cross-namespace=allow)`}

func newSourceController(t *testing.T, f *fixture) *FeatureFlagSource {
	t.Helper()
	renderer := &sidecar.Renderer{Config: sidecar.DefaultConfig("flagpole:test"), Objects: f.cluster}
	r, err := NewFeatureFlagSource(renderer, f.cluster, f.clients, f.events, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return testNow }
	f.seed(f.cluster.FeatureFlags, &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "my-flag",
		Annotations: map[string]string{sidecar.AnnotationAllowedNamespaces: "apps"}}})
	for _, w := range workloads {
		for _, k := range r.workloads {
			if sameKind(k.kind, w) {
				f.seed(k.informer, w)
			}
		}
	}
	return r
}

func sameKind(kind string, obj runtime.Object) bool {
	switch obj.(type) {
	case *appsv1.Deployment:
		return kind == "Deployment"
	case *appsv1.StatefulSet:
		return kind == "StatefulSet"
	case *appsv1.DaemonSet:
		return kind == "DaemonSet"
	}
	return false
}

// TestFeatureFlagSourceSync is the FeatureFlagSource controller's decision table:
// status and rollouts.
func TestFeatureFlagSourceSync(t *testing.T) {
	resolved := readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", 3)
	missing := v1beta1.Source{Source: "missing", Provider: "kubernetes"}
	missingMessage := "FeatureFlagSource team/flags spec.sources[1]: FeatureFlag team/missing not found"
	getMissing := action{Verb: "GET", Path: "/apis/core.openfeature.dev/v1beta1/namespaces/team/featureflags/missing"}
	allRestarted := []action{restartAction(t, "deployments", "team", "web"), restartAction(t, "statefulsets", "team", "db"),
		restartAction(t, "daemonsets", "apps", "agent"),
		{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3, resolved))}}
	allEvents := []event{skippedApps2, rolledOut("Deployment team/web"), rolledOut("StatefulSet team/db"), rolledOut("DaemonSet apps/agent")}

	cases := []struct {
		name       string
		source     *v1beta1.FeatureFlagSource
		fail       map[string]int32
		want       []action
		wantEvents []event
		wantErr    bool
	}{{
		name:   "first sight with rolloutOnChange: generation recorded, nothing restarted",
		source: source(3, 0, true, k8sSource),
		want:   []action{{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3, resolved))}},
	}, {
		name:       "spec changed with rolloutOnChange: every workload that uses it restarted, in any namespace that may, once",
		source:     source(3, 2, true, k8sSource),
		want:       allRestarted,
		wantEvents: allEvents,
	}, {
		name: "resync, operator restart (generation observed): nothing written",
		source: func() *v1beta1.FeatureFlagSource {
			s := source(3, 3, true, k8sSource)
			s.Status = sourceStatus(3, resolved)
			return s
		}(),
	}, {
		name:   "spec changed without rolloutOnChange: status only",
		source: source(3, 2, false, k8sSource),
		want:   []action{{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3, resolved))}},
	}, {
		name:   "spec changed but a source does not resolve: rollout held, observedGeneration kept, Ready False",
		source: source(3, 2, true, k8sSource, missing),
		want: []action{getMissing, {Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(2, readyCondition(metav1.ConditionFalse, ReasonUnresolved,
			missingMessage+" (rolloutOnChange: the restart for generation 3 waits until every source resolves)", 3)))}},
		wantEvents: []event{{Object: "team/flags", Type: "Warning", Reason: ReasonUnresolved,
			Message: missingMessage + " (rolloutOnChange: the restart for generation 3 waits until every source resolves)"}},
	}, {
		name:   "a source does not resolve, no rollout pending: Ready False, generation recorded",
		source: source(3, 0, true, k8sSource, missing),
		want: []action{getMissing, {Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3,
			readyCondition(metav1.ConditionFalse, ReasonUnresolved, missingMessage, 3)))}},
		wantEvents: []event{{Object: "team/flags", Type: "Warning", Reason: ReasonUnresolved, Message: missingMessage}},
	}, {
		name:       "a restart fails: retried (error), status not recorded",
		source:     source(3, 2, true, k8sSource),
		fail:       map[string]int32{"PATCH /apis/apps/v1/namespaces/team/statefulsets/db": http.StatusInternalServerError},
		want:       allRestarted[:3],
		wantErr:    true,
		wantEvents: []event{skippedApps2, rolledOut("Deployment team/web"), rolledOut("DaemonSet apps/agent")},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			r := newSourceController(t, f)
			f.seed(f.cluster.Sources, tc.source)
			f.api.fail = tc.fail
			err := r.sync(context.Background(), cache.ObjectName{Namespace: "team", Name: "flags"})
			if (err != nil) != tc.wantErr {
				t.Fatalf("sync: error %v, want one: %v", err, tc.wantErr)
			}
			f.check(tc.name, tc.want, tc.wantEvents)
		})
	}
}

// TestFeatureFlagSourceRetryRestartsOnlyTheRest: after a partial failure the retry
// restarts only the workloads that were not restarted yet, then records the
// generation; a sync on a cache that does not show that status yet restarts nothing.
func TestFeatureFlagSourceRetryRestartsOnlyTheRest(t *testing.T) {
	f := newFixture(t)
	r := newSourceController(t, f)
	ffs := source(3, 2, true, k8sSource)
	f.seed(f.cluster.Sources, ffs)
	key := cache.ObjectName{Namespace: "team", Name: "flags"}
	f.api.fail = map[string]int32{"PATCH /apis/apps/v1/namespaces/team/statefulsets/db": http.StatusInternalServerError}
	if err := r.sync(context.Background(), key); err == nil {
		t.Fatal("a failed restart was not retried")
	}
	f.api.take()
	f.events.take()
	f.api.fail = nil
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	resolved := readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", 3)
	f.check("retry", []action{restartAction(t, "statefulsets", "team", "db"),
		{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3, resolved))}},
		[]event{rolledOut("StatefulSet team/db")})
	// the cache still shows observedGeneration 2
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	f.check("stale cache", []action{{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t, sourceStatus(3, resolved))}}, nil)
}

// TestFeatureFlagSourceRolloutOnChangeAloneRestartsNothing: turning rolloutOnChange
// on changes the generation but not what the sidecars run; with the previous spec
// seen, nothing is restarted. A later real change is rolled out.
func TestFeatureFlagSourceRolloutOnChangeAloneRestartsNothing(t *testing.T) {
	f := newFixture(t)
	r := newSourceController(t, f)
	key := cache.ObjectName{Namespace: "team", Name: "flags"}
	before := source(2, 2, false, k8sSource)
	before.Status = sourceStatus(2, readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", 2))
	f.seed(f.cluster.Sources, before)
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	f.check("steady", nil, nil)

	after := before.DeepCopy()
	after.Generation = 3
	after.Spec.RolloutOnChange = new(true)
	f.seed(f.cluster.Sources, after)
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	f.check("rolloutOnChange turned on", []action{{Verb: "PATCH", Path: sourceStatusPath, Body: statusPatch(t,
		sourceStatus(3, readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", 3)))}}, nil)

	changed := after.DeepCopy()
	changed.Generation = 4
	changed.Status = sourceStatus(3, readyCondition(metav1.ConditionTrue, ReasonResolved, "every source resolves (1)", 3))
	changed.Spec.Port = 9000
	f.seed(f.cluster.Sources, changed)
	if err := r.sync(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if got := f.api.take(); len(got) != 4 {
		t.Errorf("port changed: %d requests, want 3 restarts and the status: %v", len(got), got)
	}
	f.events.take()
}

// TestFeatureFlagSourceConditions: Ready False lists the first problems of every
// kind of unresolvable source, bounded (a flagd-proxy source of an existing
// FeatureFlag resolves; the proxy's readiness is not a problem of the source).
func TestFeatureFlagSourceConditions(t *testing.T) {
	f := newFixture(t)
	r := newSourceController(t, f)
	f.seed(f.cluster.FeatureFlags, &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "private"}})
	ffs := source(1, 0, false,
		v1beta1.Source{Source: "team/my-flag", Provider: "flagd-proxy"},
		v1beta1.Source{Source: "gs://bucket/flags.json", Provider: "gcs"},
		v1beta1.Source{Source: "not a url", Provider: "http"},
		v1beta1.Source{Source: "flags.example", Provider: "grpc"},
		v1beta1.Source{Source: "elsewhere/private", Provider: "file"},
		v1beta1.Source{Source: "https://flags.example/flags.json", Provider: "http"},
		v1beta1.Source{Source: "flags.example:8015", Provider: "grpc"},
		v1beta1.Source{Source: "my-flag"}, // the operator's default provider: kubernetes
		v1beta1.Source{Source: "x", Provider: "unknown"},
		v1beta1.Source{Source: "elsewhere/private", Provider: "flagd-proxy"},
	)
	f.seed(f.cluster.Sources, ffs)
	if err := r.sync(context.Background(), cache.ObjectName{Namespace: "team", Name: "flags"}); err != nil {
		t.Fatal(err)
	}
	got := f.api.take()
	if len(got) != 1 || got[0].Path != sourceStatusPath {
		t.Fatalf("requests: %v", got)
	}
	cond := got[0].Body.(map[string]any)["status"].(map[string]any)["conditions"].([]any)[0].(map[string]any)
	want := "FeatureFlagSource team/flags spec.sources[1]: provider gcs (cloud blob storage) is not implemented by flagpole's sidecar; serve the flags over http(s) or from a FeatureFlag; " +
		`FeatureFlagSource team/flags spec.sources[2]: source "not a url" is not an http(s) URL; ` +
		`FeatureFlagSource team/flags spec.sources[3]: uri: want host:port, got "flags.example"; ` +
		"FeatureFlagSource team/flags spec.sources[4]: FeatureFlag elsewhere/private is in another namespace than the pod (team)"
	if cond["status"] != "False" || cond["reason"] != ReasonUnresolved || len(cond["message"].(string)) < len(want) || cond["message"].(string)[:len(want)] != want {
		t.Errorf("condition %v\nwant message starting %q", cond, want)
	}
	if msg := cond["message"].(string); !endsWith(msg, "; ... and 1 more") || len(msg) > maxConditionMessage {
		t.Errorf("message does not end with the count of the problems left out: %q", msg)
	}
}

func endsWith(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

// TestStripWorkload: the workload caches keep identity and the two OpenFeature
// annotations of the pod template only.
func TestStripWorkload(t *testing.T) {
	in := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", ResourceVersion: "7", Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"x": "y"}},
		Spec: appsv1.DeploymentSpec{Replicas: new(int32(3)), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}, Annotations: map[string]string{AnnotationEnabled: "true", AnnotationFeatureFlagSource: "flags", "other": "z"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}},
	}
	out, err := stripWorkload(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "web", ResourceVersion: "7"},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{
			Annotations: map[string]string{AnnotationEnabled: "true", AnnotationFeatureFlagSource: "flags"}}}}}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("stripped (-want +got):\n%s", diff)
	}
}
