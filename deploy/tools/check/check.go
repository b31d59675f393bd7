// Package check holds the schema and policy checks every rendering of the install
// must pass, kustomize's and Helm's alike: each object decodes strictly into its
// API type; the operator runs under the restricted Pod Security Standard without a
// fixed UID (OpenShift's restricted SCC); Services, the PodDisruptionBudget, the
// NetworkPolicy and the webhooks point at what exists; webhook configurations carry
// no caBundle; RBAC has no wildcard, reads no Secret but its own, and names the
// webhook configurations it may write.
package check

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/deploy/tools/render"
)

// Namespace and ServiceAccount of the operator; the flagd-proxy's ClusterRole and
// TLS Secret.
const (
	Namespace        = "flagpole-system"
	ServiceAccount   = "flagpole-operator"
	ProxyClusterRole = "flagpole-flagd-proxy"
	// ProxyTLSSecret holds the flagd-proxy's certificate (sidecar.FlagdProxyTLSSecret).
	ProxyTLSSecret = "flagd-proxy-tls" //nolint:gosec // G101: a Secret's name
)

// Object is one rendered object, decoded into its API type.
type Object struct {
	APIVersion, Kind, Namespace, Name string
	Typed                             any // *appsv1.Deployment, ...; nil for cert-manager's kinds
	JSON                              []byte
}

// ID is kind namespace/name.
func (o Object) ID() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

var kinds = map[string]func() any{
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

// untyped are kinds whose types this module does not link: cert-manager's.
var untyped = map[string]bool{"cert-manager.io/v1/Issuer": true, "cert-manager.io/v1/Certificate": true}

// Parse decodes every document of a YAML stream strictly (an unknown or misspelt
// field is an error, where a client-side apply would drop it silently).
func Parse(stream []byte) ([]Object, error) {
	var out []Object
	var errs []error
	for i, doc := range render.Documents(stream) {
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal(js, &head); err != nil {
			errs = append(errs, fmt.Errorf("document %d: %w", i+1, err))
			continue
		}
		o := Object{APIVersion: head.APIVersion, Kind: head.Kind, Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, JSON: js}
		key := head.APIVersion + "/" + head.Kind
		switch mk, ok := kinds[key]; {
		case ok:
			o.Typed = mk()
			if err := yaml.UnmarshalStrict(js, o.Typed); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", o.ID(), err))
				continue
			}
		case untyped[key]:
		default:
			errs = append(errs, fmt.Errorf("document %d: unexpected %s %s", i+1, key, head.Metadata.Name))
			continue
		}
		if o.Name == "" {
			errs = append(errs, fmt.Errorf("document %d (%s): no metadata.name", i+1, key))
		}
		out = append(out, o)
	}
	return out, errors.Join(errs...)
}

// Options say which variant of the install is checked.
type Options struct {
	// Namespace is the operator's namespace (default flagpole-system).
	Namespace string
	// NoNamespace: the install does not create its namespace.
	NoNamespace bool
	// CertManager: the webhook serves a cert-manager certificate (no self-managed
	// TLS rules, cainjector annotations).
	CertManager bool
	// CRDs are the expected CRD manifests (crd/manifests), by name.
	CRDs map[string]*apiextensionsv1.CustomResourceDefinition
}

var clusterScoped = map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true, "CustomResourceDefinition": true}

