// Package deploy_test checks the install manifests of deploy/ against the code
// they configure: the webhook configurations are the ones webhook.Registration
// renders, the CRDs are crd/manifests, and every name the RBAC restricts by
// resourceNames is the default of the operator flag that names that object. The
// rendering and policy checks of kustomize and Helm output live in deploy/tools
// (a module of its own); the RBAC's minimality is proven by e2e/install_test.go.
package deploy_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/controller"
	"github.com/flagpole-dev/flagpole/modes"
	"github.com/flagpole-dev/flagpole/proxy"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
)

// documents splits a YAML file into its documents as JSON.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		d, err := r.Read()
		if err != nil {
			break
		}
		js, err := yaml.YAMLToJSON(d)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if string(bytes.TrimSpace(js)) != "null" {
			out = append(out, js)
		}
	}
	return out
}

// flagDefault is the default of a kong flag field of a modes flag group.
func flagDefault(t *testing.T, group any, field string) string {
	t.Helper()
	f, ok := reflect.TypeOf(group).FieldByName(field)
	if !ok {
		t.Fatalf("%T has no field %s", group, field)
	}
	return f.Tag.Get("default")
}

func TestWebhookConfigurationsAreRegistrations(t *testing.T) {
	docs := documents(t, "base/webhooks.yaml")
	if len(docs) != 2 {
		t.Fatalf("base/webhooks.yaml: %d documents, want 2", len(docs))
	}
	var gotM admissionregistrationv1.MutatingWebhookConfiguration
	var gotV admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(docs[0], &gotM); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(docs[1], &gotV); err != nil {
		t.Fatal(err)
	}
	ns := flagDefault(t, modes.KubeFlags{}, "Namespace")
	wantM, wantV := webhook.Registration{
		MutatingName: flagDefault(t, modes.WebhookFlags{}, "MutatingName"), ValidatingName: flagDefault(t, modes.WebhookFlags{}, "ValidatingName"),
		ServiceNamespace: ns, ServiceName: flagDefault(t, modes.WebhookFlags{}, "ServiceName"), ServicePort: 443,
		ExcludeNamespaces: []string{"kube-system", ns}, Validation: true}.Configurations()
	if d := cmp.Diff(wantM, &gotM); d != "" {
		t.Errorf("base/webhooks.yaml MutatingWebhookConfiguration differs from webhook.Registration (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantV, &gotV); d != "" {
		t.Errorf("base/webhooks.yaml ValidatingWebhookConfiguration differs from webhook.Registration (-want +got):\n%s", d)
	}
	for _, w := range gotM.Webhooks {
		if len(w.ClientConfig.CABundle) != 0 {
			t.Errorf("%s carries a caBundle: every apply would reset the operator's", w.Name)
		}
	}
}

func TestCRDsAreTheGeneratedOnes(t *testing.T) {
	want, err := filepath.Glob("../crd/manifests/*.yaml")
	if err != nil || len(want) != 4 {
		t.Fatalf("crd/manifests: %v %v", want, err)
	}
	for _, dir := range []string{"base/crds", "chart/flagpole/crds"} {
		got, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if len(got) != len(want) {
			t.Errorf("%s holds %d CRDs, crd/manifests %d: run make deploy-crds", dir, len(got), len(want))
		}
		for _, w := range want {
			a, _ := os.ReadFile(w)
			b, err := os.ReadFile(filepath.Join(dir, filepath.Base(w)))
			if err != nil || !bytes.Equal(a, b) {
				t.Errorf("%s differs from %s: run make deploy-crds", filepath.Join(dir, filepath.Base(w)), w)
			}
		}
	}
}

// TestRBACNamesAreFlagDefaults: a resourceNames entry that is not the name the
// operator uses would deny it at run time.
func TestRBACNamesAreFlagDefaults(t *testing.T) {
	names := map[string][]string{
		// the webhook's TLS Secret (a flag) and the flagd-proxy's (a fixed name)
		"secrets":                         {flagDefault(t, modes.WebhookFlags{}, "TLSSecret"), sidecar.FlagdProxyTLSSecret},
		"leases":                          {flagDefault(t, modes.ControllerFlags{}, "LeaderElectionID")},
		"mutatingwebhookconfigurations":   {flagDefault(t, modes.WebhookFlags{}, "MutatingName")},
		"validatingwebhookconfigurations": {flagDefault(t, modes.WebhookFlags{}, "ValidatingName")},
		// the flagd-proxy's: fixed names
		"clusterroles":         {proxy.ClusterRoleName},
		"clusterrolebindings":  {controller.FlagdProxyBindingName(flagDefault(t, modes.KubeFlags{}, "Namespace"))},
		"poddisruptionbudgets": {sidecar.FlagdProxyPDB},
	}
	seen := map[string]bool{}
	for _, js := range documents(t, "base/rbac.yaml") {
		var obj struct {
			Kind     string
			Metadata struct{ Namespace string }
			Rules    []rbacv1.PolicyRule
		}
		if err := yaml.Unmarshal(js, &obj); err != nil {
			t.Fatal(err)
		}
		if obj.Kind == "Role" && obj.Metadata.Namespace != flagDefault(t, modes.KubeFlags{}, "Namespace") {
			t.Errorf("a Role in %q, want the operator's namespace", obj.Metadata.Namespace)
		}
		for _, r := range obj.Rules {
			if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
				t.Errorf("wildcard rule %+v", r)
			}
			for _, res := range r.Resources {
				for _, n := range r.ResourceNames {
					if want, ok := names[res]; ok {
						seen[res] = true
						if !slices.Contains(want, n) {
							t.Errorf("rule on %s names %q, the operator uses %q", res, n, want)
						}
					} else {
						t.Errorf("rule on %s restricted to %q: no flag default to check it against", res, n)
					}
				}
			}
		}
	}
	for res := range names {
		if !seen[res] {
			t.Errorf("no rule restricts %s by name", res)
		}
	}
}

