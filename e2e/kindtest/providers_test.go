package kindtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// updates is how many FeatureFlag updates a propagation measurement times.
const updates = 20

// injected returns the annotations that ask the webhook for a sidecar reading the
// FeatureFlagSource "source" (createSource's).
func injected() map[string]string {
	return map[string]string{annEnabled: "true", annSource: "source"}
}

// flagsSource is a kubernetes source reading FeatureFlag "flags" of the pod's namespace.
func flagsSource() v1beta1.Source {
	return v1beta1.Source{Source: "flags", Provider: v1beta1.SyncProviderKubernetes}
}

// measureUpdates sets the FeatureFlag's "color" n times and times each update, from
// the Update call to the moment the app in pod first saw the new value (its own
// clock: the node shares this machine's). Values are prefix-00, prefix-01, ...
func (e *env) measureUpdates(t testing.TB, ns, pod, flag, prefix string, n int, timeout time.Duration) []time.Duration {
	t.Helper()
	var took []time.Duration
	for i := range n {
		value := fmt.Sprintf("%s-%02d", prefix, i)
		start := time.Now()
		e.setColor(t, ns, flag, value)
		s := e.waitValue(t, ns, pod, value, timeout)
		seen, ok := s.firstSeen(value)
		if !ok {
			t.Fatalf("app %s/%s reports %q but not when it saw it: %+v", ns, pod, value, s.Changes)
		}
		took = append(took, time.UnixMilli(seen).Sub(start))
	}
	return took
}

// report logs the figures of a propagation measurement (reported, never asserted).
func report(t testing.TB, what string, took []time.Duration, budget time.Duration) {
	t.Helper()
	if len(took) == 0 {
		return
	}
	took = slices.Clone(took)
	slices.Sort(took)
	p50, p99 := percentile(took, 50), percentile(took, 99)
	t.Logf("FIGURE %s, %d updates (Update call → the app saw the new value): p50 %s, p99 %s, min %s, max %s",
		what, len(took), p50, p99, took[0], took[len(took)-1])
	if budget > 0 && p99 > budget {
		t.Logf("p99 %s is over the %s budget", p99, budget)
	}
}

// percentile is the nearest-rank percentile p of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	i := (p*len(sorted)+99)/100 - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// kubernetesProvider is the scenario of the kubernetes provider with one kind of SDK
// provider: the app's pod runs the injected native sidecar from the image under test,
// the sidecar becomes ready, the app reads the flag, and sees 20 updates.
func kubernetesProvider(t *testing.T, name string, appEnv []corev1.EnvVar) {
	t.Helper()
	e := kind(t)
	t.Parallel()
	ns := e.namespace(t, "k8s-"+name)
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, flagsSource())
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: appEnv})
	e.checkSidecarRunning(t, pod)
	s := e.waitValue(t, ns, pod.Name, "red", valueTimeout)
	t.Logf("app (%s, %s) reads %s: %s, reason %s", s.Provider, s.Resolver, "color", s.Value, s.Reason)
	report(t, "kubernetes provider, "+name, e.measureUpdates(t, ns, pod.Name, "flags", "blue", updates, valueTimeout), time.Second)
}

// TestKubernetesProviderRPC: @openfeature/flagd-provider in rpc mode, configured
// only by the environment the webhook injects (FLAGD_PORT, FLAGD_RESOLVER=rpc).
func TestKubernetesProviderRPC(t *testing.T) {
	kubernetesProvider(t, "rpc", envs("PROVIDER", "flagd", "FLAG_KEY", "color"))
}

// TestKubernetesProviderInProcess: @openfeature/flagd-provider in in-process mode
// against the sidecar's sync port (the app's own FLAGD_* win over the injected ones).
func TestKubernetesProviderInProcess(t *testing.T) {
	kubernetesProvider(t, "in-process", envs("PROVIDER", "flagd", "FLAG_KEY", "color", "FLAGD_RESOLVER", "in-process", "FLAGD_PORT", "8015"))
}

// TestKubernetesProviderOFREP: @openfeature/ofrep-provider against the sidecar's OFREP
// port.
func TestKubernetesProviderOFREP(t *testing.T) {
	kubernetesProvider(t, "ofrep", envs("PROVIDER", "ofrep", "FLAG_KEY", "color", "OFREP_URL", "http://localhost:8016"))
}

// TestFileProvider: the file provider mounts a ConfigMap the webhook created from the
// FeatureFlag; the controller keeps it in sync with the FeatureFlag, and the kubelet
// refreshes the mounted file on its own schedule, which bounds how soon the app sees
// an update (measured, with the controller's part on its own).
func TestFileProvider(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ns := e.namespace(t, "file")
	e.createFlags(t, ns, "red")
	e.createSource(t, ns, nil, v1beta1.Source{Source: "flags", Provider: v1beta1.SyncProviderFile})
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.checkSidecarRunning(t, pod)
	var configMap string
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil && strings.HasPrefix(v.Name, "flagd-file-") {
			configMap = v.ConfigMap.Name
		}
	}
	if configMap == "" {
		t.Fatalf("pod %s mounts no flagd-file-* ConfigMap volume: %+v", pod.Name, pod.Spec.Volumes)
	}
	e.waitValue(t, ns, pod.Name, "red", valueTimeout)

	const fileUpdates = 3
	var controller, app []time.Duration
	for i := range fileUpdates {
		value := fmt.Sprintf("green-%02d", i)
		start := time.Now()
		e.setColor(t, ns, "flags", value)
		waitFor(t, "ConfigMap "+configMap+" to hold "+value, valueTimeout, func() (bool, error) {
			cm, err := e.Cluster.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), configMap, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, doc := range cm.Data {
				if strings.Contains(doc, `"`+value+`"`) {
					return true, nil
				}
			}
			return false, fmt.Errorf("data: %v", cm.Data)
		})
		controller = append(controller, time.Since(start))
		s := e.waitValue(t, ns, pod.Name, value, fileTimeout)
		seen, _ := s.firstSeen(value)
		app = append(app, time.UnixMilli(seen).Sub(start))
	}
	report(t, "file provider, controller (Update call → ConfigMap updated, polled every 100 ms)", controller, 0)
	report(t, "file provider, app (kubelet ConfigMap volume sync)", app, 0)
}

