package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
)

// reconcileTimeout bounds a wait for the controller to act (it takes milliseconds).
const reconcileTimeout = 60 * time.Second

// waitFor polls cond until it holds or reconcileTimeout passes.
func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	waitWithin(t, what, reconcileTimeout, cond)
}

// waitWithin polls cond until it holds or timeout passes.
func waitWithin(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
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
			t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// flagdEnv is a namespace with a FeatureFlag and a FeatureFlagSource for Flagds.
type flagdEnv struct {
	c  *harness.Cluster
	ns string
}

func newFlagdEnv(t *testing.T) *flagdEnv {
	t.Helper()
	e := &flagdEnv{c: suite.Cluster, ns: harness.Namespace(t, suite.Cluster, "flagdcr")}
	ctx := t.Context()
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec("checkout")}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlags(e.ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *flagdEnv) flagd(t *testing.T, name string, edit func(*v1beta1.FlagdSpec)) {
	t.Helper()
	f := &v1beta1.Flagd{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FlagdSpec{FeatureFlagSource: "flags"}}
	if edit != nil {
		edit(&f.Spec)
	}
	if _, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Create(t.Context(), f, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *flagdEnv) deployment(ctx context.Context, name string) (*appsv1.Deployment, error) {
	return e.c.Kube.AppsV1().Deployments(e.ns).Get(ctx, name, metav1.GetOptions{})
}

// TestFlagdReconciled: a Flagd gets its ServiceAccount, a Deployment running this
// image in flagd mode on every interface (args the sidecar contract parses, one set
// of ports), a Service with appProtocol, a grant to read its FeatureFlag, and a
// status; deleted or edited children come back; ingress on and off; a change of the
// FeatureFlagSource rolls the Deployment; a steady state writes nothing.
func TestFlagdReconciled(t *testing.T) {
	e := newFlagdEnv(t)
	ctx := t.Context()
	op := suite.StartOperator(t, e.c, suite.TempDir(t), "controller", "--sidecar-image", sidecarImage, "--leader-elect=false")
	e.flagd(t, "shared", func(s *v1beta1.FlagdSpec) { two := int32(2); s.Replicas = &two })

	var d *appsv1.Deployment
	waitFor(t, "the Deployment", func() (bool, error) {
		var err error
		d, err = e.deployment(ctx, "shared")
		return err == nil, err
	})
	if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.ServiceAccountName != "shared" || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment spec: replicas %d, SA %q, containers %d", *d.Spec.Replicas, d.Spec.Template.Spec.ServiceAccountName, len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	cfg, err := startconfig.Parse(c.Args)
	if err != nil {
		t.Fatalf("the Deployment's args %q: %v", c.Args, err)
	}
	if c.Image != sidecarImage || cfg.BindAddress != "" || cfg.Port != 8013 || c.RestartPolicy != nil {
		t.Errorf("container image %s bind %q port %d restartPolicy %v", c.Image, cfg.BindAddress, cfg.Port, c.RestartPolicy)
	}
	if ref := metav1.GetControllerOf(d); ref == nil || ref.Kind != "Flagd" || ref.Name != "shared" {
		t.Errorf("Deployment owner %v", ref)
	}
	// The API server's own Pod Security admission judges the pod the Deployment
	// would run: admitted under "restricted".
	admittedRestricted(t, e.c, d.Spec.Template)
	// The Service is applied after the Deployment: wait for it too.
	var svc *corev1.Service
	waitFor(t, "the Service", func() (bool, error) {
		var err error
		svc, err = e.c.Kube.CoreV1().Services(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		return err == nil, err
	})
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s:%d:%s", p.Name, p.Port, deref(p.AppProtocol)))
	}
	if want := []string{"flagd:8013:grpc", "ofrep:8016:http", "sync:8015:grpc", "metrics:8014:http"}; !slices.Equal(ports, want) {
		t.Errorf("Service ports %v, want %v", ports, want)
	}
	if _, err := e.c.Kube.CoreV1().ServiceAccounts(e.ns).Get(ctx, "shared", metav1.GetOptions{}); err != nil {
		t.Errorf("ServiceAccount: %v", err)
	}
	waitFor(t, "the grant Role", func() (bool, error) {
		_, err := e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, "flagpole-featureflags-"+e.ns+".shared", metav1.GetOptions{})
		return err == nil, err
	})
	waitFor(t, "status", func() (bool, error) {
		f, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(f.Status.Conditions, v1beta1.ConditionReady)
		// no kube-controller-manager here: the Deployment never gets pods
		return cond != nil && cond.Reason == "Progressing" && f.Status.Address == "shared."+e.ns+".svc:8013" && f.Status.ObservedGeneration == f.Generation, nil
	})

	// Drift repair: a deleted Deployment comes back, an edited Service is restored.
	if err := e.c.Kube.AppsV1().Deployments(e.ns).Delete(ctx, "shared", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Deployment re-created", func() (bool, error) {
		nd, err := e.deployment(ctx, "shared")
		return err == nil && nd.UID != d.UID, err
	})
	patch := `[{"op":"replace","path":"/spec/ports/0/port","value":9999}]`
	if _, err := e.c.Kube.CoreV1().Services(e.ns).Patch(ctx, "shared", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Service port restored", func() (bool, error) {
		s, err := e.c.Kube.CoreV1().Services(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && s.Spec.Ports[0].Port == 8013, err
	})

	// Ingress on, then off.
	setIngress := func(enabled bool) {
		t.Helper()
		f, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		f.Spec.Ingress = &v1beta1.IngressSpec{Enabled: enabled, Hosts: []string{"flags.example.com"}}
		if _, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Update(ctx, f, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setIngress(true)
	waitFor(t, "the Ingress", func() (bool, error) {
		in, err := e.c.Kube.NetworkingV1().Ingresses(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && len(in.Spec.Rules) == 1 && len(in.Spec.Rules[0].HTTP.Paths) == 3, err
	})
	setIngress(false)
	waitFor(t, "the Ingress removed", func() (bool, error) {
		_, err := e.c.Kube.NetworkingV1().Ingresses(e.ns).Get(ctx, "shared", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})

	// A FeatureFlagSource change rolls the Deployment (OFO #785 misses it).
	before, err := e.deployment(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	ffs, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Get(ctx, "flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ffs.Spec.ContextValues = map[string]string{"env": "prod"}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Update(ctx, ffs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the template updated", func() (bool, error) {
		after, err := e.deployment(ctx, "shared")
		return err == nil && after.Generation > before.Generation && slices.Contains(after.Spec.Template.Spec.Containers[0].Args, "env=prod"), err
	})

	// Steady state: no writes. Wait for quiet, then count the "applied" log lines
	// over a resync-free period with a no-op touch of the Flagd's labels.
	time.Sleep(time.Second)
	applied := func() int {
		n := 0
		for _, l := range op.Logs() {
			if l.Message() == "applied" {
				n++
			}
		}
		return n
	}
	n := applied()
	f, _ := e.c.Flags.CoreV1beta1().Flagds(e.ns).Get(ctx, "shared", metav1.GetOptions{})
	f.Labels = map[string]string{"touched": "yes"} // a change that does not change the children
	if _, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Update(ctx, f, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got := applied(); got != n {
		t.Errorf("a reconcile with nothing to change applied %d objects", got-n)
	}
	if !strings.Contains(op.Proc.Tail(200), `"controller":"flagd"`) {
		t.Errorf("no controller log lines")
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestFlagdWithoutSource: a Flagd whose FeatureFlagSource does not exist reports it
// in its status (and a Warning Event) and is reconciled once the source appears.
// The operator also serves /metrics, and only that, on OFO's --metrics-bind-address.
func TestFlagdWithoutSource(t *testing.T) {
	e := &flagdEnv{c: suite.Cluster, ns: harness.Namespace(t, suite.Cluster, "flagdnosrc")}
	ctx := t.Context()
	op := suite.StartOperator(t, e.c, suite.TempDir(t), "controller", "--sidecar-image", sidecarImage, "--leader-elect=false",
		"--metrics-bind-address", "127.0.0.1:0")
	e.flagd(t, "lonely", nil)
	waitFor(t, "a FeatureFlagSourceNotFound status", func() (bool, error) {
		f, err := e.c.Flags.CoreV1beta1().Flagds(e.ns).Get(ctx, "lonely", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		cond := meta.FindStatusCondition(f.Status.Conditions, v1beta1.ConditionReady)
		return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == "FeatureFlagSourceNotFound", nil
	})
	waitFor(t, "a Warning Event", func() (bool, error) {
		events, err := e.c.Kube.CoreV1().Events(e.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(events.Items, func(ev corev1.Event) bool {
			return ev.Type == corev1.EventTypeWarning && ev.Reason == "FeatureFlagSourceNotFound" && ev.InvolvedObject.Name == "lonely"
		}), nil
	})
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec("checkout")}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlags(e.ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Deployment after the source appeared", func() (bool, error) {
		_, err := e.deployment(ctx, "lonely")
		return err == nil, err
	})

	metrics := httpGet(t, "http://"+op.Metrics+"/metrics")
	if metrics.code != http.StatusOK || !strings.Contains(metrics.body, `controller_runtime_reconcile_total{controller="flagd",result="success"}`) {
		t.Errorf("/metrics on --metrics-bind-address: %d %.200s", metrics.code, metrics.body)
	}
	if readyz := httpGet(t, "http://"+op.Metrics+"/readyz"); readyz.code != http.StatusNotFound {
		t.Errorf("/readyz on the metrics listener: %d, want 404 (metrics only)", readyz.code)
	}
}

type httpAnswer struct {
	code int
	body string
}

func httpGet(t *testing.T, url string) httpAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpAnswer{resp.StatusCode, string(body)}
}

// TestLeaderElection: two controllers, one Lease. Only the leader reconciles; when
// it is killed (no release) the other takes over within the lease duration; when
// the new leader shuts down gracefully it releases the Lease, and a Flagd created
// during that shutdown is reconciled by the next leader.
func TestLeaderElection(t *testing.T) {
	e := newFlagdEnv(t)
	ctx := t.Context()
	lease := "flagpole-e2e-" + e.ns
	args := []string{"--sidecar-image", sidecarImage, "--namespace", e.ns, "--leader-election-id", lease,
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "500ms"}
	a := suite.StartOperator(t, e.c, suite.TempDir(t), "controller", args...)
	holder := func() string {
		l, err := e.c.Kube.CoordinationV1().Leases(e.ns).Get(ctx, lease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	waitFor(t, "a leader", func() (bool, error) { return holder() != "", nil })
	first := holder()
	b := suite.StartOperator(t, e.c, suite.TempDir(t), "controller", args...)
	e.flagd(t, "one", nil)
	waitFor(t, "the first Flagd reconciled", func() (bool, error) {
		_, err := e.deployment(ctx, "one")
		return err == nil, err
	})
	if holder() != first {
		t.Fatalf("the leader changed while both ran: %q then %q", first, holder())
	}
	// which process leads? the one whose log says so
	leaderProc, other := a, b
	if !leads(a) {
		leaderProc, other = b, a
	}
	if !leads(leaderProc) || leads(other) {
		t.Fatalf("exactly one process must log leadership (a %v, b %v)", leads(a), leads(b))
	}
	killed := time.Now()
	leaderProc.Proc.Kill() // a crash: the Lease is not released
	e.flagd(t, "two", nil)
	waitFor(t, "the other process takes over and reconciles", func() (bool, error) {
		_, err := e.deployment(ctx, "two")
		return err == nil && leads(other), err
	})
	t.Logf("takeover after a crash: %s (lease duration 4s)", time.Since(killed).Round(100*time.Millisecond))

	// Graceful shutdown of the new leader: the Lease is released at once; a third
	// process takes over and reconciles what changed meanwhile.
	if err := other.Proc.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := other.Proc.Err(); err != nil {
		t.Errorf("graceful shutdown exited with %v", err)
	}
	if h := holder(); h != "" {
		t.Errorf("the Lease is still held by %q after a graceful shutdown", h)
	}
	e.flagd(t, "three", nil) // created with no leader at all
	suite.StartOperator(t, e.c, suite.TempDir(t), "controller", args...)
	waitFor(t, "the next leader reconciles what changed meanwhile", func() (bool, error) {
		_, err := e.deployment(ctx, "three")
		return err == nil, err
	})
}

// leads reports whether an operator process logged that it became the leader.
func leads(o *harness.Operator) bool {
	return slices.ContainsFunc(o.Logs(), func(l harness.LogEntry) bool { return l.Message() == "became the leader" })
}

// admittedRestricted creates (dry run) a pod of template in a namespace that
// enforces the "restricted" Pod Security Standard, so that the API server's
// PodSecurity admission judges it; a pod with the host's PID namespace and no
// securityContext is refused there first, which proves the policy is enforced.
func admittedRestricted(t *testing.T, c *harness.Cluster, template corev1.PodTemplateSpec) {
	t.Helper()
	ctx := t.Context()
	ns := harness.Namespace(t, c, "psa")
	labels := `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"restricted","pod-security.kubernetes.io/enforce-version":"latest"}}}`
	if _, err := c.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, []byte(labels), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: corev1.PodSpec{HostPID: true,
		Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, plain, dryRun); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted`) {
		t.Fatalf("a pod with the host's PID namespace and no securityContext in a namespace enforcing restricted: %v, want refused by PodSecurity", err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rendered", Labels: template.Labels}, Spec: *template.Spec.DeepCopy()}
	if _, err := c.Kube.CoreV1().Pods(ns).Create(ctx, pod, dryRun); err != nil {
		t.Errorf("the rendered pod is not admitted under the restricted Pod Security Standard: %v", err)
	}
}