// Install runs every check on a rendered install and returns all failures.
func Install(objs []Object, o Options) error {
	if o.Namespace == "" {
		o.Namespace = Namespace
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	seen := map[string]bool{}
	byKind := map[string][]Object{}
	for _, obj := range objs {
		if seen[obj.ID()] {
			fail("%s appears twice", obj.ID())
		}
		seen[obj.ID()] = true
		byKind[obj.Kind] = append(byKind[obj.Kind], obj)
		switch {
		case clusterScoped[obj.Kind] && obj.Namespace != "":
			fail("%s: cluster-scoped, but has a namespace", obj.ID())
		case !clusterScoped[obj.Kind] && obj.Namespace != o.Namespace:
			fail("%s: want namespace %s", obj.ID(), o.Namespace)
		}
	}
	if o.NoNamespace != (len(byKind["Namespace"]) == 0) || len(byKind["Namespace"]) > 1 ||
		len(byKind["Namespace"]) == 1 && byKind["Namespace"][0].Name != o.Namespace {
		fail("want the Namespace %s (unless NoNamespace) and no other", o.Namespace)
	}
	errs = append(errs, crds(byKind["CustomResourceDefinition"], o.CRDs)...)
	pods := map[string]*corev1.PodTemplateSpec{}
	for _, d := range byKind["Deployment"] {
		dep := d.Typed.(*appsv1.Deployment)
		pods[d.Name] = &dep.Spec.Template
		errs = append(errs, deployment(d.Name, dep)...)
	}
	if len(pods) == 0 {
		fail("no Deployment")
	}
	selects := func(sel map[string]string) []string {
		var out []string
		for name, p := range pods {
			if len(sel) > 0 && labels.SelectorFromSet(sel).Matches(labels.Set(p.Labels)) {
				out = append(out, name)
			}
		}
		return out
	}
	portsOf := func(deps []string) []string {
		var out []string
		for _, d := range deps {
			for _, c := range pods[d].Spec.Containers {
				for _, p := range c.Ports {
					out = append(out, p.Name)
				}
			}
		}
		return out
	}
	services := map[string]*corev1.Service{}
	for _, s := range byKind["Service"] {
		svc := s.Typed.(*corev1.Service)
		services[s.Name] = svc
		deps := selects(svc.Spec.Selector)
		if len(deps) == 0 {
			fail("%s selects no Deployment's pods", s.ID())
		}
		for _, p := range svc.Spec.Ports {
			if p.TargetPort.StrVal != "" && !slices.Contains(portsOf(deps), p.TargetPort.StrVal) {
				fail("%s: targetPort %s is no container port of %v", s.ID(), p.TargetPort.StrVal, deps)
			}
		}
	}
	for _, p := range byKind["PodDisruptionBudget"] {
		pdb := p.Typed.(*policyv1.PodDisruptionBudget)
		deps := selects(pdb.Spec.Selector.MatchLabels)
		if len(deps) != 1 {
			fail("%s selects %v, want one Deployment's pods", p.ID(), deps)
		}
	}
	for _, n := range byKind["NetworkPolicy"] {
		np := n.Typed.(*networkingv1.NetworkPolicy)
		deps := selects(np.Spec.PodSelector.MatchLabels)
		if len(deps) == 0 {
			fail("%s selects no operator pods", n.ID())
		}
		for _, r := range np.Spec.Ingress {
			if len(r.From) == 0 {
				fail("%s: an ingress rule without from admits everyone", n.ID())
			}
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.StrVal != "" && !slices.Contains(portsOf(deps), p.Port.StrVal) {
					fail("%s: port %s is no container port", n.ID(), p.Port.StrVal)
				}
			}
		}
	}
	errs = append(errs, webhooks(byKind, services, o)...)
	errs = append(errs, rbac(byKind, o)...)
	return errors.Join(errs...)
}

// crds wants exactly the CRDs of crd/manifests, unchanged.
func crds(got []Object, want map[string]*apiextensionsv1.CustomResourceDefinition) []error {
	var errs []error
	names := map[string]bool{}
	for _, o := range got {
		names[o.Name] = true
		w, ok := want[o.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("unexpected CRD %s", o.Name))
			continue
		}
		if !reflect.DeepEqual(o.Typed.(*apiextensionsv1.CustomResourceDefinition).Spec, w.Spec) {
			errs = append(errs, fmt.Errorf("CRD %s differs from crd/manifests (make deploy-crds)", o.Name))
		}
	}
	for n := range want {
		if !names[n] {
			errs = append(errs, fmt.Errorf("CRD %s missing", n))
		}
	}
	return errs
}

