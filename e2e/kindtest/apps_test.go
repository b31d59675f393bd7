package kindtest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
)

// Timeouts of the waits (generous: the node is shared with the other tests, and a
// cold pod start pulls nothing but still starts a Node.js runtime).
const (
	podTimeout   = 3 * time.Minute
	valueTimeout = 90 * time.Second
	// fileTimeout bounds a file-provider update: the kubelet refreshes mounted
	// ConfigMaps on its sync period (1 min) plus its cache TTL.
	fileTimeout = 4 * time.Minute
)

// Annotations of the OpenFeature Operator that flagpole keeps.
const (
	annEnabled     = "openfeature.dev/enabled"
	annSource      = "openfeature.dev/featureflagsource"
	annInProcess   = "openfeature.dev/inprocessconfiguration"
	sidecarName    = "flagd"
	appPort        = 8080
	appLabel       = "flagpole-e2e/app"
	injectedMarker = "flagpole.dev/injected"
)

// appOptions describe a test app Deployment (e2e/apps/app.js unless Args say otherwise).
type appOptions struct {
	// Annotations go on the pod template (openfeature.dev/...).
	Annotations map[string]string
	// Env is the app container's environment (PROVIDER, FLAG_KEY, ...).
	Env []corev1.EnvVar
	// Args replace ["/app/app.js"] (e.g. the flag server).
	Args []string
	// ServiceAccount is the pod's ServiceAccount ("" = default).
	ServiceAccount string
	// Volumes and Mounts are added to the pod and the app container.
	Volumes []corev1.Volume
	Mounts  []corev1.VolumeMount
}

// envs is a shorthand for a container environment.
func envs(kv ...string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, corev1.EnvVar{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// appDeployment is the Deployment of a test app: one replica, running as non-root
// with a read-only root filesystem, its status port 8080 probed for readiness.
func (e *env) appDeployment(name string, o appOptions) *appsv1.Deployment {
	args := o.Args
	if args == nil {
		args = []string{"/app/app.js"}
	}
	labels := map[string]string{appLabel: name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: maps.Clone(o.Annotations)},
				Spec: corev1.PodSpec{
					ServiceAccountName:            o.ServiceAccount,
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					Volumes:                       o.Volumes,
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           e.AppsImage,
						ImagePullPolicy: corev1.PullNever,
						Args:            args,
						Env:             o.Env,
						Ports:           []corev1.ContainerPort{{Name: "status", ContainerPort: appPort}},
						VolumeMounts:    o.Mounts,
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(appPort)}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             new(true),
							ReadOnlyRootFilesystem:   new(true),
							AllowPrivilegeEscalation: new(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
						},
					}},
				},
			},
		},
	}
}

// deployApp creates the app's Deployment in ns and returns its Ready pod.
func (e *env) deployApp(t testing.TB, ns, name string, o appOptions) *corev1.Pod {
	t.Helper()
	if _, err := e.Cluster.Kube.AppsV1().Deployments(ns).Create(t.Context(), e.appDeployment(name, o), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Deployment %s/%s: %v", ns, name, err)
	}
	return e.readyPod(t, ns, name, "")
}

// readyPod waits for a Ready pod of the app Deployment name that is not being deleted
// and is not the pod named except, and returns it.
func (e *env) readyPod(t testing.TB, ns, name, except string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	waitFor(t, fmt.Sprintf("a Ready pod of %s/%s", ns, name), podTimeout, func() (bool, error) {
		pods, err := e.Cluster.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: appLabel + "=" + name})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp == nil && p.Name != except && podReady(p) {
				pod = p
				return true, nil
			}
		}
		return false, fmt.Errorf("pods: %s", describePods(pods.Items))
	})
	return pod
}

// podReady reports the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describePods summarizes pods for a failure message: phase, and each container's
// state.
func describePods(pods []corev1.Pod) string {
	if len(pods) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s %s", p.Name, p.Status.Phase)
		for _, s := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			fmt.Fprintf(&b, " [%s ready=%v restarts=%d", s.Name, s.Ready, s.RestartCount)
			switch {
			case s.State.Waiting != nil:
				fmt.Fprintf(&b, " waiting %s %s", s.State.Waiting.Reason, s.State.Waiting.Message)
			case s.State.Terminated != nil:
				fmt.Fprintf(&b, " terminated %s %d", s.State.Terminated.Reason, s.State.Terminated.ExitCode)
			}
			b.WriteString("]")
		}
		for _, c := range p.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				fmt.Fprintf(&b, " (%s: %s)", c.Type, c.Message)
			}
		}
		b.WriteString("; ")
	}
	return b.String()
}

