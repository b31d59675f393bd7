package webhook

import (
	"net/netip"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// ValidateFlagd returns the AdmitFunc of Flagds: featureFlagSource is the name of a
// FeatureFlagSource in the Flagd's own namespace; the Deployment, Service, Ingress
// and HTTPRoute the controller derives from the Flagd must be accepted by the API
// server (a valid service account name and service type, Ingress hosts, paths, TLS
// and annotations as Ingress validation wants them, Gateway API hostnames and parent
// references), and the three Ingress paths must differ. Warned: an HTTPRoute
// attached to a Gateway in another namespace (the Gateway must allow it).
func ValidateFlagd() AdmitFunc {
	return validator[v1beta1.Flagd](KindFlagd, true, func(r *report, f *v1beta1.Flagd, namespace string, _ []byte) {
		checkFlagd(r, &f.Spec, namespace)
	})
}

// Ingress path defaults (the CRD's).
const (
	defaultFlagdPath = "/flagd.evaluation.v1.Service"
	defaultOFREPPath = "/ofrep"
	defaultSyncPath  = "/flagd.sync.v1.Service"
)

func checkFlagd(r *report, s *v1beta1.FlagdSpec, namespace string) {
	switch src := s.FeatureFlagSource; {
	case src == "":
		r.problemf("spec.featureFlagSource", "is required: the name of a FeatureFlagSource in this namespace")
	case strings.Contains(src, "/"):
		r.problemf("spec.featureFlagSource", "%q: a Flagd uses a FeatureFlagSource of its own namespace; give the name alone, without namespace/", src)
	default:
		dnsSubdomain(r, "spec.featureFlagSource", src)
	}
	if s.Replicas != nil && *s.Replicas < 0 {
		r.problemf("spec.replicas", "must not be negative, got %d", *s.Replicas)
	}
	switch s.ServiceType {
	case "", "ClusterIP", "NodePort", "LoadBalancer":
	case "ExternalName":
		r.problemf("spec.serviceType", "an ExternalName Service cannot route to the flagd pods: use ClusterIP, NodePort or LoadBalancer")
	default:
		r.problemf("spec.serviceType", "must be ClusterIP, NodePort or LoadBalancer, got %q", s.ServiceType)
	}
	if s.ServiceAccountName != "" {
		dnsSubdomain(r, "spec.serviceAccountName", s.ServiceAccountName)
	}
	if in := s.Ingress; in != nil {
		ingress(r, "spec.ingress", in)
	}
	if g := s.GatewayAPIRoutes; g != nil {
		gatewayRoutes(r, "spec.gatewayApiRoutes", g, namespace)
	}
}

// dnsSubdomain records a problem when name is not a DNS subdomain (an object name).
func dnsSubdomain(r *report, path, name string) {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		r.problemf(path, "%q: %s", name, strings.Join(errs, "; "))
	}
}

// annotations records a problem for each key the API server refuses on an object.
func annotations(r *report, path string, m map[string]string) {
	for _, k := range sortedKeys(m) {
		if errs := validation.IsQualifiedName(strings.ToLower(k)); len(errs) > 0 {
			r.problemf(eval.Key(path, k), "not a valid annotation key: %s", strings.Join(errs, "; "))
		}
	}
}

// Path sequences Ingress validation refuses in Exact and Prefix paths.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

func ingress(r *report, p string, in *v1beta1.IngressSpec) {
	if len(in.Hosts) == 0 {
		r.problemf(p+".hosts", "is required: one rule per host (\"\" for any host)")
	}
	seen := map[string]int{}
	for i, h := range in.Hosts {
		hp := eval.Index(p+".hosts", i)
		if j, dup := seen[h]; dup {
			r.warnf(hp, "repeats %s", eval.Index(p+".hosts", j))
		}
		seen[h] = i
		if h != "" {
			ingressHost(r, hp, h)
		}
	}
	pathType := string(in.PathType)
	switch pathType {
	case "":
		pathType = "Prefix"
	case "Exact", "Prefix", "ImplementationSpecific":
	default:
		r.problemf(p+".pathType", "must be Exact, Prefix or ImplementationSpecific, got %q", pathType)
	}
	paths := []namedPath{
		{p + ".flagdPath", orDefault(in.FlagdPath, defaultFlagdPath)},
		{p + ".ofrepPath", orDefault(in.OFREPPath, defaultOFREPPath)},
		{p + ".syncPath", orDefault(in.SyncPath, defaultSyncPath)},
	}
	for i, path := range paths {
		ingressPath(r, path.field, path.value, pathType)
		for _, q := range paths[:i] {
			if q.value == path.value {
				r.problemf(path.field, "%q is also %s: each service needs its own path", path.value, q.field)
			}
		}
	}
	for i, t := range in.TLS {
		tp := eval.Index(p+".tls", i)
		for j, h := range t.Hosts {
			ingressHost(r, eval.Index(tp+".hosts", j), h)
		}
		if t.SecretName != "" {
			dnsSubdomain(r, tp+".secretName", t.SecretName)
		}
	}
	if in.IngressClassName != nil && *in.IngressClassName != "" {
		dnsSubdomain(r, p+".ingressClassName", *in.IngressClassName)
	}
	annotations(r, p+".annotations", in.Annotations)
}