// deployment checks the restricted profile, OpenShift's SCC, probes, resources
// and the sidecar image.
func deployment(name string, d *appsv1.Deployment) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("Deployment %s: "+format, append([]any{name}, args...)...))
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		fail("fewer than 2 replicas")
	}
	if !labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		fail("the selector does not select the pod template")
	}
	p := d.Spec.Template.Spec
	if p.ServiceAccountName != ServiceAccount {
		fail("serviceAccountName %q, want %s", p.ServiceAccountName, ServiceAccount)
	}
	psc := p.SecurityContext
	switch {
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		fail("pod securityContext.runAsNonRoot is not true")
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		fail("pod seccompProfile is not RuntimeDefault")
	case psc.RunAsUser != nil || psc.RunAsGroup != nil || psc.FSGroup != nil:
		fail("a fixed UID, GID or fsGroup: OpenShift's restricted SCC assigns its own (OFO #636)")
	}
	if len(p.TopologySpreadConstraints) == 0 {
		fail("no topologySpreadConstraints")
	}
	if p.HostNetwork || p.HostPID || p.HostIPC {
		fail("host namespaces")
	}
	for _, c := range p.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			fail("container %s: allowPrivilegeEscalation is not false", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			fail("container %s: the root file system is writable", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
			fail("container %s: capabilities are not exactly drop [ALL]", c.Name)
		case sc.RunAsUser != nil || sc.RunAsGroup != nil || sc.Privileged != nil && *sc.Privileged:
			fail("container %s: a fixed UID or GID, or privileged", c.Name)
		}
		if c.LivenessProbe == nil || c.ReadinessProbe == nil {
			fail("container %s: no liveness or readiness probe", c.Name)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			fail("container %s: requests (cpu, memory) and a memory limit are required", c.Name)
		}
		if c.Image == "" {
			fail("container %s: no image", c.Name)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["FLAGPOLE_IMAGE"] != c.Image {
			fail("container %s: FLAGPOLE_IMAGE %q is not the container's image %q", c.Name, env["FLAGPOLE_IMAGE"], c.Image)
		}
		if _, ok := env["FLAGPOLE_SIDECAR_IMAGE"]; !ok {
			fail("container %s: no FLAGPOLE_SIDECAR_IMAGE", c.Name)
		}
	}
	return errs
}

// webhooks checks both webhook configurations.
func webhooks(byKind map[string][]Object, services map[string]*corev1.Service, o Options) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	type hook struct {
		cc                admissionregistrationv1.WebhookClientConfig
		failurePolicy     *admissionregistrationv1.FailurePolicyType
		sideEffects       *admissionregistrationv1.SideEffectClass
		namespaceSelector string
	}
	check := func(obj Object, annotations map[string]string, hooks []hook) {
		if len(hooks) == 0 {
			fail("%s has no webhooks", obj.ID())
		}
		_, injected := annotations["cert-manager.io/inject-ca-from"]
		if injected != o.CertManager {
			fail("%s: cert-manager.io/inject-ca-from present %v, want %v", obj.ID(), injected, o.CertManager)
		}
		for _, h := range hooks {
			if len(h.cc.CABundle) > 0 {
				fail("%s carries a caBundle: every apply would reset the operator's", obj.ID())
			}
			if h.cc.Service == nil || h.cc.Service.Namespace != o.Namespace {
				fail("%s: clientConfig is not a Service in %s", obj.ID(), o.Namespace)
				continue
			}
			svc, ok := services[h.cc.Service.Name]
			if !ok {
				fail("%s: Service %s is not in the install", obj.ID(), h.cc.Service.Name)
			} else if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return h.cc.Service.Port != nil && p.Port == *h.cc.Service.Port }) {
				fail("%s: Service %s has no port %v", obj.ID(), h.cc.Service.Name, h.cc.Service.Port)
			}
			if h.failurePolicy == nil || h.sideEffects == nil {
				fail("%s: failurePolicy and sideEffects must be explicit", obj.ID())
			}
			if !strings.Contains(h.namespaceSelector, o.Namespace) && obj.Kind == "MutatingWebhookConfiguration" {
				fail("%s: the namespaceSelector does not exclude %s (the operator could not start while its webhook is down)", obj.ID(), o.Namespace)
			}
		}
	}
	for _, obj := range byKind["MutatingWebhookConfiguration"] {
		m := obj.Typed.(*admissionregistrationv1.MutatingWebhookConfiguration)
		var hs []hook
		for _, w := range m.Webhooks {
			sel, _ := yaml.Marshal(w.NamespaceSelector)
			hs = append(hs, hook{w.ClientConfig, w.FailurePolicy, w.SideEffects, string(sel)})
			for _, r := range w.Rules {
				if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) || !slices.Equal(r.Resources, []string{"pods"}) {
					fail("%s: %s must mutate pods on CREATE only (a pod spec is immutable)", obj.ID(), w.Name)
				}
			}
			if len(w.MatchConditions) == 0 {
				fail("%s: %s has no matchConditions: every pod would reach the webhook", obj.ID(), w.Name)
			}
		}
		check(obj, m.Annotations, hs)
	}
	for _, obj := range byKind["ValidatingWebhookConfiguration"] {
		v := obj.Typed.(*admissionregistrationv1.ValidatingWebhookConfiguration)
		var hs []hook
		for _, w := range v.Webhooks {
			sel, _ := yaml.Marshal(w.NamespaceSelector)
			hs = append(hs, hook{w.ClientConfig, w.FailurePolicy, w.SideEffects, string(sel)})
		}
		check(obj, v.Annotations, hs)
	}
	if len(byKind["MutatingWebhookConfiguration"]) != 1 {
		fail("want one MutatingWebhookConfiguration")
	}
	return errs
}

