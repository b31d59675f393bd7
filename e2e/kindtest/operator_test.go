package kindtest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// operator returns the operator's Deployment.
func (e *env) operator(t testing.TB) *appsv1.Deployment {
	t.Helper()
	d, err := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace).Get(t.Context(), e.OperatorDeployment, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the operator Deployment %s/%s: %v", e.OperatorNamespace, e.OperatorDeployment, err)
	}
	return d
}

// operatorFlag returns the value of the operator's command-line flag name (--name=v
// or --name v in its first container's args), or def.
func (e *env) operatorFlag(t testing.TB, name, def string) string {
	t.Helper()
	d := e.operator(t)
	args := d.Spec.Template.Spec.Containers[0].Args
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return def
}

// waitOperatorAvailable waits until the operator's Deployment has rolled out its
// current generation and every replica is available.
func (e *env) waitOperatorAvailable(t testing.TB) {
	t.Helper()
	waitFor(t, "the operator to be available", podTimeout, func() (bool, error) {
		d, err := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace).Get(t.Context(), e.OperatorDeployment, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		want := ptr.Deref(d.Spec.Replicas, 1)
		s := d.Status
		done := s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want
		return done, fmt.Errorf("generation %d observed %d, replicas %d updated %d available %d, want %d", d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, want)
	})
	// The webhook answers once its Service has a ready endpoint; admissions may
	// still fail for the moment the endpoints take to follow.
}

// scaleOperator sets the operator's replicas and waits until that many pods run (0:
// until none is left).
func (e *env) scaleOperator(t testing.TB, replicas int32) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace).Patch(t.Context(), e.OperatorDeployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling the operator to %d: %v", replicas, err)
	}
	if replicas > 0 {
		e.waitOperatorAvailable(t)
		return
	}
	sel := e.operator(t).Spec.Selector
	waitFor(t, "the operator's pods to be gone", podTimeout, func() (bool, error) {
		pods, err := e.Cluster.Kube.CoreV1().Pods(e.OperatorNamespace).List(t.Context(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(sel)})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0, fmt.Errorf("pods: %s", describePods(pods.Items))
	})
}

// admissionProbe creates a FeatureFlag in the default namespace as a dry run: it
// goes through the operator's validating webhook (failurePolicy Fail) and stores
// nothing. nil means the webhook answered and admitted it.
func (e *env) admissionProbe(ctx context.Context) error {
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-probe-"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: colorFlags("probe")}}
	_, err := e.Cluster.Flags.CoreV1beta1().FeatureFlags("default").Create(ctx, ff, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	return err
}

// waitAdmissions waits until the operator's webhook admits again (after an install,
// a scale or a restart of the operator, its Service may route to no ready pod for a
// moment), within podTimeout, without the test's context (cleanups use it too).
func (e *env) waitAdmissions() error {
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	for {
		err := e.admissionProbe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the operator's webhook does not admit within %s: %w", podTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// restoreOperator sets the operator's replicas back and waits until they are
// available, for a test's cleanup (whose t.Context() is already canceled).
func (e *env) restoreOperator(replicas int32) error {
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	deployments := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace)
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := deployments.Patch(ctx, e.OperatorDeployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("restoring the operator's %d replicas: %w", replicas, err)
	}
	for {
		d, err := deployments.Get(ctx, e.OperatorDeployment, metav1.GetOptions{})
		if err == nil && d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == replicas && d.Status.Replicas == replicas {
			return e.waitAdmissions()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the operator's %d replicas not available again within %s (last: %w)", replicas, podTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tryInjectedPod creates an annotated Deployment's pod directly — a Pod owned by a
// ConfigMap, since the webhook refuses orphaned pods — and reports whether the API
// server admitted it; the pod is deleted again. A denial returns the error.
func (e *env) tryInjectedPod(ctx context.Context, ns string) error {
	owner, err := e.Cluster.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "owner-"}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the owner ConfigMap: %w", err)
	}
	defer e.Cluster.Kube.CoreV1().ConfigMaps(ns).Delete(context.Background(), owner.Name, metav1.DeleteOptions{}) //nolint:errcheck // best effort
	d := e.appDeployment("probe", appOptions{Annotations: injected()})
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Annotations: d.Spec.Template.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}}},
		Spec: d.Spec.Template.Spec,
	}
	created, err := e.Cluster.Kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return err
	}
	for _, c := range created.Spec.InitContainers {
		if c.Name == sidecarName {
			return nil
		}
	}
	return fmt.Errorf("admitted without the %s sidecar", sidecarName)
}

