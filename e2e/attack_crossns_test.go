package e2e

// Attack tests, written from the attacker's side: each asserts that the attack
// fails with a clear error that names what is wrong and echoes nothing of another
// namespace. The attacker is a pod creator in namespace A (the webhookEnv's
// namespace, ServiceAccount "web"); the victim is namespace B with a FeatureFlag
// "secret" whose document holds victimMarker, and a FeatureFlagSource "src" naming
// it. Attacks that need a running pod (a sidecar's localhost binding, file-source
// symlinks in a mounted ConfigMap) are the kind suite's.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/e2e/harness"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
)

// victimMarker is in the victim's flag document; no answer to the attacker may
// hold it.
const victimMarker = "victim-data-51c9"

// attackEnv is the attacker's namespace (with the webhook) and the victim's.
type attackEnv struct {
	*webhookEnv
	victim string
}

// startAttack starts the webhook for the attacker's namespace and prepares the
// victim's: FeatureFlag "secret" (its variants hold victimMarker) and
// FeatureFlagSource "src" naming it.
func startAttack(t *testing.T) *attackEnv {
	t.Helper()
	e := &attackEnv{webhookEnv: startWebhook(t), victim: harness.Namespace(t, suite.Cluster, "victim")}
	ctx := t.Context()
	ff := &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Name: "secret"}, Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{
		Flags: map[string]v1beta1.Flag{"launch": {State: "ENABLED", Variants: json.RawMessage(`{"code":"` + victimMarker + `","off":""}`), DefaultVariant: "code"}}}}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlags(e.victim).Create(ctx, ff, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	src := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "src"},
		Spec: v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{{Source: "secret", Provider: "kubernetes"}}}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.victim).Create(ctx, src, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return e
}

// createSource creates a FeatureFlagSource in the attacker's namespace; the API
// server's refusal (the CRD's schema) is returned, not fatal.
func (e *attackEnv) createSource(t *testing.T, name string, sources ...v1beta1.Source) error {
	t.Helper()
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: sources}}
	_, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(t.Context(), ffs, metav1.CreateOptions{})
	return err
}

// denied creates an annotated pod in the attacker's namespace and requires the
// webhook's denial containing want; it returns the denial's text.
func (e *attackEnv) denied(t *testing.T, name string, annotations map[string]string, want string) string {
	t.Helper()
	_, err := e.c.Kube.CoreV1().Pods(e.ns).Create(t.Context(), e.pod(name, annotations), metav1.CreateOptions{})
	if err == nil {
		t.Fatalf("pod %s admitted, want the webhook's denial containing %q", name, want)
	}
	msg := err.Error()
	if !strings.Contains(msg, `admission webhook "mutate.openfeature.dev" denied the request`) || !strings.Contains(msg, want) {
		t.Fatalf("error %q, want the webhook's denial containing %q", msg, want)
	}
	if strings.Contains(msg, victimMarker) {
		t.Fatalf("the denial leaks the victim's flag document: %q", msg)
	}
	return msg
}

// crossNamespaceRefusal is the webhook's refusal of a kind's object victim/name
// for a pod of namespace ns.
func crossNamespaceRefusal(kind, victim, name, ns string) string {
	return fmt.Sprintf("%s %s/%s is in another namespace than the pod (%s): cross-namespace references are refused", kind, victim, name, ns)
}

// noVictimGrant requires that nothing of the victim's was handed to the attacker:
// no RoleBinding in the victim's namespace, no ConfigMap in the attacker's holding
// the victim's document.
func (e *attackEnv) noVictimGrant(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	bindings, err := e.c.Kube.RbacV1().RoleBindings(e.victim).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings.Items {
		t.Errorf("RoleBinding %s/%s in the victim's namespace: %v", b.Namespace, b.Name, b.Subjects)
	}
	cms, err := e.c.Kube.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		for k, v := range cm.Data {
			if strings.Contains(v, victimMarker) {
				t.Errorf("ConfigMap %s key %s in the attacker's namespace holds the victim's flags", cm.Name, k)
			}
		}
	}
}

