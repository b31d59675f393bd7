package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Flagd is a standalone flagd deployment: the operator runs it as a Deployment with
// a Service, and optionally exposes it through an Ingress or a Gateway API HTTPRoute.
// Its flags and settings come from a FeatureFlagSource in the same namespace.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=flagds,singular=flagd,categories=openfeature
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`,description="Desired number of flagd pods"
// +kubebuilder:printcolumn:name="Available",type=integer,JSONPath=`.status.readyReplicas`,description="flagd pods ready to serve"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,description="Whether the deployment is available"
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why the Ready condition has its status"
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.status.address`,priority=1,description="Where clients reach the evaluation API"
// +kubebuilder:printcolumn:name="Source",type=string,JSONPath=`.spec.featureFlagSource`,priority=1,description="The FeatureFlagSource it serves"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Flagd struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired deployment.
	// +required
	Spec FlagdSpec `json:"spec"`

	// status is the state observed by the operator.
	// +optional
	Status FlagdStatus `json:"status,omitempty"`
}

// FlagdSpec is the desired state of a Flagd.
type FlagdSpec struct {
	// replicas is the number of flagd pods.
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	Replicas *int32 `json:"replicas,omitempty"`

	// serviceType is the type of the Service in front of the pods.
	// +optional
	// +kubebuilder:default=ClusterIP
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	ServiceType corev1.ServiceType `json:"serviceType,omitempty"`

	// serviceAccountName is the service account of the pods; unset, the namespace's
	// default service account.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	ServiceAccountName string `json:"serviceAccountName,omitempty"`

	// featureFlagSource is the name of the FeatureFlagSource, in the same namespace,
	// that configures flagd.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	FeatureFlagSource string `json:"featureFlagSource"`

	// ingress exposes flagd through an Ingress.
	// +optional
	Ingress *IngressSpec `json:"ingress,omitempty"`

	// gatewayApiRoutes exposes flagd through a Gateway API HTTPRoute.
	// +optional
	GatewayAPIRoutes *GatewayAPISpec `json:"gatewayApiRoutes,omitempty"`

	// auth restricts who may evaluate and sync flags: a bearer token, client
	// certificates, or both (flagd itself has no access control). The management
	// port stays open for probes.
	// +optional
	Auth *FlagdAuth `json:"auth,omitempty"`
}

// FlagdAuth is the access control of a standalone flagd.
type FlagdAuth struct {
	// tokenSecretRef names the key of a Secret in the Flagd's namespace holding the
	// accepted bearer tokens, one per line. Clients send "Authorization: Bearer
	// <token>" (gRPC: the authorization metadata). The Secret is mounted, so a
	// rotation takes effect without a restart.
	// +optional
	TokenSecretRef *SecretKeyRef `json:"tokenSecretRef,omitempty"`

	// tls serves evaluation, OFREP and sync over TLS with a certificate from a
	// Secret, optionally requiring client certificates.
	// +optional
	TLS *FlagdTLS `json:"tls,omitempty"`
}

// SecretKeyRef names a key of a Secret in the same namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`

	// key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// FlagdTLS is the TLS of a standalone flagd.
type FlagdTLS struct {
	// secretName is a kubernetes.io/tls Secret (tls.crt, tls.key) in the Flagd's
	// namespace, e.g. issued by cert-manager for <name>.<namespace>.svc; a rotation
	// is picked up without a restart.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName"`

	// clientCASecretRef, when set, requires client certificates signed by the CA
	// certificates (PEM) at this key of a Secret (mutual TLS).
	// +optional
	ClientCASecretRef *SecretKeyRef `json:"clientCASecretRef,omitempty"`
}

// IngressSpec describes the Ingress of a Flagd: one rule per host, each with a path
// to the evaluation, OFREP and sync services.
type IngressSpec struct {
	// enabled creates the Ingress; false removes it.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// annotations are set on the Ingress.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// hosts are the host names of the rules, one rule per host; "" makes a rule that
	// matches any host.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=253
	Hosts []string `json:"hosts"`

	// tls is the Ingress TLS configuration.
	// +optional
	TLS []networkingv1.IngressTLS `json:"tls,omitempty"`

	// ingressClassName is the IngressClass of the Ingress.
	// +optional
	IngressClassName *string `json:"ingressClassName,omitempty"`

	// pathType is the path type of every path.
	// +optional
	// +kubebuilder:default=Prefix
	// +kubebuilder:validation:Enum=Exact;Prefix;ImplementationSpecific
	PathType networkingv1.PathType `json:"pathType,omitempty"`

	// flagdPath is the path routed to the evaluation service.
	// +optional
	// +kubebuilder:default="/flagd.evaluation.v1.Service"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	FlagdPath string `json:"flagdPath,omitempty"`

	// ofrepPath is the path routed to the OFREP service.
	// +optional
	// +kubebuilder:default="/ofrep"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	OFREPPath string `json:"ofrepPath,omitempty"`

	// syncPath is the path routed to the sync service.
	// +optional
	// +kubebuilder:default="/flagd.sync.v1.Service"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	SyncPath string `json:"syncPath,omitempty"`
}

// GatewayAPISpec describes the HTTPRoute of a Flagd.
type GatewayAPISpec struct {
	// enabled creates the HTTPRoute; false removes it.
	// +optional
	Enabled bool `json:"enabled,omitempty"`

	// annotations are set on the HTTPRoute.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// hosts are the hostnames of the HTTPRoute.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	Hosts []string `json:"hosts,omitempty"`

	// parentRefs are the Gateways (or other parents) the HTTPRoute attaches to.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	ParentRefs []ParentReference `json:"parentRefs"`
}

// ParentReference is a Gateway API ParentReference (gateway.networking.k8s.io/v1),
// copied here so that the API does not depend on the Gateway API module.
type ParentReference struct {
	// group is the API group of the parent.
	// +optional
	// +kubebuilder:default=gateway.networking.k8s.io
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Group *string `json:"group,omitempty"`

	// kind is the kind of the parent.
	// +optional
	// +kubebuilder:default=Gateway
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`
	Kind *string `json:"kind,omitempty"`

	// namespace is the namespace of the parent; unset, the Flagd's namespace.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace *string `json:"namespace,omitempty"`

	// name is the name of the parent.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// sectionName is the listener (of a Gateway) to attach to.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SectionName *string `json:"sectionName,omitempty"`

	// port is the listener port to attach to.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`
}

// FlagdStatus is the observed state of a Flagd.
type FlagdStatus struct {
	Status `json:",inline"`

	// address is where clients in the cluster reach the evaluation API:
	// <name>.<namespace>.svc:<port>.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Address string `json:"address,omitempty"`

	// readyReplicas is the number of flagd pods ready to serve.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`
}

// FlagdList is a list of Flagds.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type FlagdList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the Flagds.
	Items []Flagd `json:"items"`
}