// TestOperatorDown: with the operator stopped, a pod asking for injection is refused
// (the webhook's failurePolicy is Fail: no pod starts without its flags), a pod of
// another namespace that asks for nothing is admitted, and running apps keep their
// flags, evaluating without an error. Once the operator is back, admissions work
// again and updates flow.
func TestOperatorDown(t *testing.T) {
	e := kind(t)
	ctx := t.Context()
	ns := e.namespace(t, "opdown")
	other := e.namespace(t, "opdown-other")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.waitValue(t, ns, pod.Name, "red", valueTimeout)
	if err := e.tryInjectedPod(ctx, ns); err != nil {
		t.Fatalf("before stopping the operator: %v", err)
	}

	replicas := ptr.Deref(e.operator(t).Spec.Replicas, 1)
	t.Cleanup(func() {
		// Whatever happened, the operator runs again for the next tests.
		if err := e.restoreOperator(replicas); err != nil {
			t.Error(err)
		}
	})
	e.scaleOperator(t, 0)
	before, err := e.status(ctx, ns, pod.Name)
	if err != nil {
		t.Fatal(err)
	}

	err = e.tryInjectedPod(ctx, ns)
	if err == nil {
		t.Fatal("a pod asking for injection was admitted while the operator is down")
	}
	if !strings.Contains(err.Error(), "webhook") {
		t.Fatalf("refused, but not by the webhook call: %v", err)
	}
	t.Logf("refused while the operator is down: %v", err)

	plain := e.appDeployment("plain", appOptions{})
	if _, err := e.Cluster.Kube.CoreV1().Pods(other).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "plain-"}, Spec: plain.Spec.Template.Spec},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("a pod without annotations in another namespace was refused while the operator is down: %v", err)
	}

	// FeatureFlag writes go through the validating webhook (failurePolicy Fail too):
	// nothing changes the flags while the operator is down. The app keeps evaluating,
	// without an error, for a while.
	time.Sleep(10 * time.Second)
	after := e.waitValue(t, ns, pod.Name, "red", valueTimeout)
	if after.Errors != before.Errors {
		t.Fatalf("the app saw %d evaluation errors while the operator was down (%s)", after.Errors-before.Errors, after.ErrorMessage)
	}
	if after.Evaluations <= before.Evaluations {
		t.Fatalf("the app stopped evaluating: %d evaluations before, %d after", before.Evaluations, after.Evaluations)
	}
	ff, err := e.Cluster.Flags.CoreV1beta1().FeatureFlags(ns).Get(ctx, "flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ff.Spec.FlagSpec = colorFlags("blue")
	if _, err := e.Cluster.Flags.CoreV1beta1().FeatureFlags(ns).Update(ctx, ff, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "webhook") {
		t.Fatalf("a FeatureFlag update while the validating webhook is down: %v, want refused by the webhook call", err)
	}

	e.scaleOperator(t, replicas)
	waitFor(t, "admissions to work again", podTimeout, func() (bool, error) {
		err := e.tryInjectedPod(ctx, ns)
		return err == nil, err
	})
	e.setColor(t, ns, "flags", "blue")
	e.waitValue(t, ns, pod.Name, "blue", valueTimeout)
}

