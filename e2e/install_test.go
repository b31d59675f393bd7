package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/webhook"
)

// installScenarios are the scenarios TestInstallRBAC runs under the install's
// ServiceAccount. Left out: the webhook certificate scenarios and TestLeaderElection
// (they keep their Secret or Lease in the test's namespace, which the install does
// not grant; TestInstalledOperator does both in the install's namespace), and the
// scenarios that do not run the operator.
var installScenarios = []string{
	"TestInstalledOperator",
	"TestWebhookInjectsKubernetesSource", "TestWebhookDenials", "TestWebhookProviders",
	"TestFlagdReconciled", "TestFlagdWithoutSource",
	"TestFeatureFlagReconciled", "TestFeatureFlagSourceRollout", "TestGrantsRemoved",
}

// renderInstall renders deploy/default as `kubectl kustomize` does, with
// deploy/tools' deploytool (a module of its own: kustomize stays out of this one).
func renderInstall(t *testing.T, dir string) string {
	t.Helper()
	goCmd, err := harness.GoCommand()
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(suite.RepoRoot)
	if err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(dir, "deploytool")
	build := exec.CommandContext(t.Context(), goCmd, "build", "-o", tool, "./cmd/deploytool")
	build.Dir = filepath.Join(root, "deploy", "tools")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building deploytool: %v\n%s", err, out)
	}
	render := exec.CommandContext(t.Context(), tool, "kustomize", filepath.Join(root, "deploy", "default"))
	render.Dir = root
	out, err := render.Output()
	if err != nil {
		t.Fatalf("deploytool kustomize deploy/default: %v", err)
	}
	path := filepath.Join(dir, "install.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInstallRBAC proves the install's RBAC sufficient and minimal. It renders
// deploy/default and runs installScenarios again in a child process whose control
// plane has the install applied and writes an audit log of the install's
// ServiceAccount; there flagpole authenticates as that ServiceAccount. Then: no
// request of it was forbidden, and every verb on every resource of every rule bound
// to it was used by some scenario ("no rule without a use"). It logs each rule with
// the scenarios that used it (docs/install.md, "RBAC").
func TestInstallRBAC(t *testing.T) {
	if os.Getenv(harness.InstallManifestsEnv) != "" {
		t.Skip("the child run itself")
	}
	if suite.Cluster.ControlPlane == nil || testing.Short() {
		t.Skip("starts a control plane of its own (not on an existing cluster, not with -short)")
	}
	dir := suite.TempDir(t)
	install := renderInstall(t, dir)
	audit, nsLog := filepath.Join(dir, "audit.log"), filepath.Join(dir, "namespaces.log")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run", "^("+strings.Join(installScenarios, "|")+")$",
		"-test.count=1", "-test.v", "-test.timeout=19m")
	child.Env = append(os.Environ(), harness.InstallManifestsEnv+"="+install, harness.AuditLogEnv+"="+audit,
		harness.NamespaceLogEnv+"="+nsLog)
	out, err := child.CombinedOutput()
	if err != nil {
		// the audit log is read all the same: it names the missing rules
		t.Errorf("the scenarios under the install's ServiceAccount: %v\n%s", err, failures(out))
	}
	for _, s := range installScenarios {
		if !strings.Contains(string(out), "--- PASS: "+s+" ") {
			t.Errorf("%s did not pass in the child run (skipped?)", s)
		}
	}

	data, err := os.ReadFile(install)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := boundRules(data, harness.InstallNamespace, harness.InstallServiceAccount)
	if err != nil {
		t.Fatal(err)
	}
	events, err := harness.ReadAuditLog(audit)
	if err != nil {
		t.Fatal(err)
	}
	namespaces, err := harness.ReadNamespaceLog(nsLog)
	if err != nil {
		t.Fatal(err)
	}
	var ours int
	forbidden := map[string]int{}
	for _, e := range events {
		if e.User.Username != harness.InstallUser || e.Stage != "ResponseComplete" {
			continue
		}
		ours++
		if e.Forbidden() {
			forbidden[e.Verb+" "+e.RequestURI]++
		}
	}
	for _, f := range harness.SortedKeys(forbidden) {
		t.Errorf("forbidden (%d times): %s (a rule is missing)", forbidden[f], f)
	}
	if ours == 0 {
		t.Fatalf("no audit event of %s in %s", harness.InstallUser, audit)
	}
	var table strings.Builder
	table.WriteString("| Rule | Used by |\n|---|---|\n")
	for _, p := range rules {
		var by []string
		for _, e := range events {
			if !p.matches(e) {
				continue
			}
			s := scenarioOf(e, namespaces)
			if !slices.Contains(by, s) {
				by = append(by, s)
			}
		}
		slices.Sort(by)
		if len(by) == 0 {
			t.Errorf("no scenario uses %s: remove it, or add the scenario that needs it", p)
			by = []string{"**unused**"}
		}
		if len(by) > 3 {
			by = append(by[:3], fmt.Sprintf("and %d more", len(by)-3))
		}
		fmt.Fprintf(&table, "| %s | %s |\n", p, strings.Join(by, ", "))
	}
	t.Logf("%d requests of %s; rules and their uses:\n%s", ours, harness.InstallUser, table.String())
}