// appStatus is what an app reports on GET /status (e2e/apps/app.js).
type appStatus struct {
	Provider     string          `json:"provider"`
	Resolver     string          `json:"resolver"`
	Value        json.RawMessage `json:"value"`
	Variant      string          `json:"variant"`
	Reason       string          `json:"reason"`
	ErrorCode    string          `json:"errorCode"`
	ErrorMessage string          `json:"errorMessage"`
	ErrorType    string          `json:"errorType"`
	ErrorStatus  int             `json:"errorStatus"`
	Evaluations  int64           `json:"evaluations"`
	Errors       int64           `json:"errors"`
	ReadyAt      *int64          `json:"readyAt"`
	LastSuccess  *int64          `json:"lastSuccessAt"`
	LastError    *int64          `json:"lastErrorAt"`
	Now          int64           `json:"now"`
	Changes      []struct {
		Value json.RawMessage `json:"value"`
		At    int64           `json:"at"`
	} `json:"changes"`
}

// String returns the value as the app last saw it, a JSON string unquoted.
func (s appStatus) String() string {
	var v string
	if json.Unmarshal(s.Value, &v) == nil {
		return v
	}
	return string(s.Value)
}

// firstSeen returns when (ms since the epoch) the app first saw value, the last time
// it changed to it.
func (s appStatus) firstSeen(value string) (int64, bool) {
	for _, c := range slices.Backward(s.Changes) {
		var v string
		if json.Unmarshal(c.Value, &v) == nil && v == value {
			return c.At, true
		}
	}
	return 0, false
}

// status asks the app pod for its status through the API server's pod proxy.
func (e *env) status(ctx context.Context, ns, pod string) (appStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := e.Cluster.Kube.CoreV1().Pods(ns).ProxyGet("http", pod, fmt.Sprint(appPort), "/status", nil).DoRaw(ctx)
	if err != nil {
		return appStatus{}, fmt.Errorf("GET %s/%s:%d/status through the pod proxy: %w", ns, pod, appPort, err)
	}
	var s appStatus
	if err := json.Unmarshal(raw, &s); err != nil {
		return appStatus{}, fmt.Errorf("status of %s/%s: %w: %s", ns, pod, err, raw)
	}
	return s, nil
}

// waitValue waits until the app in pod reports value without an error, and returns
// its status.
func (e *env) waitValue(t testing.TB, ns, pod, value string, timeout time.Duration) appStatus {
	t.Helper()
	var s appStatus
	waitFor(t, fmt.Sprintf("app %s/%s to see %q", ns, pod, value), timeout, func() (bool, error) {
		var err error
		if s, err = e.status(t.Context(), ns, pod); err != nil {
			return false, err
		}
		if s.ErrorCode == "" && s.String() == value {
			return true, nil
		}
		return false, fmt.Errorf("value %s reason %s error %s %s (%d evaluations, %d errors)", s.Value, s.Reason, s.ErrorCode, s.ErrorMessage, s.Evaluations, s.Errors)
	})
	return s
}

// waitFor polls cond every 100 ms until it holds or the timeout passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (last: %v)", what, timeout, last)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// colorFlags is a flag document with the string flag "color" whose default variant
// is value, and a boolean flag "enabled".
func colorFlags(value string) v1beta1.FlagSpec {
	variants := json.RawMessage(`{"current":` + strconv.Quote(value) + `,"other":` + strconv.Quote("other-"+value) + `}`)
	return v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{
			"color":   {State: "ENABLED", Variants: variants, DefaultVariant: "current"},
			"enabled": {State: "ENABLED", Variants: json.RawMessage(`{"on":true,"off":false}`), DefaultVariant: "on"},
		},
	}
}

// createFlags creates FeatureFlag "flags" in ns with colorFlags(value).
func (e *env) createFlags(t testing.TB, ns, value string) *v1beta1.FeatureFlag {
	t.Helper()
	const name = "flags"
	ff, err := e.Cluster.Flags.CoreV1beta1().FeatureFlags(ns).Create(t.Context(),
		&v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: colorFlags(value)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating FeatureFlag %s/%s: %v", ns, name, err)
	}
	return ff
}

