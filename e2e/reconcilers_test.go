package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// startControllers runs `flagpole controller` for a test: one replica, grants
// removed one second after what they depend on is gone.
func startControllers(t *testing.T, e *webhookEnv) {
	t.Helper()
	suite.StartOperator(t, e.c, suite.TempDir(t), "controller", "--sidecar-image", sidecarImage, "--leader-elect=false", "--grant-grace=1s")
}

// events lists the reasons and messages of the Events on an object.
func (e *webhookEnv) events(t *testing.T, kind, name string) []string {
	t.Helper()
	list, err := e.c.Kube.CoreV1().Events(e.ns).List(t.Context(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		out = append(out, ev.Reason+": "+ev.Message)
	}
	return out
}

// TestFeatureFlagReconciled: a FeatureFlag gets a status; the ConfigMap the webhook
// created for a file source follows an edit of the FeatureFlag (the document the
// webhook would write, its hash annotated), with an Event; an invalid FeatureFlag
// stored without the validating webhook gets an Invalid status and its ConfigMap
// keeps the last good flags.
func TestFeatureFlagReconciled(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	startControllers(t, e)
	e.source(t, "files", v1beta1.Source{Source: "checkout", Provider: "file"})
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-file", rpc("files")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	flags := e.c.Flags.CoreV1beta1().FeatureFlags(e.ns)
	waitFor(t, "FeatureFlag status", func() (bool, error) {
		ff, err := flags.Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(ff.Status.Conditions, v1beta1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == "Valid" && ff.Status.FlagCount != nil && *ff.Status.FlagCount == 2 &&
			ff.Status.ObservedGeneration == ff.Generation, nil
	})

	key := e.ns + "_checkout.flagd.json"
	color := func() (string, string, error) {
		cm, err := e.c.Kube.CoreV1().ConfigMaps(e.ns).Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return "", "", err
		}
		var doc struct {
			Flags map[string]struct {
				Variants map[string]any `json:"variants"`
			} `json:"flags"`
		}
		if err := json.Unmarshal([]byte(cm.Data[key]), &doc); err != nil {
			return "", "", err
		}
		c, _ := doc.Flags["color"].Variants["current"].(string)
		return c, cm.Annotations[sidecar.AnnotationFlagsHash], nil
	}
	if c, _, err := color(); err != nil || c != "checkout" {
		t.Fatalf("the webhook's ConfigMap: color %q, %v", c, err)
	}

	// An edit reaches the ConfigMap.
	patch := []byte(`{"spec":{"flagSpec":{"flags":{"color":{"state":"ENABLED","variants":{"current":"teal","other":"x"},"defaultVariant":"current"}}}}}`)
	if _, err := flags.Patch(ctx, "checkout", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ConfigMap following the FeatureFlag", func() (bool, error) {
		c, hash, err := color()
		return c == "teal" && len(hash) == 32, err
	})
	waitFor(t, "the ConfigMapUpdated Event", func() (bool, error) {
		return strings.Contains(strings.Join(e.events(t, "FeatureFlag", "checkout"), "\n"), "ConfigMapUpdated: ConfigMap "+e.ns+"/checkout"), nil
	})

	// An invalid document (no validating webhook registered for FeatureFlags here):
	// the status says why, the ConfigMap keeps the last good flags.
	bad := []byte(`{"spec":{"flagSpec":{"flags":{"color":{"state":"ENABLED","variants":{"current":"navy"},"defaultVariant":"missing"}}}}}`)
	if _, err := flags.Patch(ctx, "checkout", types.MergePatchType, bad, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Invalid status", func() (bool, error) {
		ff, err := flags.Get(ctx, "checkout", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(ff.Status.Conditions, v1beta1.ConditionReady)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == "Invalid" && strings.Contains(c.Message, "flags.color") &&
			strings.Contains(c.Message, "missing"), nil
	})
	if c, _, err := color(); err != nil || c != "teal" {
		t.Errorf("after an invalid edit the ConfigMap holds color %q (%v), want the last good teal", c, err)
	}
}