// failures are the lines of a verbose test run that say what failed (the failed
// scenarios' own messages, without their logs of flagpole's JSON lines).
func failures(out []byte) string {
	var b strings.Builder
	for line := range strings.SplitSeq(string(out), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "{") || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- PASS") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// permission is one verb on one resource of one rule bound to the ServiceAccount.
type permission struct {
	binding   string // Role or ClusterRole name
	namespace string // "" for a ClusterRole
	group     string
	resource  string // resource or resource/subresource
	verb      string
	names     []string
}

func (p permission) String() string {
	g := p.group
	if g == "" {
		g = "core"
	}
	s := fmt.Sprintf("`%s` %s %s", p.verb, g, p.resource)
	if len(p.names) > 0 {
		s += " " + strings.Join(p.names, ",")
	}
	if p.namespace != "" {
		s += " (in " + p.namespace + ")"
	}
	return s + " [" + p.binding + "]"
}

// matches: e is a request of the install's ServiceAccount this permission allowed.
func (p permission) matches(e harness.AuditEvent) bool {
	if e.User.Username != harness.InstallUser || e.Stage != "ResponseComplete" || e.ObjectRef == nil {
		return false
	}
	code := 0
	if e.ResponseStatus != nil {
		code = e.ResponseStatus.Code
	}
	// bind on a ClusterRole is checked, without an audit event of its own, when a
	// binding to it is written: the operator writes one ClusterRoleBinding, the
	// flagd-proxy's, whose roleRef is the only ClusterRole it may bind.
	if p.verb == "bind" && p.resource == "clusterroles" {
		return e.ObjectRef.Resource == "clusterrolebindings" && (e.Verb == "create" || e.Verb == "patch" && code == 201) && !e.Forbidden()
	}
	// A server-side apply that creates its object (201) is authorized as a patch and
	// as a create; the audit event says patch.
	if e.Verb != p.verb && (p.verb != "create" || e.Verb != "patch" || code != 201) {
		return false
	}
	if e.Forbidden() {
		return false
	}
	r := e.ObjectRef.Resource
	if e.ObjectRef.Subresource != "" {
		r += "/" + e.ObjectRef.Subresource
	}
	if r != p.resource || e.ObjectRef.APIGroup != p.group {
		return false
	}
	if p.namespace != "" && e.ObjectRef.Namespace != p.namespace {
		return false
	}
	return len(p.names) == 0 || slices.Contains(p.names, e.ObjectRef.Name)
}

// scenarioOf names the scenario behind a request: the test that made its
// namespace; the install's namespace, its webhook configurations and the
// flagd-proxy's binding are TestInstalledOperator's; another cluster-wide request
// (an informer's list or watch) is every scenario's.
func scenarioOf(e harness.AuditEvent, namespaces map[string]string) string {
	switch ns := e.ObjectRef.Namespace; {
	case ns == harness.InstallNamespace, strings.HasSuffix(e.ObjectRef.Resource, "webhookconfigurations"),
		e.ObjectRef.Resource == "clusterrolebindings":
		return "TestInstalledOperator"
	case ns == "":
		return "informers (all)"
	case namespaces[ns] != "":
		return namespaces[ns]
	default:
		return "namespace " + ns
	}
}

// boundRules expands the rules of the Roles and ClusterRoles that the stream binds
// to the ServiceAccount namespace/name into permissions.
func boundRules(stream []byte, namespace, name string) ([]permission, error) {
	objs, err := harness.Objects(stream)
	if err != nil {
		return nil, err
	}
	isSubject := func(subjects []rbacv1.Subject) bool {
		return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Namespace == namespace && s.Name == name
		})
	}
	roles := map[string][]rbacv1.PolicyRule{} // "Kind ns/name"
	var bound []string
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole", "Role":
			var r rbacv1.Role // same rules field
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			roles[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
				return nil, fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
			}
			if !isSubject(b.Subjects) {
				continue
			}
			ns := o.GetNamespace()
			if b.RoleRef.Kind == "ClusterRole" {
				ns = ""
			}
			if o.GetKind() == "RoleBinding" && b.RoleRef.Kind == "ClusterRole" {
				return nil, fmt.Errorf("RoleBinding %s/%s binds a ClusterRole: not expected in the install", o.GetNamespace(), o.GetName())
			}
			bound = append(bound, b.RoleRef.Kind+" "+ns+"/"+b.RoleRef.Name)
		}
	}
	if len(bound) == 0 {
		return nil, fmt.Errorf("nothing is bound to ServiceAccount %s/%s", namespace, name)
	}
	return expand(bound, roles)
}

