package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"buf.build/gen/go/open-feature/flagd/grpc/go/flagd/sync/v1/syncv1grpc"
	syncv1 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/sync/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/proxy"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/webhook"
)

// proxyAudience is the audience the webhook mounts the sidecar's token with, and
// the proxy's default --token-audience.
const proxyAudience = "flagpole-flagd-proxy"

// installProxyRole creates (or updates) the proxy's ClusterRole exactly as
// proxy/rbac.yaml has it: the proxy runs with nothing more.
func installProxyRole(t *testing.T, c *harness.Cluster) {
	t.Helper()
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(proxy.ClusterRoleYAML, &role); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	_, err := c.Kube.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var live *rbacv1.ClusterRole
		if live, err = c.Kube.RbacV1().ClusterRoles().Get(ctx, role.Name, metav1.GetOptions{}); err == nil {
			live.Rules = role.Rules
			_, err = c.Kube.RbacV1().ClusterRoles().Update(ctx, live, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// proxyProcess is a running `flagpole flagd-proxy start`.
type proxyProcess struct {
	proc             *harness.Process
	sync, management string
	// creds is how clients connect: plaintext, or TLS trusting the proxy's CA.
	creds credentials.TransportCredentials
}

// startProxy runs the proxy on 127.0.0.1 with the kubeconfig (a ServiceAccount
// token) and port ("0": a free one), and waits until /readyz is 200 (the
// FeatureFlags are listed). It is stopped when the test ends.
func startProxy(t *testing.T, dir, kubeconfig, port string, args ...string) *proxyProcess {
	t.Helper()
	all := append([]string{"flagd-proxy", "start", "--kubeconfig", kubeconfig, "--bind-address", "127.0.0.1", "--port", port, "--management-port", "0"}, args...)
	p, addrs, err := harness.StartFlagpole(t.Context(), suite.Janitor, suite.Flagpole, dir, nil, []string{"sync", "management"}, all...)
	if err != nil {
		t.Fatal(err)
	}
	pp := &proxyProcess{proc: p, sync: addrs["sync"], management: addrs["management"], creds: insecure.NewCredentials()}
	t.Cleanup(func() {
		if p.Running() {
			if err := p.Stop(15 * time.Second); err != nil {
				t.Error(err)
			} else if err := p.Err(); err != nil {
				t.Errorf("flagd-proxy exited with %v after SIGTERM (want a clean shutdown)", err)
			}
		}
		if t.Failed() {
			t.Logf("flagd-proxy log (last lines):\n%s", p.Tail(60))
		}
	})
	waitFor(t, "the flagd-proxy ready", func() (bool, error) {
		resp, err := http.Get("http://" + pp.management + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("/readyz %d", resp.StatusCode)
	})
	return pp
}

// stop stops the proxy (SIGTERM) and checks that it shut down cleanly.
func (p *proxyProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.proc.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.proc.Err(); err != nil {
		t.Fatalf("flagd-proxy exited with %v after SIGTERM (want a clean shutdown); log:\n%s", err, p.proc.Tail(30))
	}
}

// podToken asks TokenRequest for a token of the ServiceAccount namespace/web with
// the proxy's audience, bound to the pod (nil: unbound), as the kubelet mounts it
// for the projected volume the webhook adds.
func podToken(t *testing.T, c *harness.Cluster, namespace string, pod *corev1.Pod, audiences ...string) string {
	t.Helper()
	expiry := int64(3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := c.Kube.CoreV1().ServiceAccounts(namespace).CreateToken(t.Context(), "web", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/web: %v", namespace, err)
	}
	return tr.Status.Token
}

// proxySidecar runs a "sidecar" of the proxy: flagd mode with the given sources
// (as the webhook rendered them, pointed at the local proxy and a token file).
func proxySidecar(t *testing.T, sources []flagsync.SourceConfig) *harness.Flagd {
	t.Helper()
	data, err := json.Marshal(sources)
	if err != nil {
		t.Fatal(err)
	}
	return suite.StartFlagd(t, suite.TempDir(t), "", "--sources", string(data))
}

// localSources rewrites a pod's flagd-proxy sources for a sidecar on this machine:
// the proxy's local address instead of its Service, and a file holding token and
// caFile (the CA ConfigMap's bundle, for tls sources) instead of the projected
// volume.
func localSources(t *testing.T, sources []flagsync.SourceConfig, proxyAddr, token, caFile string) []flagsync.SourceConfig {
	t.Helper()
	tokenFile := filepath.Join(suite.TempDir(t), "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	out := make([]flagsync.SourceConfig, len(sources))
	for i, s := range sources {
		s.URI, s.BearerTokenFile = proxyAddr, tokenFile
		if s.TLS {
			s.CertPath = caFile
		}
		out[i] = s
	}
	return out
}

// color resolves "color" on a sidecar, or "" with the error.
func color(ctx context.Context, f *harness.Flagd) (string, error) {
	r, err := f.Resolve(ctx, "ResolveString", "color")
	if err != nil {
		return "", err
	}
	s, _ := r.Value.(string)
	return s, nil
}

// waitSidecarColor waits until the sidecar serves want.
func waitSidecarColor(t *testing.T, f *harness.Flagd, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitWithin(t, "color "+want+" served", timeout, func() (bool, error) {
		got, err := color(t.Context(), f)
		return got == want, fmt.Errorf("color %q (%w)", got, err)
	})
	return time.Since(start)
}

// setColor replaces a FeatureFlag's flags with flagSpec(c).
func setColor(t *testing.T, c *harness.Cluster, ns, name, col string) {
	t.Helper()
	ffs := c.Flags.CoreV1beta1().FeatureFlags(ns)
	for {
		ff, err := ffs.Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ff.Spec.FlagSpec = flagSpec(col)
		_, err = ffs.Update(t.Context(), ff, metav1.UpdateOptions{})
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
}

// syncCall opens a SyncFlags stream on the proxy as the holder of token ("": none)
// and returns the first message's error.
func syncCall(ctx context.Context, px *proxyProcess, token, selector string) error {
	return syncCallWith(ctx, px.sync, px.creds, token, selector)
}

// syncCallWith is syncCall to addr with creds.
func syncCallWith(ctx context.Context, addr string, creds credentials.TransportCredentials, token, selector string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := syncv1grpc.NewFlagSyncServiceClient(conn).SyncFlags(ctx, &syncv1.SyncFlagsRequest{Selector: selector})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// wantRefused checks a gRPC error's code and message.
func wantRefused(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Errorf("%s: %v, want %s containing %q", what, err, code, msg)
	}
}

// proxyTeam is a namespace with a ServiceAccount "web", a FeatureFlag and a
// FeatureFlagSource "proxied" naming it with provider flagd-proxy.
type proxyTeam struct {
	ns, flag, color string
	pod             *corev1.Pod
	sources         []flagsync.SourceConfig
	caFile          string // the namespace's CA ConfigMap's bundle, as mounted
	sidecar         *harness.Flagd
}

func newProxyTeam(t *testing.T, c *harness.Cluster, prefix, flag, col string) *proxyTeam {
	t.Helper()
	ctx := t.Context()
	tm := &proxyTeam{ns: harness.Namespace(t, c, prefix), flag: flag, color: col}
	if _, err := c.Kube.CoreV1().ServiceAccounts(tm.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: flag}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec(col)}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlags(tm.ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "proxied"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: flag, Provider: v1beta1.SyncProviderFlagdProxy}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(tm.ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return tm
}

// selector names the team's FeatureFlag for the proxy.
func (tm *proxyTeam) selector() string { return "core.openfeature.dev/" + tm.ns + "/" + tm.flag }

// pod is an annotated pod of the team, owned by a (never created) ReplicaSet.
func (tm *proxyTeam) podSpec(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationFeatureFlagSource: "proxied"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-1", UID: "00000000-0000-0000-0000-000000000002"}}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
	}
}

// TestFlagdProxyServesSidecars: the operator (controller) deploys the flagd-proxy
// for FeatureFlagSources with provider flagd-proxy; the webhook defers pods while
// it is not ready, then injects sidecars whose source is OFO's (the proxy's
// Service, selector core.openfeature.dev/<ns>/<name>) plus the pod's projected
// ServiceAccount token for the proxy. The proxy runs here as its own ServiceAccount
// with only its ClusterRole (proxy/rbac.yaml, bound by the controller); two
// "sidecars" (flagd mode with the injected sources, a token bound to their pod)
// serve their own namespace's flags through it, a sidecar asking for another
// namespace's flag is refused (PermissionDenied), so are callers without a token or
// with a token for the API server; updates reach both; when the proxy restarts the
// sidecars keep serving and reconnect.
func TestFlagdProxyServesSidecars(t *testing.T) {
	c := suite.Cluster
	ctx := t.Context()
	ops := harness.Namespace(t, c, "ops")
	installProxyRole(t, c)
	a := newProxyTeam(t, c, "team-a", "checkout", "red")
	b := newProxyTeam(t, c, "team-b", "search", "blue")

	// the proxy runs on 127.0.0.1 here: its certificate names that address too
	certHosts := []string{"--flagd-proxy-cert-extra-hosts", "127.0.0.1"}
	hook := suite.StartWebhook(t, c, suite.TempDir(t), append([]string{"--sidecar-image", sidecarImage, "--namespace", ops}, certHosts...)...)
	for _, tm := range []*proxyTeam{a, b} {
		unregister, err := hook.Register(ctx, c, "flagpole-e2e-"+tm.ns, tm.ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(unregister)
	}
	op := suite.StartOperator(t, c, suite.TempDir(t), "controller", append([]string{"--sidecar-image", sidecarImage, "--leader-elect=false", "--namespace", ops}, certHosts...)...)
	proxyApplies := func() int {
		n := 0
		for _, e := range op.Logs() {
			if e.Message() == "applied" && e.String("controller") == "flagd-proxy" {
				n++
			}
		}
		return n
	}

	checkProxyDeployed(t, c, ops)

	// Not ready yet (no kubelet here): pods are deferred with OFO's message.
	_, err := c.Kube.CoreV1().Pods(a.ns).Create(ctx, a.podSpec("early"), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "flagd-proxy is not ready, deferring pod admission") {
		t.Fatalf("a pod while the proxy is not ready: %v", err)
	}

	// The proxy, as its ServiceAccount (the controller's binding, the installed role).
	dir := suite.TempDir(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.TokenKubeconfig(ctx, ops, "flagd-proxy", kubeconfig); err != nil {
		t.Fatal(err)
	}
	// ... serving the key pair of the Secret the operator issued, as its pods mount it
	tlsArgs, caBundle := proxyTLS(t, c, ops, dir)
	px := startProxy(t, dir, kubeconfig, "0", tlsArgs...)
	px.creds = trusting(t, caBundle)
	_, port, _ := net.SplitHostPort(px.sync)

	// The kubelet's part: the Deployment has a ready replica.
	d, err := c.Kube.AppsV1().Deployments(ops).Get(ctx, "flagd-proxy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	applies := proxyApplies()
	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
	if _, err := c.Kube.AppsV1().Deployments(ops).UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tm := range []*proxyTeam{a, b} {
		waitFor(t, "the pod admitted in "+tm.ns, func() (bool, error) {
			var err error
			tm.pod, err = c.Kube.CoreV1().Pods(tm.ns).Create(ctx, tm.podSpec("web"), metav1.CreateOptions{})
			return err == nil, err
		})
		checkProxySidecar(t, c, tm, ops, caBundle)
	}

	// Steady state: the status change re-reconciled the proxy, and nothing was applied
	// (the API server's defaults do not look like drift).
	if n := proxyApplies(); n != applies {
		t.Errorf("the controller applied %d proxy objects again in a steady state", n-applies)
	}

	// The sidecars: the injected sources, pointed here, with tokens bound to their pods.
	tokenA := podToken(t, c, a.ns, a.pod, proxyAudience)
	tokenB := podToken(t, c, b.ns, b.pod, proxyAudience)
	a.sidecar = proxySidecar(t, localSources(t, a.sources, px.sync, tokenA, a.caFile))
	b.sidecar = proxySidecar(t, localSources(t, b.sources, px.sync, tokenB, b.caFile))
	for _, tm := range []*proxyTeam{a, b} {
		if err := tm.sidecar.WaitReadyz(ctx, http.StatusOK, readyTimeout); err != nil {
			t.Fatalf("%s: %v", tm.ns, err)
		}
		if got, err := color(ctx, tm.sidecar); err != nil || got != tm.color {
			t.Fatalf("%s serves %q (%v), want %q", tm.ns, got, err, tm.color)
		}
	}

	// Another namespace's flag: refused, to a sidecar and to direct calls.
	intruder := proxySidecar(t, localSources(t, []flagsync.SourceConfig{{URI: "x", Provider: "grpc", Selector: b.selector(), TLS: true}}, px.sync, tokenA, a.caFile))
	waitFor(t, "the intruder's source refused", func() (bool, error) {
		code, body, err := intruder.Readyz(ctx)
		return code == http.StatusPreconditionFailed && strings.Contains(body, "PermissionDenied") &&
			strings.Contains(body, "system:serviceaccount:"+a.ns+":web may not get FeatureFlag "+b.ns+"/search"), fmt.Errorf("/readyz %d %s (%w)", code, body, err)
	})
	checkProxyRefusals(t, c, px, a, b, tokenA)
	checkProxyTLS(t, px, a, tokenA)
	checkProxyAccountability(t, px, a, b, tokenA)
	if err := syncCall(ctx, px, tokenA, a.selector()); err != nil {
		t.Errorf("own flag, direct call: %v", err)
	}

	// Updates reach both.
	for _, u := range []struct {
		tm  *proxyTeam
		col string
	}{{a, "green"}, {b, "yellow"}} {
		setColor(t, c, u.tm.ns, u.tm.flag, u.col)
		took := waitSidecarColor(t, u.tm.sidecar, u.col, changeTimeout)
		t.Logf("%s: update served %s after the Update returned", u.tm.ns, took)
		u.tm.color = u.col
	}

	// The proxy restarts: the sidecars keep serving meanwhile, then reconnect.
	px.stop(t)
	for range 8 {
		for _, tm := range []*proxyTeam{a, b} {
			if got, err := color(ctx, tm.sidecar); err != nil || got != tm.color {
				t.Fatalf("%s while the proxy is down: %q (%v)", tm.ns, got, err)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	startProxy(t, suite.TempDir(t), kubeconfig, port, tlsArgs...)
	for _, u := range []struct {
		tm  *proxyTeam
		col string
	}{{a, "purple"}, {b, "orange"}} {
		setColor(t, c, u.tm.ns, u.tm.flag, u.col)
		took := waitSidecarColor(t, u.tm.sidecar, u.col, recoveryTimeout)
		t.Logf("%s: after the proxy's restart, an update served %s after the Update returned", u.tm.ns, took)
	}
}

// TestFlagdProxySurvivesAPIServerRestart: the API server stops for a few seconds;
// the sidecar keeps serving through the proxy (its stream stays open; the proxy's
// re-checks of the caller cannot reach the API server and keep the stream), and
// after the restart the proxy's informer catches up: an update reaches the sidecar.
func TestFlagdProxySurvivesAPIServerRestart(t *testing.T) {
	t.Parallel()
	c := suite.PrivateCluster(t)
	ctx := t.Context()
	installProxyRole(t, c)
	ops := harness.Namespace(t, c, "ops")
	if _, err := c.Kube.CoreV1().ServiceAccounts(ops).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "flagd-proxy"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "flagpole-flagd-proxy." + ops},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: proxy.ClusterRoleName},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ops, Name: "flagd-proxy"}}}
	if _, err := c.Kube.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tm := newProxyTeam(t, c, "team", "checkout", "red")
	// the grant the webhook writes for the pod's ServiceAccount
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-checkout"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1beta1.GroupName},
		Resources: []string{"featureflags"}, ResourceNames: []string{"checkout"}, Verbs: []string{"get", "list", "watch"}}}}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-checkout"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-checkout"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: tm.ns, Name: "web"}}}
	if _, err := c.Kube.RbacV1().Roles(tm.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kube.RbacV1().RoleBindings(tm.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := suite.TempDir(t)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := c.TokenKubeconfig(ctx, ops, "flagd-proxy", kubeconfig); err != nil {
		t.Fatal(err)
	}
	// short re-check intervals, so that the outage spans several of them
	px := startProxy(t, dir, kubeconfig, "0", "--access-cache-ttl", "1s", "--token-cache-ttl", "1s")
	token := podToken(t, c, tm.ns, nil, proxyAudience)
	sidecar := proxySidecar(t, localSources(t, []flagsync.SourceConfig{{URI: "x", Provider: "grpc", Selector: tm.selector(), AllowInsecure: true}}, px.sync, token, ""))
	if err := sidecar.WaitReadyz(ctx, http.StatusOK, readyTimeout); err != nil {
		t.Fatal(err)
	}
	waitSidecarColor(t, sidecar, "red", changeTimeout)

	if err := c.ControlPlane.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	checks := 0
	for end := time.Now().Add(outageDuration); time.Now().Before(end); checks++ {
		if got, err := color(ctx, sidecar); err != nil || got != "red" {
			t.Fatalf("during the outage: %q (%v)", got, err)
		}
		time.Sleep(outageCheckInterval)
	}
	if !px.proc.Running() {
		t.Fatalf("the proxy exited during the outage: %v", px.proc.Err())
	}
	t.Logf("served the flags %d times during the outage", checks)
	if err := c.ControlPlane.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	waitWithin(t, "the API server back", recoveryTimeout, func() (bool, error) {
		_, err := c.Flags.CoreV1beta1().FeatureFlags(tm.ns).Get(ctx, "checkout", metav1.GetOptions{})
		return err == nil, err
	})
	setColor(t, c, tm.ns, "checkout", "green")
	took := waitSidecarColor(t, sidecar, "green", recoveryTimeout)
	t.Logf("first update after the restart served %s after the Update returned", took)
	// a new caller is authenticated again once the API server answers
	if err := syncCall(ctx, px, token, tm.selector()); err != nil {
		t.Errorf("a new stream after the restart: %v", err)
	}
}

// checkProxyDeployed waits for the controller's flagd-proxy objects: this image,
// `flagd-proxy start` with the port, as its ServiceAccount; Service, PDB, binding.
func checkProxyDeployed(t *testing.T, c *harness.Cluster, ops string) {
	t.Helper()
	ctx := t.Context()
	var d *appsv1.Deployment
	waitFor(t, "the flagd-proxy Deployment", func() (bool, error) {
		var err error
		d, err = c.Kube.AppsV1().Deployments(ops).Get(ctx, "flagd-proxy", metav1.GetOptions{})
		return err == nil, err
	})
	container := d.Spec.Template.Spec.Containers[0]
	cfg, err := proxy.Parse(container.Args)
	if err != nil {
		t.Fatalf("the proxy would refuse its args %q: %v", container.Args, err)
	}
	if container.Image != sidecarImage || cfg.Port != 8015 || cfg.Auth != proxy.AuthServiceAccount || d.Spec.Template.Spec.ServiceAccountName != "flagd-proxy" {
		t.Errorf("Deployment: image %s, args %q, ServiceAccount %s", container.Image, container.Args, d.Spec.Template.Spec.ServiceAccountName)
	}
	for what, get := range map[string]func() error{
		"Service flagd-proxy-svc": func() error {
			_, err := c.Kube.CoreV1().Services(ops).Get(ctx, "flagd-proxy-svc", metav1.GetOptions{})
			return err
		},
		"PodDisruptionBudget": func() error {
			_, err := c.Kube.PolicyV1().PodDisruptionBudgets(ops).Get(ctx, "flagd-proxy-pdb", metav1.GetOptions{})
			return err
		},
		"ClusterRoleBinding": func() error {
			_, err := c.Kube.RbacV1().ClusterRoleBindings().Get(ctx, "flagpole-flagd-proxy."+ops, metav1.GetOptions{})
			return err
		},
	} {
		waitFor(t, what, func() (bool, error) { err := get(); return err == nil, err })
	}
}

// checkProxySidecar checks the sidecar injected into tm's pod: the proxy's source
// with the projected token, mounted read-only; it keeps the sources for later.
func checkProxySidecar(t *testing.T, c *harness.Cluster, tm *proxyTeam, ops string, caBundle []byte) {
	t.Helper()
	sc := tm.pod.Spec.InitContainers
	if len(sc) != 1 {
		t.Fatalf("%s: init containers %v", tm.ns, sc)
	}
	cfg, err := startconfig.Parse(sc[0].Args)
	if err != nil {
		t.Fatalf("the sidecar would refuse its args %q: %v", sc[0].Args, err)
	}
	tm.sources = cfg.Sources
	want := startconfig.SourceList{{URI: "flagd-proxy-svc." + ops + ".svc.cluster.local:8015", Provider: "grpc", Selector: tm.selector(),
		BearerTokenFile: "/var/run/secrets/flagpole.dev/flagd-proxy/token", TLS: true, CertPath: "/var/run/secrets/flagpole.dev/flagd-proxy/ca.crt"}}
	if diff := cmp.Diff(want, cfg.Sources); diff != "" {
		t.Errorf("%s: sources (-want +got):\n%s", tm.ns, diff)
	}
	var projected *corev1.ServiceAccountTokenProjection
	var caProjected *corev1.ConfigMapProjection
	for _, v := range tm.pod.Spec.Volumes {
		if v.Name == "flagpole-flagd-proxy-token" && v.Projected != nil && len(v.Projected.Sources) == 2 {
			projected, caProjected = v.Projected.Sources[0].ServiceAccountToken, v.Projected.Sources[1].ConfigMap
		}
	}
	if projected == nil || projected.Audience != proxyAudience || projected.Path != "token" ||
		caProjected == nil || caProjected.Name != "flagpole-flagd-proxy-ca" || len(caProjected.Items) != 1 || caProjected.Items[0].Path != "ca.crt" {
		t.Errorf("%s: volumes %+v", tm.ns, tm.pod.Spec.Volumes)
	}
	// the CA ConfigMap the webhook created holds the proxy's CA bundle
	cm, err := c.Kube.CoreV1().ConfigMaps(tm.ns).Get(t.Context(), "flagpole-flagd-proxy-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s: the CA ConfigMap: %v", tm.ns, err)
	}
	if cm.Data["ca.crt"] != string(caBundle) || cm.Labels["app.kubernetes.io/managed-by"] != "flagpole" {
		t.Fatalf("%s: CA ConfigMap %+v, want the Secret's ca.crt", tm.ns, cm)
	}
	tm.caFile = filepath.Join(suite.TempDir(t), "ca.crt")
	if err := os.WriteFile(tm.caFile, []byte(cm.Data["ca.crt"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if m := sc[0].VolumeMounts; len(m) != 1 || m[0].MountPath != "/var/run/secrets/flagpole.dev/flagd-proxy" || !m[0].ReadOnly {
		t.Errorf("%s: mounts %+v", tm.ns, m)
	}
}

// checkProxyRefusals: another namespace's flag, no token, a token for the API
// server, a forged token and a file selector are refused with their codes.
func checkProxyRefusals(t *testing.T, c *harness.Cluster, px *proxyProcess, a, b *proxyTeam, tokenA string) {
	t.Helper()
	ctx := t.Context()
	apiToken := podToken(t, c, a.ns, nil) // for the API server, as the pod's default token
	wantRefused(t, "another namespace's flag", syncCall(ctx, px, tokenA, b.selector()), codes.PermissionDenied, "may not get FeatureFlag "+b.ns+"/search")
	wantRefused(t, "no token", syncCall(ctx, px, "", a.selector()), codes.PermissionDenied, "no ServiceAccount token")
	// (the API server itself refuses a token of another audience in the TokenReview)
	wantRefused(t, "an API server token", syncCall(ctx, px, apiToken, a.selector()), codes.PermissionDenied, `is invalid for the target audiences ["flagpole-flagd-proxy"]`)
	wantRefused(t, "a forged token", syncCall(ctx, px, tokenA[:len(tokenA)-4]+"AAAA", a.selector()), codes.PermissionDenied, "does not accept the token")
	wantRefused(t, "a file selector", syncCall(ctx, px, tokenA, "file:/etc/passwd"), codes.InvalidArgument, "unrecognized URI: file:/etc/passwd")
}

// checkProxyAccountability: after the accepted sidecars and the refusals above,
// the proxy's /metrics counts accepted and refused callers by check, and its log
// names refused callers by their ServiceAccount, never by their token.
func checkProxyAccountability(t *testing.T, px *proxyProcess, a, b *proxyTeam, tokenA string) {
	t.Helper()
	metrics := scrape(t, "http://"+px.management+"/metrics")
	decisions := map[string]float64{} // "check result" → count, cached or not
	refused := map[string]float64{}
	for line := range strings.Lines(metrics) {
		name, labels, value, ok := parseSample(line)
		switch {
		case !ok:
		case name == "flagpole_flagd_proxy_auth_decisions_total":
			decisions[labels["check"]+" "+labels["result"]] += value
		case name == "flagpole_flagd_proxy_refused_total":
			refused[labels["code"]] += value
		}
	}
	for _, key := range []string{"token allowed", "token denied", "access allowed", "access denied"} {
		if decisions[key] < 1 {
			t.Errorf("flagpole_flagd_proxy_auth_decisions_total counts no %q decision: %v", key, decisions)
		}
	}
	// the five direct refusals of checkProxyRefusals (four PermissionDenied, one
	// InvalidArgument) and the intruder's
	if refused["PermissionDenied"] < 5 || refused["InvalidArgument"] < 1 {
		t.Errorf("flagpole_flagd_proxy_refused_total: %v", refused)
	}
	var lines []harness.LogEntry
	for _, e := range harness.ReadLogs(px.proc.LogPath) {
		if e.Message() == "flagd-proxy request refused (logged at most every 10 s)" {
			lines = append(lines, e)
		}
	}
	if len(lines) == 0 {
		t.Fatal("no refusal logged")
	}
	// The first refusal of the test has a verified caller: the intruder (or a
	// sidecar that asked before the API server's RBAC cache had its new grant).
	callers := map[string]bool{"system:serviceaccount:" + a.ns + ":web": true, "system:serviceaccount:" + b.ns + ":web": true}
	if first := lines[0]; !callers[first.String("caller")] || first.String("code") != "PermissionDenied" || first.Level() != "warn" ||
		(first.String("selector") != a.selector() && first.String("selector") != b.selector()) {
		t.Errorf("the first refusal's log line: %s", first.Text())
	}
	for _, l := range lines {
		if c, ok := l["caller"]; ok && !callers[l.String("caller")] {
			t.Errorf("a refusal logged with caller %v: %s", c, l.Text())
		}
	}
	if float64(len(lines)) > refused["PermissionDenied"]+refused["InvalidArgument"] {
		t.Errorf("%d refusal lines for %v refusals", len(lines), refused)
	}
	log, err := os.ReadFile(px.proc.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(log), tokenA) || strings.Contains(string(log), tokenA[:len(tokenA)-4]+"AAAA") {
		t.Error("the proxy's log holds a caller's token")
	}
}

// parseSample parses a line of the Prometheus text format, `name{k="v",...} value`
// (label values without escapes, as flagpole's are); comments are not samples.
func parseSample(line string) (name string, labels map[string]string, value float64, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", nil, 0, false
	}
	head, val, found := strings.Cut(line, " ")
	if !found {
		return "", nil, 0, false
	}
	if _, err := fmt.Sscan(val, &value); err != nil {
		return "", nil, 0, false
	}
	labels = map[string]string{}
	name, rest, hasLabels := strings.Cut(head, "{")
	if hasLabels {
		for pair := range strings.SplitSeq(strings.TrimSuffix(rest, "}"), ",") {
			if k, v, found := strings.Cut(pair, "="); found {
				labels[k] = strings.Trim(v, `"`)
			}
		}
	}
	return name, labels, value, true
}

// proxyTLS waits for the Secret flagd-proxy-tls the operator issues, writes its key
// pair into dir (as the proxy's pods mount it) and returns the proxy's TLS flags
// and the CA bundle (the Secret's ca.crt).
func proxyTLS(t *testing.T, c *harness.Cluster, ops, dir string) (args []string, caBundle []byte) {
	t.Helper()
	var sec *corev1.Secret
	waitFor(t, "the operator to issue the flagd-proxy's certificate", func() (bool, error) {
		var err error
		sec, err = c.Kube.CoreV1().Secrets(ops).Get(t.Context(), "flagd-proxy-tls", metav1.GetOptions{})
		return err == nil && len(sec.Data["tls.crt"]) > 0, err
	})
	for _, k := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, k), sec.Data[k], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--server-cert-path", filepath.Join(dir, "tls.crt"), "--server-key-path", filepath.Join(dir, "tls.key")}, sec.Data["ca.crt"]
}

// trusting is TLS client credentials trusting only caBundle.
func trusting(t *testing.T, caBundle []byte) credentials.TransportCredentials {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caBundle) {
		t.Fatalf("no certificate in the CA bundle %q", caBundle)
	}
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool})
}

