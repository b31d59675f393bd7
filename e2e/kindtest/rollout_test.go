package kindtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// TestRolloutOnChange: changing a FeatureFlagSource with rolloutOnChange restarts the
// annotated Deployment's pods once; the new pod's sidecar has the new setting.
func TestRolloutOnChange(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ctx := t.Context()
	ns := e.namespace(t, "rollout")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, func(s *v1beta1.FeatureFlagSourceSpec) { s.RolloutOnChange = new(true) }, flagsSource())
	first := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.waitValue(t, ns, first.Name, "red", valueTimeout)
	replicaSets := func() int {
		rs, err := e.Cluster.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=app"})
		if err != nil {
			t.Fatal(err)
		}
		return len(rs.Items)
	}
	if n := replicaSets(); n != 1 {
		t.Fatalf("%d ReplicaSets before the change, want 1", n)
	}

	ffs := e.Cluster.Flags.CoreV1beta1().FeatureFlagSources(ns)
	src, err := ffs.Get(ctx, "source", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src.Spec.EnvVars = append(src.Spec.EnvVars, corev1.EnvVar{Name: "E2E_ROLLOUT", Value: "1"})
	start := time.Now()
	if _, err := ffs.Update(ctx, src, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	second := e.readyPod(t, ns, "app", first.Name)
	took := time.Since(start)
	hasEnv := false
	for _, v := range e.sidecar(t, second).Env {
		hasEnv = hasEnv || (v.Name == "FLAGD_E2E_ROLLOUT" && v.Value == "1")
	}
	if !hasEnv {
		t.Fatalf("the new pod's sidecar lacks FLAGD_E2E_ROLLOUT=1: %+v", e.sidecar(t, second).Env)
	}
	e.waitValue(t, ns, second.Name, "red", valueTimeout)
	// Once: no further restart follows (the controller acts on a generation once).
	time.Sleep(15 * time.Second)
	if n := replicaSets(); n != 2 {
		t.Fatalf("%d ReplicaSets after one change, want 2 (one rollout)", n)
	}
	pods, err := e.Cluster.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=app"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Name != second.Name && p.DeletionTimestamp == nil {
			t.Fatalf("another pod %s after the rollout: %s", p.Name, describePods(pods.Items))
		}
	}
	t.Logf("FIGURE rolloutOnChange: FeatureFlagSource update → new pod Ready %s", took.Round(time.Millisecond))
}

// TestUpgrade: the operator installed with another tag of the image (standing in for
// the previous release), an app injected by it, then the install applied with the
// image under test: the app keeps serving its flag through the operator's rollout,
// and pods created afterwards get the new sidecar.
func TestUpgrade(t *testing.T) {
	e := kind(t)
	ctx := t.Context()
	previous := e.Image + "-previous"
	if _, err := e.nodeExec(ctx, "ctr", "--namespace", "k8s.io", "images", "tag", "--force", e.Image, previous); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The next tests need the install of the image under test, admitting.
		if _, err := run(context.Background(), e.Install, e.Kubeconfig, e.Image); err != nil {
			t.Errorf("re-installing the image under test: %v", err)
		}
		if err := e.waitAdmissions(); err != nil {
			t.Error(err)
		}
	})
	if out, err := run(ctx, e.Install, e.Kubeconfig, previous); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("installed %s:\n%s", previous, out)
	}
	e.waitOperatorAvailable(t)
	if img := e.operator(t).Spec.Template.Spec.Containers[0].Image; img != previous {
		t.Fatalf("the operator runs %q after installing %q", img, previous)
	}

	if err := e.waitAdmissions(); err != nil {
		t.Fatal(err)
	}
	ns := e.namespace(t, "upgrade")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	waitFor(t, "admissions by the previous operator", podTimeout, func() (bool, error) {
		err := e.tryInjectedPod(ctx, ns)
		return err == nil, err
	})
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	if img := e.sidecarImage(t, pod); img != previous {
		t.Fatalf("sidecar image %q, want the previous %q", img, previous)
	}
	before := e.waitValue(t, ns, pod.Name, "red", valueTimeout)

	// Poll the app through the upgrade.
	pollCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var polls, bad int
	var lastBad string
	wg.Go(func() {
		for pollCtx.Err() == nil {
			s, err := e.status(pollCtx, ns, pod.Name)
			mu.Lock()
			polls++
			if err == nil && (s.ErrorCode != "" || s.String() != "red") {
				bad++
				lastBad = fmt.Sprintf("value %s error %s %s", s.Value, s.ErrorCode, s.ErrorMessage)
			}
			mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	})
	start := time.Now()
	if _, err := run(ctx, e.Install, e.Kubeconfig, e.Image); err != nil {
		stop()
		wg.Wait()
		t.Fatal(err)
	}
	e.waitOperatorAvailable(t)
	rollout := time.Since(start)
	stop()
	wg.Wait()
	after, err := e.status(ctx, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}
	if bad > 0 || after.Errors != before.Errors {
		t.Fatalf("the app did not keep serving during the upgrade: %d of %d polls bad (%s), %d evaluation errors", bad, polls, lastBad, after.Errors-before.Errors)
	}
	if img := e.operator(t).Spec.Template.Spec.Containers[0].Image; img != e.Image {
		t.Fatalf("the operator runs %q after the upgrade, want %q", img, e.Image)
	}
	waitFor(t, "admissions by the upgraded operator", podTimeout, func() (bool, error) {
		err := e.tryInjectedPod(ctx, ns)
		return err == nil, err
	})
	fresh := e.deployApp(t, ns, "after", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.checkSidecarRunning(t, fresh)
	e.waitValue(t, ns, fresh.Name, "red", valueTimeout)
	t.Logf("FIGURE upgrade: operator rollout %s; the app answered %d polls during it, none wrong (%d evaluations, no error)",
		rollout.Round(time.Millisecond), polls, after.Evaluations-before.Evaluations)
}

// sidecarImage is the image of pod's flagd sidecar.
func (e *env) sidecarImage(t testing.TB, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name == sidecarName {
			return c.Image
		}
	}
	t.Fatalf("pod %s has no %s sidecar", pod.Name, sidecarName)
	return ""
}