// TestFeatureFlagSourceRollout: with rolloutOnChange, a FeatureFlagSource's first
// sight restarts nothing, a spec change restarts (kubectl rollout restart's
// annotation) exactly the annotated workloads using it, with an Event and the
// generation recorded; an unrelated workload is left alone.
func TestFeatureFlagSourceRollout(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	startControllers(t, e)
	yes := true
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "rolling"}, Spec: v1beta1.FeatureFlagSourceSpec{
		RolloutOnChange: &yes, Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	sources := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns)
	if _, err := sources.Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deployment := func(name string, annotations map[string]string) {
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}}}
		if _, err := e.c.Kube.AppsV1().Deployments(e.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deployment("uses", rpc("rolling"))
	deployment("other", rpc("elsewhere"))
	restarted := func(name string) string {
		d, err := e.c.Kube.AppsV1().Deployments(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"]
	}
	generation := func(want int64) func() (bool, error) {
		return func() (bool, error) {
			got, err := sources.Get(ctx, "rolling", metav1.GetOptions{})
			return err == nil && got.Status.ObservedGeneration == want, err
		}
	}
	waitFor(t, "the first sight recorded", generation(1))
	if at := restarted("uses"); at != "" {
		t.Errorf("first sight restarted the Deployment (restartedAt %s)", at)
	}

	patch := []byte(`{"spec":{"sources":[{"source":"checkout","provider":"kubernetes"},{"source":"search","provider":"kubernetes"}]}}`)
	if _, err := sources.Patch(ctx, "rolling", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the change acted on", generation(2))
	at := restarted("uses")
	if _, err := time.Parse(time.RFC3339, at); err != nil {
		t.Errorf("the Deployment using the source: restartedAt %q (%v)", at, err)
	}
	if other := restarted("other"); other != "" {
		t.Errorf("a Deployment using another source was restarted (%s)", other)
	}
	want := []string{"RolledOut: restarted Deployment " + e.ns + "/uses for generation 2"}
	var got []string
	for _, ev := range e.events(t, "FeatureFlagSource", "rolling") {
		if strings.HasPrefix(ev, "RolledOut") {
			got = append(got, ev)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RolledOut Events (-want +got):\n%s", diff)
	}
}

// TestGrantsRemoved: the grant the webhook made is narrowed when one of its
// FeatureFlags is deleted, and removed with its RoleBinding when the
// ServiceAccount is; a GrantRemoved Event says so.
func TestGrantsRemoved(t *testing.T) {
	e := startWebhook(t)
	ctx := t.Context()
	startControllers(t, e)
	e.source(t, "both", v1beta1.Source{Source: "checkout", Provider: "kubernetes"}, v1beta1.Source{Source: "search", Provider: "kubernetes"})
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("web-both", rpc("both")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	grant := sidecar.GrantName(sidecar.Ref{Namespace: e.ns, Name: "web"})
	roles, bindings := e.c.Kube.RbacV1().Roles(e.ns), e.c.Kube.RbacV1().RoleBindings(e.ns)
	names := func() ([]string, error) {
		role, err := roles.Get(ctx, grant, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return role.Rules[0].ResourceNames, nil
	}
	if got, err := names(); err != nil || !cmp.Equal(got, []string{"checkout", "search"}) {
		t.Fatalf("the webhook's grant lists %v (%v)", got, err)
	}

	if err := e.c.Flags.CoreV1beta1().FeatureFlags(e.ns).Delete(ctx, "search", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grant narrowed", func() (bool, error) {
		got, err := names()
		return cmp.Equal(got, []string{"checkout"}), err
	})

	if err := e.c.Kube.CoreV1().ServiceAccounts(e.ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grant removed", func() (bool, error) {
		_, errRole := roles.Get(ctx, grant, metav1.GetOptions{})
		_, errBinding := bindings.Get(ctx, grant, metav1.GetOptions{})
		return apierrors.IsNotFound(errRole) && apierrors.IsNotFound(errBinding), nil
	})
	waitFor(t, "the GrantRemoved Event", func() (bool, error) {
		return strings.Contains(strings.Join(e.events(t, "Role", grant), "\n"), "GrantRemoved"), nil
	})
}