// rbac checks the roles and who they are bound to.
func rbac(byKind map[string][]Object, o Options) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	rules := map[string][]rbacv1.PolicyRule{} // "ClusterRole name" or "Role name"
	for _, r := range byKind["ClusterRole"] {
		rules["ClusterRole "+r.Name] = r.Typed.(*rbacv1.ClusterRole).Rules
	}
	for _, r := range byKind["Role"] {
		rules["Role "+r.Name] = r.Typed.(*rbacv1.Role).Rules
	}
	bound := map[string]bool{}
	bind := func(obj Object, ref rbacv1.RoleRef, subjects []rbacv1.Subject) {
		key := ref.Kind + " " + ref.Name
		if _, ok := rules[key]; !ok {
			fail("%s binds %s, which is not in the install", obj.ID(), key)
		}
		bound[key] = true
		if len(subjects) != 1 || subjects[0].Kind != "ServiceAccount" || subjects[0].Name != ServiceAccount || subjects[0].Namespace != o.Namespace {
			fail("%s: subjects %v, want only the ServiceAccount %s/%s", obj.ID(), subjects, o.Namespace, ServiceAccount)
		}
	}
	for _, b := range byKind["ClusterRoleBinding"] {
		crb := b.Typed.(*rbacv1.ClusterRoleBinding)
		bind(b, crb.RoleRef, crb.Subjects)
	}
	for _, b := range byKind["RoleBinding"] {
		rb := b.Typed.(*rbacv1.RoleBinding)
		bind(b, rb.RoleRef, rb.Subjects)
	}
	tls := false
	for _, key := range slices.Sorted(maps.Keys(rules)) {
		if !bound[key] && key != "ClusterRole "+ProxyClusterRole { // the operator binds the proxy's
			fail("%s is bound to nothing", key)
		}
		for _, r := range rules[key] {
			for _, field := range [][]string{r.APIGroups, r.Resources, r.Verbs, r.ResourceNames} {
				if slices.Contains(field, "*") {
					fail("%s: wildcard in %+v", key, r)
				}
			}
			// bind: only on the flagd-proxy's ClusterRole, which the operator binds to
			// the proxy's ServiceAccount without holding its rules.
			proxyBind := slices.Equal(r.Resources, []string{"clusterroles"}) && slices.Equal(r.Verbs, []string{"bind"}) &&
				slices.Equal(r.ResourceNames, []string{ProxyClusterRole})
			if slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "impersonate") || (slices.Contains(r.Verbs, "bind") && !proxyBind) {
				fail("%s: %v is never needed", key, r.Verbs)
			}
			for _, res := range r.Resources {
				switch res {
				case "secrets":
					reads := slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "create" })
					if reads && (len(r.ResourceNames) == 0 || !strings.HasPrefix(key, "Role ")) {
						fail("%s: %v on secrets beyond create, without resourceNames in its own namespace: the operator reads no Secret but its TLS Secrets", key, r.Verbs)
					}
					// the webhook's own TLS Secret (the flagd-proxy's, flagd-proxy-tls, is
					// self-managed with cert-manager too)
					if reads && !slices.Equal(r.ResourceNames, []string{ProxyTLSSecret}) {
						tls = true
					}
				case "mutatingwebhookconfigurations", "validatingwebhookconfigurations":
					if len(r.ResourceNames) == 0 {
						fail("%s: %s without resourceNames: the operator may write only its own", key, res)
					}
				case "clusterroles":
					if !proxyBind {
						fail("%s: clusterroles beyond bind on %s", key, ProxyClusterRole)
					}
				case "clusterrolebindings":
					if want := ProxyClusterRole + "." + o.Namespace; !slices.Equal(r.ResourceNames, []string{want}) {
						fail("%s: clusterrolebindings other than the flagd-proxy's %s", key, want)
					}
				case "pods", "nodes":
					fail("%s: %s are none of the operator's business", key, res)
				}
			}
		}
	}
	if tls == o.CertManager {
		fail("rules for the self-managed TLS Secret present %v with cert-manager %v", tls, o.CertManager)
	}
	return errs
}

