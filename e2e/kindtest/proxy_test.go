package kindtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// TestFlagdProxy: two apps in two namespaces read their flags through the one
// flagd-proxy the operator deploys (the image under test, in the operator's
// namespace): each sidecar streams its own namespace's FeatureFlag from the proxy
// over TLS (the operator's certificate, mounted from its Secret; the CA bundle from
// the namespace's ConfigMap) with its pod's projected token, and follows updates. A sidecar of the first
// namespace re-pointed at the second namespace's FeatureFlag — the injected
// container, token and all, with only the selector changed — is refused by the proxy
// and serves nothing.
//
// The proxy's ClusterRole and the operator's rules to deploy it are part of every
// install (deploy/base/flagd-proxy-rbac.yaml): nothing is granted here.
func TestFlagdProxy(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ctx := t.Context()
	a, b := e.namespace(t, "proxy-a"), e.namespace(t, "proxy-b")
	for ns, color := range map[string]string{a: "red", b: "blue"} {
		e.createFlags(t, ns, color)
		e.createSource(t, ns, nil, v1beta1.Source{Source: "flags", Provider: v1beta1.SyncProviderFlagdProxy})
	}
	deployments := e.Cluster.Kube.AppsV1().Deployments(e.OperatorNamespace)
	waitFor(t, "the operator's flagd-proxy Deployment to be available", podTimeout, func() (bool, error) {
		d, err := deployments.Get(ctx, "flagd-proxy", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.AvailableReplicas > 0, fmt.Errorf("available %d of %d", d.Status.AvailableReplicas, d.Status.Replicas)
	})
	d, err := deployments.Get(ctx, "flagd-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != e.Image {
		t.Fatalf("the flagd-proxy Deployment runs %q, want the image under test %q", img, e.Image)
	}

	pods := map[string]*corev1.Pod{}
	for ns, color := range map[string]string{a: "red", b: "blue"} {
		pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
		e.checkSidecarRunning(t, pod)
		args := strings.Join(e.sidecar(t, pod).Args, " ")
		// over TLS, trusting the proxy's CA bundle the webhook projected beside the token
		for _, want := range []string{"flagd-proxy-svc." + e.OperatorNamespace, "core.openfeature.dev/" + ns + "/flags", `"tls":true`,
			`"certPath":"/var/run/secrets/flagpole.dev/flagd-proxy/ca.crt"`} {
			if !strings.Contains(args, want) {
				t.Fatalf("the sidecar of %s/%s does not read through the proxy (%q missing): %s", ns, pod.Name, want, args)
			}
		}
		e.waitValue(t, ns, pod.Name, color, valueTimeout)
		pods[ns] = pod
	}
	report(t, "flagd-proxy (kubernetes FeatureFlag → proxy → sidecar → rpc app)",
		e.measureUpdates(t, a, pods[a].Name, "flags", "green", 5, valueTimeout), time.Second)
	e.waitValue(t, b, pods[b].Name, "blue", valueTimeout) // b's app never saw a's updates

	// The sidecar of a, asking the proxy for b's FeatureFlag with a's token.
	pod := pods[a]
	side := e.sidecar(t, pod)
	side.Name = "thief"
	for i, arg := range side.Args {
		side.Args[i] = strings.ReplaceAll(arg, "core.openfeature.dev/"+a+"/flags", "core.openfeature.dev/"+b+"/flags")
	}
	side.RestartPolicy = nil
	var volumes []corev1.Volume
	for _, m := range side.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name == m.Name {
				volumes = append(volumes, v)
			}
		}
	}
	labels := map[string]string{appLabel: "thief"}
	if _, err := e.Cluster.Kube.AppsV1().Deployments(a).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "thief"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{ServiceAccountName: pod.Spec.ServiceAccountName, Containers: []corev1.Container{side}, Volumes: volumes}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var refusal string
	waitFor(t, "the proxy to refuse a's sidecar b's FeatureFlag", podTimeout, func() (bool, error) {
		list, err := e.Cluster.Kube.CoreV1().Pods(a).List(ctx, metav1.ListOptions{LabelSelector: appLabel + "=thief"})
		if err != nil || len(list.Items) == 0 {
			return false, err
		}
		p := list.Items[0]
		if podReady(&p) {
			t.Fatalf("the sidecar asking for another namespace's FeatureFlag became ready: %s", describePods(list.Items))
		}
		raw, err := e.Cluster.Kube.CoreV1().Pods(a).GetLogs(p.Name, &corev1.PodLogOptions{Container: "thief"}).DoRaw(ctx)
		if err != nil {
			return false, err
		}
		for line := range strings.Lines(string(raw)) {
			if strings.Contains(line, "PermissionDenied") || strings.Contains(line, "may not get FeatureFlag") {
				refusal = strings.TrimSpace(line)
				return true, nil
			}
		}
		return false, fmt.Errorf("no refusal logged yet: %s", describePods(list.Items))
	})
	if strings.Contains(refusal, `"blue"`) {
		t.Fatalf("the refusal carries b's flags: %s", refusal)
	}
	t.Logf("refused: %s", refusal)
}