// checkProxyTLS: the proxy serves TLS only (a plaintext client gets nothing), and
// a sidecar whose connection is diverted to an impostor (a server with a
// certificate of another CA for the same address) refuses it during the
// handshake: no request, so neither its token nor its selector, reaches the
// impostor, and it serves no flags from it.
func checkProxyTLS(t *testing.T, px *proxyProcess, a *proxyTeam, tokenA string) {
	t.Helper()
	ctx := t.Context()
	err := syncCallWith(ctx, px.sync, insecure.NewCredentials(), tokenA, a.selector())
	wantRefused(t, "a plaintext client", err, codes.Unavailable, "")

	rogue := newTestCA(t).serving(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{rogue}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var handshakes, completed atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			handshakes.Add(1)
			if err := conn.(*tls.Conn).HandshakeContext(ctx); err == nil {
				completed.Add(1)
			}
			_ = conn.Close()
		}
	}()
	diverted := proxySidecar(t, localSources(t, a.sources, ln.Addr().String(), tokenA, a.caFile))
	waitFor(t, "the diverted sidecar to refuse the impostor", func() (bool, error) {
		code, body, err := diverted.Readyz(ctx)
		return code == http.StatusPreconditionFailed && strings.Contains(body, "certificate signed by unknown authority") && handshakes.Load() > 0,
			fmt.Errorf("/readyz %d %s (%w)", code, body, err)
	})
	if n := completed.Load(); n != 0 {
		t.Errorf("%d TLS handshakes with the impostor completed (the sidecar trusted it)", n)
	}
}