// Equivalent reports where two renderings of the default install differ in what
// the cluster runs: the set of objects, RBAC rules and bindings, webhooks,
// Services, the PodDisruptionBudget, the NetworkPolicy and, of each Deployment,
// everything but labels, arguments and environment (Helm passes the chart's values
// explicitly where kustomize relies on the flags' defaults).
func Equivalent(a, b []Object) error {
	var errs []error
	index := func(objs []Object) map[string]Object {
		m := map[string]Object{}
		for _, o := range objs {
			m[o.ID()] = o
		}
		return m
	}
	ia, ib := index(a), index(b)
	for _, id := range slices.Sorted(maps.Keys(ia)) {
		if _, ok := ib[id]; !ok {
			errs = append(errs, fmt.Errorf("%s only in the first", id))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(ib)) {
		x, ok := ia[id]
		if !ok {
			errs = append(errs, fmt.Errorf("%s only in the second", id))
			continue
		}
		if d := diff(comparable(x), comparable(ib[id])); d != "" {
			errs = append(errs, fmt.Errorf("%s differs: %s", id, d))
		}
	}
	return errors.Join(errs...)
}

// comparable is the part of an object Equivalent compares.
func comparable(o Object) any {
	switch t := o.Typed.(type) {
	case *rbacv1.ClusterRole:
		return t.Rules
	case *rbacv1.Role:
		return t.Rules
	case *rbacv1.ClusterRoleBinding:
		return []any{t.RoleRef, t.Subjects}
	case *rbacv1.RoleBinding:
		return []any{t.RoleRef, t.Subjects}
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		return t.Webhooks
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		return t.Webhooks
	case *corev1.Service:
		return t.Spec
	case *policyv1.PodDisruptionBudget:
		return t.Spec
	case *networkingv1.NetworkPolicy:
		return t.Spec
	case *apiextensionsv1.CustomResourceDefinition:
		return t.Spec
	case *appsv1.Deployment:
		d := t.DeepCopy()
		for i := range d.Spec.Template.Spec.Containers {
			d.Spec.Template.Spec.Containers[i].Args = nil
			d.Spec.Template.Spec.Containers[i].Env = nil
		}
		d.Spec.Template.Labels = nil
		return d.Spec
	default:
		return nil
	}
}

func diff(a, b any) string {
	if reflect.DeepEqual(a, b) {
		return ""
	}
	x, _ := yaml.Marshal(a)
	y, _ := yaml.Marshal(b)
	return fmt.Sprintf("\n--- first\n%s\n--- second\n%s", x, y)
}