// TestAttackCrossNamespaceRead: a pod creator in A tries to read B's FeatureFlag
// through every reference the webhook follows: the annotation naming B's
// FeatureFlagSource, a kubernetes, file or flagd-proxy source "B/secret" in their
// own FeatureFlagSource, file sources written as paths, and http sources to the API
// server and the metadata address. Each is refused naming the reference; a missing
// object of B gets the same answer as an existing one (no existence oracle); nothing
// is granted or copied. (The flagd-proxy itself refuses other namespaces' flags and
// file: selectors: TestFlagdProxyServesSidecars/refusals.)
func TestAttackCrossNamespaceRead(t *testing.T) {
	e := startAttack(t)
	B, A := e.victim, e.ns

	t.Run("annotation naming B's FeatureFlagSource", func(t *testing.T) {
		got := e.denied(t, "x-annotation", rpc(B+"/src"), crossNamespaceRefusal("FeatureFlagSource", B, "src", A))
		ghost := e.denied(t, "x-annotation-ghost", rpc(B+"/ghost"), crossNamespaceRefusal("FeatureFlagSource", B, "ghost", A))
		if strings.ReplaceAll(got, "/src ", "/ghost ") != ghost {
			t.Errorf("an existing and a missing FeatureFlagSource of B are told apart:\n%s\n%s", got, ghost)
		}
	})
	for _, provider := range []string{"kubernetes", "file", "flagd-proxy"} {
		t.Run(provider+" source B/secret", func(t *testing.T) {
			if err := e.createSource(t, "steal-"+provider, v1beta1.Source{Source: B + "/secret", Provider: provider}); err != nil {
				t.Fatal(err)
			}
			if err := e.createSource(t, "ghost-"+provider, v1beta1.Source{Source: B + "/ghost", Provider: provider}); err != nil {
				t.Fatal(err)
			}
			got := e.denied(t, "x-"+provider, rpc("steal-"+provider), crossNamespaceRefusal("FeatureFlag", B, "secret", A))
			ghost := e.denied(t, "x-ghost-"+provider, rpc("ghost-"+provider), crossNamespaceRefusal("FeatureFlag", B, "ghost", A))
			if want := strings.ReplaceAll(strings.ReplaceAll(got, "steal-", "ghost-"), "/secret ", "/ghost "); want != ghost {
				t.Errorf("an existing and a missing FeatureFlag of B are told apart:\n%s\n%s", got, ghost)
			}
		})
	}
	// File sources are FeatureFlag names, never paths: the sidecar only ever reads
	// the ConfigMap the webhook mounts (so no symlink of the attacker's is followed).
	for i, path := range []string{"../" + B + "/secret", "/etc/passwd", "/var/run/secrets/kubernetes.io/serviceaccount/token",
		"checkout/../../" + B + "/secret", "file:" + B + "/secret", B + "/secret/.."} {
		t.Run("file source path "+path, func(t *testing.T) { e.fileSourcePath(t, fmt.Sprintf("path-%d", i), path) })
	}
	// http sources to the API server or the metadata address are admitted: the
	// sidecar runs in the pod's own network namespace, so it reaches nothing the
	// app container does not reach already; it sends no credential of the pod (no
	// ServiceAccount token, no Secret unless the source names a bearer token of its
	// own), verifies https with the system roots only, and never quotes what it
	// fetched: TestAttackHTTPSourceToAPIServer, TestAttackHTTPSourceReflection.
	for name, uri := range map[string]string{
		"metadata":  "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"apiserver": "https://kubernetes.default.svc/apis/core.openfeature.dev/v1beta1/namespaces/" + B + "/featureflags/secret",
	} {
		t.Run("http source to "+name, func(t *testing.T) {
			if err := e.createSource(t, name, v1beta1.Source{Source: uri, Provider: "http"}); err != nil {
				t.Fatal(err)
			}
			pod, err := e.c.Kube.CoreV1().Pods(A).Create(t.Context(), e.pod("x-"+name, rpc(name)), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			noCredentials(t, pod)
		})
	}
	e.noVictimGrant(t)
}

// fileSourcePath tries a FeatureFlagSource (named name) whose file source is path:
// refused by the schema, or else by the webhook naming the source.
func (e *attackEnv) fileSourcePath(t *testing.T, name, path string) {
	t.Helper()
	if err := e.createSource(t, name, v1beta1.Source{Source: path, Provider: "file"}); err != nil {
		if !apierrors.IsInvalid(err) {
			t.Fatalf("creating the FeatureFlagSource: %v", err)
		}
		t.Logf("refused by the API server (schema): %v", err)
		return
	}
	e.denied(t, "x-"+name, rpc(name), fmt.Sprintf("FeatureFlagSource %s/%s spec.sources[0]: source %q", e.ns, name, path))
}

// noCredentials requires that the sidecar of pod gets no ServiceAccount token
// mount and nothing from a Secret or another object through its environment.
func noCredentials(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		for _, m := range c.VolumeMounts {
			if strings.Contains(m.MountPath, "serviceaccount") {
				t.Errorf("the sidecar mounts %s", m.MountPath)
			}
		}
		for _, v := range c.Env {
			if v.ValueFrom != nil {
				t.Errorf("the sidecar gets %s from %v for an http source without a token", v.Name, v.ValueFrom)
			}
		}
	}
}

