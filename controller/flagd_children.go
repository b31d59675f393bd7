package controller

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// Labels on every object the controllers create.
const (
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedBy      = "flagpole"
)

// flagdPorts are the ports of a standalone flagd: the same numbers in its args,
// container ports, probes and Service (OFO takes args and probes from the
// FeatureFlagSource but container and Service ports from the operator's
// environment, so they can disagree).
type flagdPorts struct {
	Evaluation, Management, Sync, OFREP int32
}

// childLabels are OFO's labels of a Flagd's children, managed by flagpole.
func childLabels(f *v1beta1.Flagd) map[string]string {
	return map[string]string{"app": f.Name, "app.kubernetes.io/name": f.Name, labelManagedBy: managedBy}
}

// ownerRef makes f the controlling owner of a child, so the child is collected with
// it and its changes are traced back to it.
func ownerRef(f *v1beta1.Flagd) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "Flagd", Name: f.Name, UID: f.UID,
		Controller: &yes, BlockOwnerDeletion: &yes}}
}

// flagdService renders the Service of a Flagd: evaluation (gRPC), OFREP (HTTP),
// sync (gRPC) and management (HTTP) ports, with appProtocol, as OFO (#797). Unlike
// OFO it does not copy the Flagd's annotations (kubectl's last-applied
// configuration among them).
func flagdService(f *v1beta1.Flagd, p flagdPorts) *corev1.Service {
	grpc, http := "grpc", "http"
	port := func(name string, n int32, proto *string) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Port: n, TargetPort: intstr.FromInt32(n), Protocol: corev1.ProtocolTCP, AppProtocol: proto}
	}
	svcType := f.Spec.ServiceType
	if svcType == "" {
		svcType = corev1.ServiceTypeClusterIP
	}
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Name, Labels: childLabels(f), OwnerReferences: ownerRef(f)},
		Spec: corev1.ServiceSpec{
			Type:     svcType,
			Selector: map[string]string{"app": f.Name},
			Ports: []corev1.ServicePort{
				port("flagd", p.Evaluation, &grpc), port("ofrep", p.OFREP, &http),
				port("sync", p.Sync, &grpc), port("metrics", p.Management, &http),
			},
		},
	}
}

// flagdIngress renders the Ingress of a Flagd (OFO §4.3): one rule per host, three
// paths (evaluation, OFREP, sync) to the Service's ports.
func flagdIngress(f *v1beta1.Flagd, p flagdPorts) *networkingv1.Ingress {
	in := f.Spec.Ingress
	pathType := in.PathType
	if pathType == "" {
		pathType = networkingv1.PathTypePrefix
	}
	path := func(p, def string) string {
		if p == "" {
			return def
		}
		return p
	}
	backend := func(port int32) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: f.Name, Port: networkingv1.ServiceBackendPort{Number: port}}}
	}
	paths := []networkingv1.HTTPIngressPath{
		{Path: path(in.FlagdPath, "/flagd.evaluation.v1.Service"), PathType: &pathType, Backend: backend(p.Evaluation)},
		{Path: path(in.OFREPPath, "/ofrep"), PathType: &pathType, Backend: backend(p.OFREP)},
		{Path: path(in.SyncPath, "/flagd.sync.v1.Service"), PathType: &pathType, Backend: backend(p.Sync)},
	}
	var rules []networkingv1.IngressRule
	for _, host := range in.Hosts {
		rules = append(rules, networkingv1.IngressRule{Host: host,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}})
	}
	return &networkingv1.Ingress{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"},
		ObjectMeta: metav1.ObjectMeta{Namespace: f.Namespace, Name: f.Name, Labels: childLabels(f), Annotations: in.Annotations,
			OwnerReferences: ownerRef(f)},
		Spec: networkingv1.IngressSpec{IngressClassName: in.IngressClassName, TLS: in.TLS, Rules: rules},
	}
}

// flagdHTTPRoute renders the Gateway API HTTPRoute of a Flagd (OFO §4.3): three
// PathPrefix rules (OFREP, evaluation, sync) to the Service. It is unstructured:
// the Gateway API types are not a dependency, and the CRD may not be installed.
func flagdHTTPRoute(f *v1beta1.Flagd, p flagdPorts) *unstructured.Unstructured {
	gw := f.Spec.GatewayAPIRoutes
	var parents []any
	for _, ref := range gw.ParentRefs {
		m := map[string]any{"name": ref.Name}
		for k, v := range map[string]*string{"group": ref.Group, "kind": ref.Kind, "namespace": ref.Namespace, "sectionName": ref.SectionName} {
			if v != nil {
				m[k] = *v
			}
		}
		if ref.Port != nil {
			m["port"] = int64(*ref.Port)
		}
		parents = append(parents, m)
	}
	rule := func(prefix string, port int32) any {
		return map[string]any{
			"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": prefix}}},
			"backendRefs": []any{map[string]any{"kind": "Service", "name": f.Name, "namespace": f.Namespace, "port": int64(port)}},
		}
	}
	spec := map[string]any{
		"parentRefs": parents,
		"rules":      []any{rule("/ofrep", p.OFREP), rule("/flagd.evaluation.v1.Service", p.Evaluation), rule("/flagd.sync.v1.Service", p.Sync)},
	}
	if len(gw.Hosts) > 0 {
		hosts := make([]any, len(gw.Hosts))
		for i, h := range gw.Hosts {
			hosts[i] = h
		}
		spec["hostnames"] = hosts
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "spec": spec}}
	u.SetNamespace(f.Namespace)
	u.SetName(f.Name)
	u.SetLabels(childLabels(f))
	if len(gw.Annotations) > 0 {
		u.SetAnnotations(gw.Annotations)
	}
	u.SetOwnerReferences(ownerRef(f))
	return u
}