// TestProxyClusterRoleIsTheProxys: the install's copy of the flagd-proxy's
// ClusterRole has the rules of proxy/rbac.yaml (kustomize loads no file outside
// deploy/).
func TestProxyClusterRoleIsTheProxys(t *testing.T) {
	var want, got rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(proxy.ClusterRoleYAML, &want); err != nil {
		t.Fatal(err)
	}
	docs := documents(t, "base/flagd-proxy-rbac.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents in base/flagd-proxy-rbac.yaml", len(docs))
	}
	if err := yaml.UnmarshalStrict(docs[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.Name != want.Name {
		t.Errorf("name %q, want %q", got.Name, want.Name)
	}
	if diff := cmp.Diff(want.Rules, got.Rules); diff != "" {
		t.Errorf("rules differ from proxy/rbac.yaml (-proxy +deploy):\n%s", diff)
	}
}

// typed are the kinds deploy/ ships, by apiVersion/kind.
var typed = map[string]func() any{
	"v1/Namespace":                                                   func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                                              func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                                                     func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                                             func() any { return &appsv1.Deployment{} },
	"policy/v1/PodDisruptionBudget":                                  func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":                             func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":                       func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding":                func() any { return &rbacv1.ClusterRoleBinding{} },
	"rbac.authorization.k8s.io/v1/Role":                              func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding":                       func() any { return &rbacv1.RoleBinding{} },
	"admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":   func() any { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
	"admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration": func() any { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
	"apiextensions.k8s.io/v1/CustomResourceDefinition":               func() any { return &apiextensionsv1.CustomResourceDefinition{} },
}

// TestManifestsDecodeStrictly: every object of deploy/ (but kustomizations,
// patches and cert-manager's kinds) decodes into its API type without an unknown
// field: a misspelt field would be dropped silently by a client-side apply.
func TestManifestsDecodeStrictly(t *testing.T) {
	files, _ := filepath.Glob("base/*.yaml")
	more, _ := filepath.Glob("overlays/*/*.yaml")
	files = append(files, more...)
	n := 0
	for _, f := range files {
		switch filepath.Base(f) {
		case "kustomization.yaml", "mount-certificate.yaml", "certificate.yaml":
			continue
		}
		for i, js := range documents(t, f) {
			var tm struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(js, &tm); err != nil {
				t.Fatal(err)
			}
			mk, ok := typed[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				t.Errorf("%s document %d: unexpected %s %s", f, i+1, tm.APIVersion, tm.Kind)
				continue
			}
			if err := yaml.UnmarshalStrict(js, mk()); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, tm.Kind, err)
			}
			n++
		}
	}
	if n < 15 {
		t.Errorf("only %d objects checked", n)
	}
}