// TestAttackGrantWidening: a pod creator tries to make the webhook grant their
// ServiceAccount more than the FeatureFlags their sources name: a source naming
// another namespace's flag next to their own (refused whole: not even their own
// flag is granted), names that look like wildcards or lists, and many sources. The
// Role always lists exactly the referenced flags of the pod's namespace. (A grant
// outliving its flag: TestGrantsRemoved.)
func TestAttackGrantWidening(t *testing.T) {
	e := startAttack(t)
	ctx := t.Context()
	grant := sidecar.GrantName(sidecar.Ref{Namespace: e.ns, Name: "web"})

	if err := e.createSource(t, "mixed", v1beta1.Source{Source: "checkout", Provider: "kubernetes"},
		v1beta1.Source{Source: e.victim + "/secret", Provider: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	e.denied(t, "mixed", rpc("mixed"), crossNamespaceRefusal("FeatureFlag", e.victim, "secret", e.ns))
	if _, err := e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, grant, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused pod left a grant: %v", err)
	}

	for i, name := range []string{"*", "checkout,search", "checkout search", ".", "..", "Checkout", "checkout\n", "ch\u0435ckout" /* Cyrillic e */} {
		src := fmt.Sprintf("wild-%d", i)
		if err := e.createSource(t, src, v1beta1.Source{Source: name, Provider: "kubernetes"}); err != nil {
			t.Logf("source %q refused by the API server (schema): %v", name, err)
			continue
		}
		_, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod(src, rpc(src)), metav1.CreateOptions{})
		if err == nil {
			t.Errorf("source %q admitted", name)
			continue
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("FeatureFlagSource %s/%s spec.sources[0]: source %q", e.ns, src, name)) {
			t.Errorf("source %q: %v, want a denial naming the source", name, err)
		}
	}

	many := make([]v1beta1.Source, 0, 40)
	for range 40 {
		many = append(many, v1beta1.Source{Source: "checkout", Provider: "kubernetes"})
	}
	if err := e.createSource(t, "many", many...); err != nil {
		t.Logf("40 sources refused by the API server (schema): %v", err)
		many = many[:2]
		if err := e.createSource(t, "many", many...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("many", rpc("many")), metav1.CreateOptions{}); err != nil {
		t.Logf("many sources naming one flag refused: %v", err)
	}
	if err := e.createSource(t, "own", v1beta1.Source{Source: "checkout", Provider: "kubernetes"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("own", rpc("own")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role, err := e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, grant, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 || !cmp.Equal(role.Rules[0].ResourceNames, []string{"checkout"}) {
		t.Errorf("the grant lists %v, want exactly [checkout]", role.Rules)
	}
	e.noVictimGrant(t)
}

// TestAttackForgedAdmissionReview: an attacker who reaches the webhook's port posts
// AdmissionReviews of their own (the webhook cannot tell the API server from
// anyone else without client certificates: residual risk, see the report) and
// replays one. What limits the harm: the webhook only answers and writes what a
// pod creator of that namespace would get by creating the pod (grants of its own
// namespace's referenced flags to one of its ServiceAccounts, never across
// namespaces), nothing on dry-run, a replay changes nothing, and an answer holds
// no credential (bearer tokens stay in Secrets). What remains (the answer shows a
// FeatureFlagSource's rendered sidecar; grants can be made for any namespace's
// ServiceAccounts, also in namespaces the webhook configuration does not select)
// is logged as residual risk: it needs the webhook's port closed to anything but
// the API server, or client certificates.
func TestAttackForgedAdmissionReview(t *testing.T) {
	e := startAttack(t)
	ctx := t.Context()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.hook.CABundle)
	p := &reviewPoster{url: "https://" + e.hook.Address + webhook.PathMutatePod,
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}}
	post := p.post

	t.Run("cross-namespace stays refused", func(t *testing.T) {
		r := post(t, e.ns, e.pod("forged-x", rpc(e.victim+"/src")), false, "forged-1")
		if r.Allowed || r.Result == nil || !strings.Contains(r.Result.Message, crossNamespaceRefusal("FeatureFlagSource", e.victim, "src", e.ns)) {
			t.Errorf("forged cross-namespace review: %+v", r)
		}
		e.noVictimGrant(t)
	})
	t.Run("dry run writes nothing", func(t *testing.T) {
		e.source(t, "own", v1beta1.Source{Source: "checkout", Provider: "kubernetes"})
		r := post(t, e.ns, e.pod("forged-dry", rpc("own")), true, "forged-2")
		if !r.Allowed {
			t.Fatalf("denied: %+v", r.Result)
		}
		if _, err := e.c.Kube.RbacV1().Roles(e.ns).Get(ctx, sidecar.GrantName(sidecar.Ref{Namespace: e.ns, Name: "web"}), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a dry-run review wrote a grant: %v", err)
		}
	})
	t.Run("an answer carries no credential of another namespace", func(t *testing.T) {
		// The answer is the pod patch: it shows the FeatureFlagSource's rendered
		// sources to whoever can post a review (residual risk), but a bearer token
		// only as the name of the Secret the webhook keeps it in.
		const victimToken = "victim-bearer-6ad2"
		ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "tokened"}, Spec: v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{
			{Source: "https://flags.example.com/f.json", Provider: "http", HTTPSyncBearerToken: victimToken}}}}
		if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.victim).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Kube.CoreV1().ServiceAccounts(e.victim).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := post(t, e.victim, e.pod("forged-token", rpc("tokened")), true, "forged-4")
		if !r.Allowed {
			t.Fatalf("denied: %+v", r.Result)
		}
		if strings.Contains(string(r.Patch), victimToken) {
			t.Errorf("the answer holds B's bearer token")
		}
		t.Logf("RESIDUAL RISK: a direct POST reads the rendered sidecar of B's FeatureFlagSource (%d bytes of patch): source URLs, context values, envVars", len(r.Patch))
	})
	t.Run("a review for the victim's namespace grants only what its pod creators get", func(t *testing.T) {
		// The webhook configuration selects only A; a direct POST bypasses that.
		// "intruder" is a ServiceAccount of B whose token the attacker holds, but
		// that B's owner never let read the flag.
		if _, err := e.c.Kube.CoreV1().ServiceAccounts(e.victim).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "intruder"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := e.pod("forged-b", rpc("src"))
		pod.Spec.ServiceAccountName = "intruder"
		r := post(t, e.victim, pod, false, "forged-3")
		if !r.Allowed {
			t.Fatalf("refused: %+v", r.Result)
		}
		grant := sidecar.GrantName(sidecar.Ref{Namespace: e.victim, Name: "intruder"})
		role, err := e.c.Kube.RbacV1().Roles(e.victim).Get(ctx, grant, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(role.Rules) != 1 || !cmp.Equal(role.Rules[0].ResourceNames, []string{"secret"}) {
			t.Errorf("the forged review's grant lists %v, want only the flag B's FeatureFlagSource names", role.Rules)
		}
		binding, err := e.c.Kube.RbacV1().RoleBindings(e.victim).Get(ctx, grant, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"ServiceAccount " + e.victim + "/intruder"}, subjects(binding.Subjects)); diff != "" {
			t.Errorf("subjects (-want +got):\n%s", diff)
		}
		t.Logf("RESIDUAL RISK: a direct POST to the webhook made it grant ServiceAccount %s/intruder read access to %s/secret (what creating that pod in %s would grant); the webhook does not authenticate its caller", e.victim, e.victim, e.victim)
		// Replay: the same review again changes nothing.
		before := role.ResourceVersion
		if r := post(t, e.victim, pod, false, "forged-3"); !r.Allowed {
			t.Errorf("replay: %+v", r.Result)
		}
		role, err = e.c.Kube.RbacV1().Roles(e.victim).Get(ctx, grant, metav1.GetOptions{})
		if err != nil || role.ResourceVersion != before {
			t.Errorf("a replay rewrote the grant (resourceVersion %s → %s, %v)", before, role.ResourceVersion, err)
		}
	})
}

// reviewPoster posts AdmissionReviews straight to the webhook, as an attacker on
// the network would (trusting its CA only to keep the test's TLS honest).
type reviewPoster struct {
	url    string
	client *http.Client
}

// post sends a CREATE review of pod in ns and returns the webhook's response; the
// answer may not hold the victim's flags and must echo uid.
func (p *reviewPoster) post(t *testing.T, ns string, pod *corev1.Pod, dryRun bool, uid string) *admissionv1.AdmissionResponse {
	t.Helper()
	pod.Namespace = ns
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: types.UID(uid), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"}, Namespace: ns, Name: pod.Name,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}, DryRun: &dryRun}}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		t.Fatalf("answer %d %s (%v)", resp.StatusCode, data, err)
	}
	if bytes.Contains(data, []byte(victimMarker)) {
		t.Errorf("the answer holds the victim's flags")
	}
	if string(out.Response.UID) != uid {
		t.Errorf("answer UID %q, want %q", out.Response.UID, uid)
	}
	return out.Response
}

// subjects renders RBAC subjects as "Kind namespace/name".
func subjects(s []rbacv1.Subject) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Kind + " " + x.Namespace + "/" + x.Name
	}
	return out
}
