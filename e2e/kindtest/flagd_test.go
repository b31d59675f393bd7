package kindtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// TestFlagdCR: a Flagd resource becomes a standalone flagd Deployment (the image under
// test) and Service; an OFREP app reaches it through the Service's cluster DNS name
// with a bearer token from a Secret, and follows updates; an app without the token is
// refused.
func TestFlagdCR(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ctx := t.Context()
	ns := e.namespace(t, "flagdcr")
	token := randomToken(t)
	for name, key := range map[string]string{"flagd-tokens": "tokens", "app-token": "token"} {
		if _, err := e.Cluster.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name}, StringData: map[string]string{key: token + "\n"},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	if _, err := e.Cluster.Flags.CoreV1beta1().Flagds(ns).Create(ctx, &v1beta1.Flagd{
		ObjectMeta: metav1.ObjectMeta{Name: "flagd"},
		Spec: v1beta1.FlagdSpec{FeatureFlagSource: "source", Replicas: ptr.To[int32](1),
			Auth: &v1beta1.FlagdAuth{TokenSecretRef: &v1beta1.SecretKeyRef{Name: "flagd-tokens", Key: "tokens"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Flagd's Deployment to be available", podTimeout, func() (bool, error) {
		d, err := e.Cluster.Kube.AppsV1().Deployments(ns).Get(ctx, "flagd", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.AvailableReplicas == 1, fmt.Errorf("available %d", d.Status.AvailableReplicas)
	})
	d, err := e.Cluster.Kube.AppsV1().Deployments(ns).Get(ctx, "flagd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != e.Image {
		t.Fatalf("the Flagd Deployment runs %q, want the image under test %q", img, e.Image)
	}

	url := fmt.Sprintf("http://flagd.%s.svc.cluster.local:8016", ns)
	tokenVolume := []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "app-token"}}}}
	tokenMount := []corev1.VolumeMount{{Name: "token", MountPath: "/token", ReadOnly: true}}
	pod := e.deployApp(t, ns, "app", appOptions{
		Env:     envs("PROVIDER", "ofrep", "FLAG_KEY", "color", "OFREP_URL", url, "OFREP_TOKEN_FILE", "/token/token"),
		Volumes: tokenVolume, Mounts: tokenMount,
	})
	e.waitValue(t, ns, pod.Name, "red", valueTimeout)
	report(t, "Flagd CR through its Service (OFREP, bearer token)", e.measureUpdates(t, ns, pod.Name, "flags", "blue", 5, valueTimeout), time.Second)

	refused := e.deployApp(t, ns, "no-token", appOptions{Env: envs("PROVIDER", "ofrep", "FLAG_KEY", "color", "OFREP_URL", url)})
	waitFor(t, "the app without a token to be refused", valueTimeout, func() (bool, error) {
		s, err := e.status(ctx, ns, refused.Name)
		if err != nil {
			return false, err
		}
		if s.LastSuccess != nil {
			t.Fatalf("the app without a token read %s", s.Value)
		}
		return s.Errors > 0 && s.ErrorCode != "", fmt.Errorf("%d evaluations, %d errors", s.Evaluations, s.Errors)
	})
	s, _ := e.status(ctx, ns, refused.Name)
	t.Logf("without the token: %s %s (%s, HTTP %d)", s.ErrorCode, s.ErrorMessage, s.ErrorType, s.ErrorStatus)
	if s.ErrorStatus != 401 || !strings.Contains(s.ErrorType, "Unauthorized") {
		t.Fatalf("the app without a token fails, but not for want of authorization: %s %s (%s, HTTP %d)", s.ErrorCode, s.ErrorMessage, s.ErrorType, s.ErrorStatus)
	}
}