// expand turns the rules of the bound roles ("Kind ns/name") into permissions.
func expand(bound []string, roles map[string][]rbacv1.PolicyRule) ([]permission, error) {
	var out []permission
	for _, key := range bound {
		rules, ok := roles[key]
		if !ok {
			return nil, fmt.Errorf("%s is bound but not in the install", key)
		}
		kind, ref, _ := strings.Cut(key, " ")
		ns, roleName, _ := strings.Cut(ref, "/")
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				return nil, fmt.Errorf("%s %s: nonResourceURLs are not expected", kind, roleName)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						out = append(out, permission{binding: kind + " " + roleName, namespace: ns, group: g, resource: res, verb: v, names: r.ResourceNames})
					}
				}
			}
		}
	}
	return out, nil
}

// installWebhooks are the install's webhook configurations (deploy/base/webhooks.yaml).
var installWebhooks = map[string]string{
	"MutatingWebhookConfiguration":   "flagpole-mutating-webhook",
	"ValidatingWebhookConfiguration": "flagpole-validating-webhook",
}

// TestInstalledOperator runs `flagpole operator` as the install does, with a token
// of its ServiceAccount, in its namespace, with the self-managed certificate and
// leader election: it writes its TLS Secret, puts its CA into the install's two
// webhook configurations (pointed here at the process), takes the Lease; then the
// install's webhooks inject and validate in a namespace of this test, the leader
// reconciles a Flagd, and a graceful stop releases the Lease. Only in
// TestInstallRBAC's child run.
func TestInstalledOperator(t *testing.T) {
	if os.Getenv(harness.InstallManifestsEnv) == "" || suite.OperatorKubeconfig == "" {
		t.Skip("runs in TestInstallRBAC's child run (the install applied, flagpole on its ServiceAccount)")
	}
	c := suite.Cluster
	ctx := t.Context()
	installHTTPRouteCRD(t, c)
	// Unusable TLS Secrets left behind (the webhook's, the flagd-proxy's — which the
	// operators of the scenarios before this one may have issued): the operator
	// replaces their contents.
	secrets := c.Kube.CoreV1().Secrets(harness.InstallNamespace)
	for _, name := range []string{"flagpole-webhook-tls", "flagd-proxy-tls"} {
		junk := map[string][]byte{"tls.crt": []byte("not a certificate"), "tls.key": []byte("not a key")}
		_, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: harness.InstallNamespace},
			Type: corev1.SecretTypeTLS, Data: junk}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var live *corev1.Secret
			if live, err = secrets.Get(ctx, name, metav1.GetOptions{}); err == nil {
				live.Data = junk
				_, err = secrets.Update(ctx, live, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	p, addrs, err := harness.StartFlagpole(ctx, suite.Janitor, suite.Flagpole, suite.TempDir(t), nil, []string{"management", "webhook"},
		"operator", "--kubeconfig", suite.OperatorKubeconfig, "--namespace", harness.InstallNamespace,
		"--health-probe-bind-address", "127.0.0.1:0", "--webhook-bind-address", "127.0.0.1", "--webhook-port", "0",
		"--cert-extra-hosts", "127.0.0.1", "--sidecar-image", sidecarImage,
		"--flagd-proxy-replicas", "2", // minAvailable 1: a PodDisruptionBudget edit below makes the apply unmergeable
		"--leader-election-lease-duration", "4s", "--leader-election-renew-deadline", "3s", "--leader-election-retry-period", "500ms")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = p.Stop(15 * time.Second)
		}
		if t.Failed() {
			t.Logf("flagpole operator log (last lines):\n%s", p.Tail(80))
		}
	})

	installedWebhooks(t, c, addrs["webhook"])
	ns := installedAdmission(t, c)
	// The leader reconciles a Flagd: its children are created (server-side apply),
	// its HTTPRoute too (the Gateway API's CRD, a stand-in, installed above), edited
	// and removed; a Deployment edited into one the apply cannot merge is replaced.
	lease := func() string {
		l, err := c.Kube.CoordinationV1().Leases(harness.InstallNamespace).Get(ctx, "flagpole.openfeature.dev", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	waitFor(t, "the Lease held", func() (bool, error) { return lease() != "", nil })
	installedFlagd(t, c, ns)
	installedEvents(t, c, ns)
	installedRollouts(t, c, ns)
	installedProxy(t, c, ns)

	// A graceful stop releases the Lease.
	stopped = true
	if err := p.Stop(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Errorf("flagpole operator exited with %v after SIGTERM", err)
	}
	if h := lease(); h != "" {
		t.Errorf("the Lease is still held by %q after a graceful stop", h)
	}
}

// installedWebhooks waits for the operator's CA in the install's webhook
// configurations and its TLS Secret, then points the configurations at addr.
func installedWebhooks(t *testing.T, c *harness.Cluster, addr string) {
	t.Helper()
	ctx := t.Context()
	// The CA in both configurations; then they point at this process.
	waitFor(t, "the caBundle of the install's webhook configurations", func() (bool, error) {
		m, err := c.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, installWebhooks["MutatingWebhookConfiguration"], metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		v, err := c.Kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, installWebhooks["ValidatingWebhookConfiguration"], metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, h := range v.Webhooks {
			if len(h.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return len(m.Webhooks) > 0 && len(m.Webhooks[0].ClientConfig.CABundle) > 0, nil
	})
	if s, err := c.Kube.CoreV1().Secrets(harness.InstallNamespace).Get(ctx, "flagpole-webhook-tls", metav1.GetOptions{}); err != nil || !strings.HasPrefix(string(s.Data["tls.crt"]), "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("the operator's TLS Secret was not replaced: %v", err)
	}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{harness.InstallNamespaceLabel: "true"}}
	for kind, name := range installWebhooks {
		if err := harness.ConfineWebhooks(ctx, c, kind, name, sel, "https://"+addr); err != nil {
			t.Fatal(err)
		}
	}

}

// installedAdmission: validation and injection by the install's webhooks in a
// namespace of the test (returned) with a FeatureFlag and FeatureFlagSource.
func installedAdmission(t *testing.T, c *harness.Cluster) string {
	t.Helper()
	ctx := t.Context()
	ns := harness.Namespace(t, c, "installed")
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:"true"}}}`, harness.InstallNamespaceLabel)
	if _, err := c.Kube.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	// Validation by the install's webhook (retried until the API server sees the label).
	bad := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"f": {State: "ENABLED", Variants: []byte(`{"on":true}`), DefaultVariant: "blue"}}}}}
	waitFor(t, "the install's validating webhook refuses an invalid FeatureFlag", func() (bool, error) {
		_, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, bad, metav1.CreateOptions{})
		if err == nil {
			_ = c.Flags.CoreV1beta1().FeatureFlags(ns).Delete(ctx, "bad", metav1.DeleteOptions{})
			return false, fmt.Errorf("admitted")
		}
		return strings.Contains(err.Error(), "defaultVariant"), err
	})
	if _, err := c.Kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "checkout"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: flagSpec("checkout")}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "flags"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Injection by the install's mutating webhook.
	env := &webhookEnv{c: c, ns: ns}
	pod, err := c.Kube.CoreV1().Pods(ns).Create(ctx, env.pod("web-a", rpc("flags")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Image != sidecarImage {
		t.Fatalf("not injected by the install's webhook: init containers %v", pod.Spec.InitContainers)
	}

	// A pod naming an InProcessConfiguration the webhook's cache does not hold: one
	// live read, then a denial naming it.
	_, err = c.Kube.CoreV1().Pods(ns).Create(ctx, env.pod("web-b", map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationInProcess: "missing"}), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a pod naming a missing InProcessConfiguration: %v", err)
	}
	return ns
}

// installedFlagd: the leader deploys a Flagd with Ingress and HTTPRoute, edits and
// removes the route, replaces an unmergeable Deployment.
func installedFlagd(t *testing.T, c *harness.Cluster, ns string) {
	t.Helper()
	ctx := t.Context()
	parent := []v1beta1.ParentReference{{Name: "gateway"}}
	f := &v1beta1.Flagd{ObjectMeta: metav1.ObjectMeta{Name: "shared"}, Spec: v1beta1.FlagdSpec{FeatureFlagSource: "flags",
		Ingress:          &v1beta1.IngressSpec{Enabled: true, Hosts: []string{"flags.example.com"}},
		GatewayAPIRoutes: &v1beta1.GatewayAPISpec{Enabled: true, Hosts: []string{"flags.example.com"}, ParentRefs: parent}}}
	if _, err := c.Flags.CoreV1beta1().Flagds(ns).Create(ctx, f, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	routes := dyn.Resource(httpRoutes).Namespace(ns)
	waitFor(t, "the Flagd's Deployment, Ingress and HTTPRoute", func() (bool, error) {
		if _, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "shared", metav1.GetOptions{}); err != nil {
			return false, err
		}
		if _, err := c.Kube.NetworkingV1().Ingresses(ns).Get(ctx, "shared", metav1.GetOptions{}); err != nil {
			return false, err
		}
		_, err := routes.Get(ctx, "shared", metav1.GetOptions{})
		return err == nil, err
	})
	editFlagd := func(edit func(*v1beta1.FlagdSpec)) {
		t.Helper()
		// the controller writes the status meanwhile: read again on a conflict
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			got, err := c.Flags.CoreV1beta1().Flagds(ns).Get(ctx, "shared", metav1.GetOptions{})
			if err != nil {
				return err
			}
			edit(&got.Spec)
			_, err = c.Flags.CoreV1beta1().Flagds(ns).Update(ctx, got, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	editFlagd(func(s *v1beta1.FlagdSpec) { s.GatewayAPIRoutes.Hosts = []string{"flags.example.org"} })
	waitFor(t, "the HTTPRoute updated", func() (bool, error) {
		r, err := routes.Get(ctx, "shared", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		hosts, _, _ := unstructured.NestedStringSlice(r.Object, "spec", "hostnames")
		return slices.Contains(hosts, "flags.example.org"), nil
	})
	editFlagd(func(s *v1beta1.FlagdSpec) { s.GatewayAPIRoutes.Enabled = false })
	waitFor(t, "the HTTPRoute removed", func() (bool, error) {
		_, err := routes.Get(ctx, "shared", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "shared", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unmergeable := `[{"op":"replace","path":"/spec/template/spec/containers/0/ports/0/containerPort","value":9999}]`
	if _, err := c.Kube.AppsV1().Deployments(ns).Patch(ctx, "shared", types.JSONPatchType, []byte(unmergeable), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unmergeable Deployment replaced", func() (bool, error) {
		nd, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && nd.UID != d.UID, err
	})
}

// installedEvents: a recurring Warning Event is counted (patched).
func installedEvents(t *testing.T, c *harness.Cluster, ns string) {
	t.Helper()
	ctx := t.Context()
	// A Warning Event that recurs is counted (a patch of the Event): the Flagd's
	// source goes missing, appears, goes missing again.
	lonely := &v1beta1.Flagd{ObjectMeta: metav1.ObjectMeta{Name: "lonely"}, Spec: v1beta1.FlagdSpec{FeatureFlagSource: "later"}}
	if _, err := c.Flags.CoreV1beta1().Flagds(ns).Create(ctx, lonely, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	warnings := func() int32 {
		list, err := c.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=lonely,type=Warning"})
		if err != nil {
			return 0
		}
		var n int32
		for _, ev := range list.Items {
			n = max(n, ev.Count)
		}
		return n
	}
	waitFor(t, "a Warning Event about the missing source", func() (bool, error) { return warnings() >= 1, nil })
	later := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "later"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Flagd with its source", func() (bool, error) {
		_, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "lonely", metav1.GetOptions{})
		return err == nil, err
	})
	if err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Delete(ctx, "later", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Warning Event counted twice", func() (bool, error) { return warnings() >= 2, nil })
}

// installedRollouts: rolloutOnChange restarts a StatefulSet and a DaemonSet.
func installedRollouts(t *testing.T, c *harness.Cluster, ns string) {
	t.Helper()
	ctx := t.Context()
	// rolloutOnChange restarts StatefulSets and DaemonSets too.
	yes := true
	rolling := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "rolling"}, Spec: v1beta1.FeatureFlagSourceSpec{
		RolloutOnChange: &yes, Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, rolling, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "rolled"}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: rpc("rolling")},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "rolled"}, Spec: appsv1.StatefulSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}
	if _, err := c.Kube.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "rolled"}, Spec: appsv1.DaemonSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}
	if _, err := c.Kube.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	observed := func(want int64) func() (bool, error) {
		return func() (bool, error) {
			got, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Get(ctx, "rolling", metav1.GetOptions{})
			return err == nil && got.Status.ObservedGeneration == want, err
		}
	}
	waitFor(t, "the rolling source seen", observed(1))
	change := []byte(`{"spec":{"contextValues":{"env":"prod"}}}`)
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Patch(ctx, "rolling", types.MergePatchType, change, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	const restartedAt = "kubectl.kubernetes.io/restartedAt"
	waitFor(t, "the StatefulSet and the DaemonSet restarted", func() (bool, error) {
		s, err := c.Kube.AppsV1().StatefulSets(ns).Get(ctx, "rolled", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		d, err := c.Kube.AppsV1().DaemonSets(ns).Get(ctx, "rolled", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return s.Spec.Template.Annotations[restartedAt] != "" && d.Spec.Template.Annotations[restartedAt] != "", nil
	})
}

// installedProxy: the operator deploys the flagd-proxy as installed.
func installedProxy(t *testing.T, c *harness.Cluster, ns string) {
	t.Helper()
	ctx := t.Context()
	// The flagd-proxy: a source of provider flagd-proxy makes the operator deploy it
	// into its namespace and bind the proxy's ClusterRole to it (bind, not holding
	// its rules); an unmergeable PodDisruptionBudget is replaced, a drifted binding
	// restored.
	proxied := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "proxied"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "flagd-proxy"}}}}
	if _, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Create(ctx, proxied, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ops := harness.InstallNamespace
	bindingName := "flagpole-flagd-proxy." + ops
	waitFor(t, "the flagd-proxy deployed", func() (bool, error) {
		if _, err := c.Kube.CoreV1().ServiceAccounts(ops).Get(ctx, "flagd-proxy", metav1.GetOptions{}); err != nil {
			return false, err
		}
		if _, err := c.Kube.RbacV1().ClusterRoleBindings().Get(ctx, bindingName, metav1.GetOptions{}); err != nil {
			return false, err
		}
		if _, err := c.Kube.AppsV1().Deployments(ops).Get(ctx, "flagd-proxy", metav1.GetOptions{}); err != nil {
			return false, err
		}
		if _, err := c.Kube.CoreV1().Services(ops).Get(ctx, "flagd-proxy-svc", metav1.GetOptions{}); err != nil {
			return false, err
		}
		// its certificate, issued by the operator with the install's rules (the junk
		// Secret replaced)
		if sec, err := c.Kube.CoreV1().Secrets(ops).Get(ctx, "flagd-proxy-tls", metav1.GetOptions{}); err != nil || !strings.HasPrefix(string(sec.Data["tls.crt"]), "-----BEGIN CERTIFICATE-----") {
			return false, fmt.Errorf("the flagd-proxy's TLS Secret: %w", err)
		}
		_, err := c.Kube.PolicyV1().PodDisruptionBudgets(ops).Get(ctx, "flagd-proxy-pdb", metav1.GetOptions{})
		return err == nil, err
	})
	pdb, err := c.Kube.PolicyV1().PodDisruptionBudgets(ops).Get(ctx, "flagd-proxy-pdb", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	swap := `[{"op":"remove","path":"/spec/minAvailable"},{"op":"add","path":"/spec/maxUnavailable","value":1}]`
	if _, err := c.Kube.PolicyV1().PodDisruptionBudgets(ops).Patch(ctx, "flagd-proxy-pdb", types.JSONPatchType, []byte(swap), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the unmergeable PodDisruptionBudget replaced", func() (bool, error) {
		np, err := c.Kube.PolicyV1().PodDisruptionBudgets(ops).Get(ctx, "flagd-proxy-pdb", metav1.GetOptions{})
		return err == nil && np.UID != pdb.UID && np.Spec.MinAvailable != nil, err
	})
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		crb, err := c.Kube.RbacV1().ClusterRoleBindings().Get(ctx, bindingName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		crb.Subjects = append(crb.Subjects, rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: "web"})
		_, err = c.Kube.RbacV1().ClusterRoleBindings().Update(ctx, crb, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flagd-proxy's binding restored", func() (bool, error) {
		b, err := c.Kube.RbacV1().ClusterRoleBindings().Get(ctx, bindingName, metav1.GetOptions{})
		return err == nil && len(b.Subjects) == 1 && b.Subjects[0].Name == "flagd-proxy", err
	})
}

// httpRoutes is the Gateway API's HTTPRoute resource.
var httpRoutes = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}

// installHTTPRouteCRD installs a stand-in for the Gateway API's HTTPRoute CRD (the
// group, version and names; any content) until the test ends.
func installHTTPRouteCRD(t *testing.T, c *harness.Cluster) {
	t.Helper()
	ctx := t.Context()
	preserve := true
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "httproutes.gateway.networking.k8s.io",
			Annotations: map[string]string{"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/1538"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: httpRoutes.Group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "httproutes", Singular: "httproute", Kind: "HTTPRoute", ListKind: "HTTPRouteList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve}}}},
		},
	}
	crds := c.Extensions.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = crds.Delete(context.Background(), crd.Name, metav1.DeleteOptions{}) })
	if err := c.WaitCRDEstablished(ctx, crd.Name); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateFromOFO follows docs/migrate-from-ofo.md on a control plane of its
// own: the OpenFeature Operator's CRDs (e2e/testdata/ofo, OFO's shapes) and objects
// made under them; then flagpole's CRDs applied server-side over them, as
// `kubectl apply --server-side -f install.yaml` does. The objects are still served,
// unchanged (flags, targeting, metadata, the defaults OFO's CRDs stored), and
// flagpole's reconcilers write their statuses and deploy the Flagd.
func TestMigrateFromOFO(t *testing.T) {
	c := suite.EmptyPrivateCluster(t)
	ctx := t.Context()
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join("testdata", "ofo", name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if _, err := c.ApplyManifests(ctx, read("crds.yaml"), "helm", false); err != nil {
		t.Fatal(err)
	}
	ns := harness.Namespace(t, c, "ofo")
	objs, err := harness.Objects(read("objects.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for _, o := range objs {
		o.SetNamespace(ns)
		js, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		stream = append(append(stream, js...), "\n---\n"...)
	}
	if _, err := c.ApplyManifests(ctx, stream, "helm", false); err != nil {
		t.Fatalf("OFO's objects under OFO's CRDs: %v", err)
	}
	before, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// flagpole's CRDs over OFO's.
	var crds []byte
	files, _ := filepath.Glob(filepath.Join(suite.RepoRoot, "crd", "manifests", "*.yaml"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crds = append(append(crds, data...), "\n---\n"...)
	}
	if len(files) != 4 {
		t.Fatalf("%d CRDs in crd/manifests", len(files))
	}
	if _, err := c.ApplyManifests(ctx, crds, "kubectl", false); err != nil {
		t.Fatalf("flagpole's CRDs over OFO's: %v", err)
	}
	crd, err := c.Extensions.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, "featureflags.core.openfeature.dev", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"].Properties["conditions"]; !ok {
		t.Fatal("the FeatureFlag CRD is not flagpole's after the apply (no status.conditions)")
	}

	// Still served, unchanged.
	after, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Get(ctx, "checkout", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the FeatureFlag under flagpole's CRD: %v", err)
	}
	if diff := cmp.Diff(before.Spec, after.Spec); diff != "" {
		t.Errorf("the FeatureFlag changed (-before +after):\n%s", diff)
	}
	if len(after.Spec.FlagSpec.Flags) != 2 || len(after.Spec.FlagSpec.Flags["new-checkout"].Targeting) == 0 {
		t.Errorf("flags %v", after.Spec.FlagSpec.Flags)
	}
	ffs, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Get(ctx, "flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ffs.Spec.Port != 8013 || ffs.Spec.ManagementPort != 8014 || ffs.Spec.EnvVarPrefix != "FLAGD" {
		t.Errorf("the FeatureFlagSource lost OFO's stored defaults: port %d, management %d, prefix %q", ffs.Spec.Port, ffs.Spec.ManagementPort, ffs.Spec.EnvVarPrefix)
	}
	if _, err := c.Flags.CoreV1beta1().InProcessConfigurations(ns).Get(ctx, "inproc", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}

	// flagpole's reconcilers take over: statuses and the Flagd's Deployment.
	suite.StartOperator(t, c, suite.TempDir(t), "controller", "--sidecar-image", sidecarImage, "--leader-elect=false")
	waitFor(t, "the FeatureFlag's status", func() (bool, error) {
		got, err := c.Flags.CoreV1beta1().FeatureFlags(ns).Get(ctx, "checkout", metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation && len(got.Status.Conditions) > 0, err
	})
	waitFor(t, "the FeatureFlagSource's status", func() (bool, error) {
		got, err := c.Flags.CoreV1beta1().FeatureFlagSources(ns).Get(ctx, "flags", metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation, err
	})
	waitFor(t, "the Flagd's Deployment and status", func() (bool, error) {
		if _, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "shared", metav1.GetOptions{}); err != nil {
			return false, err
		}
		got, err := c.Flags.CoreV1beta1().Flagds(ns).Get(ctx, "shared", metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration == got.Generation, err
	})
}