// setColor updates FeatureFlag name so that "color" is value, retrying on conflicts.
func (e *env) setColor(t testing.TB, ns, name, value string) {
	t.Helper()
	ffs := e.Cluster.Flags.CoreV1beta1().FeatureFlags(ns)
	for {
		ff, err := ffs.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ff.Spec.FlagSpec = colorFlags(value)
		if _, err = ffs.Update(t.Context(), ff, metav1.UpdateOptions{}); err == nil {
			return
		} else if !apierrors.IsConflict(err) {
			t.Fatalf("updating FeatureFlag %s/%s: %v", ns, name, err)
		}
	}
}

// createSource creates FeatureFlagSource "source" in ns with the given sources.
func (e *env) createSource(t testing.TB, ns string, edit func(*v1beta1.FeatureFlagSourceSpec), sources ...v1beta1.Source) {
	t.Helper()
	spec := v1beta1.FeatureFlagSourceSpec{Sources: sources}
	if edit != nil {
		edit(&spec)
	}
	if _, err := e.Cluster.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(t.Context(),
		&v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "source"}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating FeatureFlagSource %s/source: %v", ns, err)
	}
}

// namespace is a fresh namespace for the test, deleted at its end, in which the
// default ServiceAccount exists (pods are refused until the ServiceAccount
// controller has made it).
func (e *env) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := harness.Namespace(t, e.Cluster, prefix)
	waitFor(t, "the default ServiceAccount of "+ns, time.Minute, func() (bool, error) {
		_, err := e.Cluster.Kube.CoreV1().ServiceAccounts(ns).Get(t.Context(), "default", metav1.GetOptions{})
		return err == nil, err
	})
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpNamespace(t, ns)
		}
	})
	return ns
}

// dumpNamespace logs the pods of ns and the last log lines of their containers.
func (e *env) dumpNamespace(t testing.TB, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods, err := e.Cluster.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("listing pods of %s: %v", ns, err)
		return
	}
	t.Logf("pods of %s: %s", ns, describePods(pods.Items))
	for _, p := range pods.Items {
		for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
			raw, err := e.Cluster.Kube.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c.Name, TailLines: ptr.To[int64](20)}).DoRaw(ctx)
			if err != nil {
				continue
			}
			t.Logf("log of %s/%s[%s] (last lines):\n%s", ns, p.Name, c.Name, raw)
		}
	}
	events, err := e.Cluster.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, ev := range events.Items {
			if ev.Type != corev1.EventTypeNormal {
				t.Logf("event %s %s/%s: %s %s", ev.Type, ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Reason, ev.Message)
			}
		}
	}
}

// sidecar returns the injected flagd sidecar of pod, failing the test if there is
// none or it is not a native sidecar running the image under test.
func (e *env) sidecar(t testing.TB, pod *corev1.Pod) corev1.Container {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name != sidecarName {
			continue
		}
		if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("pod %s: init container %s is not a native sidecar (restartPolicy %v)", pod.Name, c.Name, c.RestartPolicy)
		}
		if c.Image != e.Image {
			t.Fatalf("pod %s: sidecar image %q, want the image under test %q", pod.Name, c.Image, e.Image)
		}
		return c
	}
	t.Fatalf("pod %s has no %s sidecar; init containers: %v", pod.Name, sidecarName, pod.Spec.InitContainers)
	return corev1.Container{}
}

// sidecarStatus returns the status of pod's flagd sidecar.
func sidecarStatus(pod *corev1.Pod) (corev1.ContainerStatus, bool) {
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == sidecarName {
			return s, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// checkSidecarRunning fails unless pod's sidecar is started, ready and running the
// image under test (the kubelet's view: the image the container really runs).
func (e *env) checkSidecarRunning(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	e.sidecar(t, pod)
	s, ok := sidecarStatus(pod)
	if !ok || !s.Ready || s.Started == nil || !*s.Started || s.State.Running == nil {
		t.Fatalf("pod %s: sidecar not running and ready: %s", pod.Name, describePods([]corev1.Pod{*pod}))
	}
	if !strings.HasSuffix(s.Image, strings.TrimPrefix(e.Image, "docker.io/")) {
		t.Fatalf("pod %s: the kubelet reports sidecar image %q, want %q", pod.Name, s.Image, e.Image)
	}
}