// TestHTTPProvider: an http source on a test server pod that requires a bearer token.
// The FeatureFlagSource's httpSyncBearerToken reaches the sidecar through a Secret
// the webhook writes, never through the pod spec; the server counts authorized and
// refused requests, and refuses a request without the token.
func TestHTTPProvider(t *testing.T) {
	e := kind(t)
	t.Parallel()
	ctx := t.Context()
	ns := e.namespace(t, "http")
	token := randomToken(t)
	if _, err := e.Cluster.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "flagserver-token"},
		StringData: map[string]string{"token": token},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	doc := func(value string) string {
		raw, err := json.Marshal(map[string]any{"flags": map[string]any{"color": map[string]any{
			"state": "ENABLED", "variants": map[string]string{"current": value, "other": "x"}, "defaultVariant": "current"}}})
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	server := e.deployApp(t, ns, "flagserver", appOptions{
		Args:    []string{"/app/flagserver.js"},
		Env:     envs("TOKEN_FILE", "/token/token", "FLAGS", doc("red")),
		Volumes: []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "flagserver-token"}}}},
		Mounts:  []corev1.VolumeMount{{Name: "token", MountPath: "/token", ReadOnly: true}},
	})
	e.service(t, ns, "flagserver", "flagserver", appPort)

	url := fmt.Sprintf("http://flagserver.%s.svc.cluster.local:%d/flags.json", ns, appPort)
	e.createSource(t, ns, nil, v1beta1.Source{Source: url, Provider: v1beta1.SyncProviderHTTP, HTTPSyncBearerToken: token, Interval: 1})
	pod := e.deployApp(t, ns, "app", appOptions{Annotations: injected(), Env: envs("PROVIDER", "flagd", "FLAG_KEY", "color")})
	e.checkSidecarRunning(t, pod)
	e.waitValue(t, ns, pod.Name, "red", valueTimeout)

	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), token) {
		t.Fatalf("the token is in the pod object: %s", raw)
	}
	side := e.sidecar(t, pod)
	fromSecret := false
	for _, v := range side.Env {
		if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil && strings.HasPrefix(v.ValueFrom.SecretKeyRef.Name, "flagpole-http-auth-") {
			fromSecret = true
		}
	}
	if !fromSecret {
		t.Fatalf("the sidecar reads no flagpole-http-auth-* Secret: env %+v", side.Env)
	}

	stats := func() (served, refused int) {
		var s struct{ Served, Refused int }
		raw, err := e.Cluster.Kube.CoreV1().Pods(ns).ProxyGet("http", server.Name, fmt.Sprint(appPort), "/admin/stats", nil).DoRaw(ctx)
		if err == nil {
			err = json.Unmarshal(raw, &s)
		}
		if err != nil {
			t.Fatalf("flag server stats: %v", err)
		}
		return s.Served, s.Refused
	}
	served, refused := stats()
	if served == 0 {
		t.Fatalf("the flag server served no authorized request (refused %d)", refused)
	}
	// Without the token, the same request is refused (through the API server's pod proxy).
	if _, err := e.Cluster.Kube.CoreV1().Pods(ns).ProxyGet("http", server.Name, fmt.Sprint(appPort), "/flags.json", nil).DoRaw(ctx); err == nil {
		t.Fatal("the flag server served a request without the token")
	}
	if _, after := stats(); after != refused+1 {
		t.Fatalf("refused %d requests after one without the token, want %d", after, refused+1)
	}

	var took []time.Duration
	for i := range 5 {
		value := fmt.Sprintf("blue-%02d", i)
		start := time.Now()
		if err := e.Cluster.Kube.CoreV1().RESTClient().Put().Namespace(ns).Resource("pods").
			SubResource("proxy").Name(fmt.Sprintf("%s:%d", server.Name, appPort)).Suffix("admin/flags").
			Body([]byte(doc(value))).Do(ctx).Error(); err != nil {
			t.Fatalf("updating the flag server: %v", err)
		}
		s := e.waitValue(t, ns, pod.Name, value, valueTimeout)
		seen, _ := s.firstSeen(value)
		took = append(took, time.UnixMilli(seen).Sub(start))
	}
	report(t, "http provider (1 s polling interval), server update → app", took, 0)
}

// service creates a ClusterIP Service name in ns for the pods of app Deployment app.
func (e *env) service(t testing.TB, ns, name, app string, port int32) {
	t.Helper()
	if _, err := e.Cluster.Kube.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{appLabel: app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(port)}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service %s/%s: %v", ns, name, err)
	}
}

// randomToken is a fresh 32-byte hex token.
func randomToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