type namedPath struct{ field, value string }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// ingressHost checks an Ingress rule or TLS host: a DNS name, possibly with a
// leading "*." wildcard, not an IP address.
func ingressHost(r *report, path, h string) {
	if _, err := netip.ParseAddr(h); err == nil {
		r.problemf(path, "%q: must be a DNS name, not an IP address (Ingress)", h)
		return
	}
	check := validation.IsDNS1123Subdomain
	if strings.HasPrefix(h, "*.") {
		check = validation.IsWildcardDNS1123Subdomain
	}
	if errs := check(h); len(errs) > 0 {
		r.problemf(path, "%q: %s", h, strings.Join(errs, "; "))
	}
}

// ingressPath checks a path as Ingress validation does.
func ingressPath(r *report, field, path, pathType string) {
	if !strings.HasPrefix(path, "/") {
		r.problemf(field, "%q: must start with /", path)
		return
	}
	if pathType == "ImplementationSpecific" {
		return
	}
	for _, s := range invalidPathSequences {
		if strings.Contains(path, s) {
			r.problemf(field, "%q: a %s path must not contain %q (the Ingress would be refused; pathType ImplementationSpecific allows it)", path, pathType, s)
			return
		}
	}
	for _, s := range invalidPathSuffixes {
		if strings.HasSuffix(path, s) {
			r.problemf(field, "%q: a %s path must not end with %q (the Ingress would be refused)", path, pathType, s)
			return
		}
	}
}

// gatewayHostname is the Gateway API's Hostname pattern (a DNS name, optionally with
// a leading "*." label).
var gatewayHostname = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// gatewayKind is the Gateway API's Kind pattern.
var gatewayKind = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)

func gatewayRoutes(r *report, p string, g *v1beta1.GatewayAPISpec, namespace string) {
	for i, h := range g.Hosts {
		hp := eval.Index(p+".hosts", i)
		switch _, ipErr := netip.ParseAddr(h); {
		case h == "":
			r.problemf(hp, "must not be empty (leave hosts out to match every host)")
		case ipErr == nil:
			r.problemf(hp, "%q: must be a DNS name, not an IP address (Gateway API)", h)
		case len(h) > 253 || !gatewayHostname.MatchString(h):
			r.problemf(hp, "%q is not a Gateway API hostname: a lowercase DNS name, optionally starting with *.", h)
		}
	}
	if len(g.ParentRefs) == 0 {
		r.problemf(p+".parentRefs", "is required: the Gateways the HTTPRoute attaches to")
	}
	for i, ref := range g.ParentRefs {
		rp := eval.Index(p+".parentRefs", i)
		if ref.Name == "" {
			r.problemf(rp+".name", "is required")
		}
		if ref.Kind != nil && !gatewayKind.MatchString(*ref.Kind) {
			r.problemf(rp+".kind", "%q is not a kind name", *ref.Kind)
		}
		if ref.SectionName != nil && *ref.SectionName != "" {
			dnsSubdomain(r, rp+".sectionName", *ref.SectionName)
		}
		if ref.Port != nil && (*ref.Port < 1 || *ref.Port > 65535) {
			r.problemf(rp+".port", "must be from 1 to 65535, got %d", *ref.Port)
		}
		if ref.Namespace != nil && *ref.Namespace != "" {
			ns := *ref.Namespace
			if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
				r.problemf(rp+".namespace", "%q: %s", ns, strings.Join(errs, "; "))
			} else if ns != namespace && ref.Name != "" {
				r.warnf(rp+".namespace", "the parent %s/%s is in another namespace: it accepts this HTTPRoute only if its listeners' allowedRoutes admit routes from namespace %q (the Gateway API default admits the Gateway's own namespace only)", ns, ref.Name, namespace)
			}
		}
	}
	annotations(r, p+".annotations", g.Annotations)
}