// TestWebhookCertificateReissued: deleting the operator's webhook certificate Secret
// makes it issue a new CA and serving certificate, patch the webhook configurations'
// caBundle, and serve the new certificate: admissions recover without a restart.
func TestWebhookCertificateReissued(t *testing.T) {
	e := kind(t)
	ctx := t.Context()
	ns := e.namespace(t, "certs")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	secret := e.operatorFlag(t, "tls-secret", "flagpole-webhook-tls")
	mutating := e.operatorFlag(t, "mutating-webhook-configuration", "flagpole-mutating-webhook")
	old, err := e.Cluster.Kube.CoreV1().Secrets(e.OperatorNamespace).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the webhook certificate Secret %s/%s: %v", e.OperatorNamespace, secret, err)
	}
	caBundle := func() []byte {
		m, err := e.Cluster.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mutating, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("MutatingWebhookConfiguration %s: %v", mutating, err)
		}
		return m.Webhooks[0].ClientConfig.CABundle
	}
	oldBundle := caBundle()
	if err := e.tryInjectedPod(ctx, ns); err != nil {
		t.Fatalf("before deleting the Secret: %v", err)
	}

	start := time.Now()
	if err := e.Cluster.Kube.CoreV1().Secrets(e.OperatorNamespace).Delete(ctx, secret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new Secret "+secret, podTimeout, func() (bool, error) {
		s, err := e.Cluster.Kube.CoreV1().Secrets(e.OperatorNamespace).Get(ctx, secret, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return s.UID != old.UID, nil
	})
	reissued := time.Since(start)
	waitFor(t, "the caBundle of "+mutating+" to change", podTimeout, func() (bool, error) {
		return !bytes.Equal(caBundle(), oldBundle), nil
	})
	patched := time.Since(start)
	waitFor(t, "admissions to work with the new certificate", podTimeout, func() (bool, error) {
		err := e.tryInjectedPod(ctx, ns)
		return err == nil, err
	})
	t.Logf("FIGURE webhook certificate Secret deleted → re-issued %s, caBundle patched %s, admissions working %s",
		reissued.Round(time.Millisecond), patched.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestSidecarKilled: the sidecar's process killed (SIGKILL through the node's
// containerd) is restarted by the kubelet as a native sidecar, and the app recovers:
// its evaluations succeed again and it follows the next update.
func TestSidecarKilled(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ctx := t.Context()
	ns := e.namespace(t, "sidecar-kill")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.waitValue(t, ns, pod.Name, "red", valueTimeout)
	st, _ := sidecarStatus(pod)
	id, ok := strings.CutPrefix(st.ContainerID, "containerd://")
	if !ok {
		t.Fatalf("sidecar container ID %q: not a containerd one", st.ContainerID)
	}
	start := time.Now()
	if _, err := e.nodeExec(ctx, "ctr", "--namespace", "k8s.io", "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
		t.Fatal(err)
	}
	var restarted *corev1.Pod
	waitFor(t, "the kubelet to restart the sidecar", podTimeout, func() (bool, error) {
		p, err := e.Cluster.Kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		s, _ := sidecarStatus(p)
		restarted = p
		return s.RestartCount > st.RestartCount && s.Ready, fmt.Errorf("%s", describePods([]corev1.Pod{*p}))
	})
	back := time.Since(start)
	e.checkSidecarRunning(t, restarted)
	mark := time.Now().UnixMilli()
	waitFor(t, "the app to evaluate without errors again", valueTimeout, func() (bool, error) {
		s, err := e.status(ctx, ns, pod.Name)
		if err != nil {
			return false, err
		}
		return s.LastSuccess != nil && *s.LastSuccess > mark && s.ErrorCode == "" && s.String() == "red",
			fmt.Errorf("value %s error %s %s", s.Value, s.ErrorCode, s.ErrorMessage)
	})
	recovered := time.Since(start)
	e.setColor(t, ns, "flags", "blue")
	s := e.waitValue(t, ns, pod.Name, "blue", valueTimeout)
	t.Logf("FIGURE sidecar SIGKILL → restarted and ready %s, app evaluating again %s (%d evaluation errors in all)",
		back.Round(time.Millisecond), recovered.Round(time.Millisecond), s.Errors)
}

// TestAdmissionsDuringOperatorRollout: a rolling restart of the operator (2 replicas,
// a PodDisruptionBudget) should not interrupt admissions: the API server calls the
// webhook Service throughout, and each old replica is terminated only once a new one
// is available. A FeatureFlag is created (dry run, through the validating webhook)
// every 100 ms from the restart until the rollout is done and a few seconds after;
// every refusal by the webhook call fails the test.
func TestAdmissionsDuringOperatorRollout(t *testing.T) {
	e := kind(t)
	ctx := t.Context()
	if err := e.waitAdmissions(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.waitAdmissions(); err != nil {
			t.Error(err)
		}
	})
	patch := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{"flagpole-e2e/restarted-at":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	start := time.Now()
	if _, err := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace).Patch(ctx, e.OperatorDeployment, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var probes, refused int
	var first, last string
	rolledOut := time.Time{}
	for rolledOut.IsZero() || time.Since(rolledOut) < 5*time.Second {
		if err := e.admissionProbe(ctx); err != nil {
			refused++
			last = fmt.Sprintf("%s after the restart: %v", time.Since(start).Round(time.Millisecond), err)
			if first == "" {
				first = last
			}
		}
		probes++
		if rolledOut.IsZero() {
			d, err := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace).Get(ctx, e.OperatorDeployment, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := ptr.Deref(d.Spec.Replicas, 1)
			s := d.Status
			if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.AvailableReplicas == want && s.Replicas == want {
				rolledOut = time.Now()
			}
		}
		if time.Since(start) > podTimeout {
			t.Fatalf("the operator's rollout did not finish within %s", podTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("FIGURE operator rolling restart: rolled out in %s; %d of %d admissions refused", rolledOut.Sub(start).Round(time.Millisecond), refused, probes)
	if refused > 0 {
		t.Fatalf("%d of %d admissions were refused during the operator's rolling restart; first: %s; last: %s", refused, probes, first, last)
	}
}
