package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FeatureFlagSource configures the flagd sidecar the operator injects into pods
// annotated with openfeature.dev/featureflagsource: where its flags come from, its
// ports, logging, probes and resources.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=featureflagsources,singular=featureflagsource,shortName=ffs,categories=openfeature
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Sources",type=string,JSONPath=`.spec.sources[*].source`,description="Flag sources, in priority order (last wins)"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,priority=1,description="Whether the source configuration was accepted"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FeatureFlagSource struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the sidecar configuration.
	// +required
	Spec FeatureFlagSourceSpec `json:"spec"`

	// status is the state observed by the operator.
	// +optional
	Status FeatureFlagSourceStatus `json:"status,omitempty"`
}

// Sync providers, the values of Source.Provider and DefaultSyncProvider.
const (
	// SyncProviderKubernetes reads a FeatureFlag through the API server (watch).
	SyncProviderKubernetes = "kubernetes"
	// SyncProviderFile mounts a FeatureFlag, rendered into a ConfigMap, as a file.
	SyncProviderFile = "file"
	// SyncProviderHTTP polls an http(s) URL.
	SyncProviderHTTP = "http"
	// SyncProviderGRPC streams from a flagd sync service (flagd.sync.v1).
	SyncProviderGRPC = "grpc"
	// SyncProviderFlagdProxy streams a FeatureFlag through the shared flagd-proxy.
	SyncProviderFlagdProxy = "flagd-proxy"
)

// FeatureFlagSourceSpec is the sidecar configuration. When a pod names several
// FeatureFlagSources they are merged in order (see docs/api.md).
//
// +kubebuilder:validation:XValidation:rule="!has(self.port) || !has(self.managementPort) || self.port != self.managementPort",message="port and managementPort must differ",fieldPath=".managementPort"
// +kubebuilder:validation:XValidation:rule="!has(self.port) || !has(self.ofrepPort) || self.port != self.ofrepPort",message="port and ofrepPort must differ",fieldPath=".ofrepPort"
// +kubebuilder:validation:XValidation:rule="!has(self.managementPort) || !has(self.ofrepPort) || self.managementPort != self.ofrepPort",message="managementPort and ofrepPort must differ",fieldPath=".ofrepPort"
// +kubebuilder:validation:XValidation:rule="!has(self.defaultSyncProvider) || self.defaultSyncProvider != 'http' || self.sources.all(s, has(s.provider) || (isURL(s.source) && url(s.source).getScheme() in ['http', 'https'] && size(url(s.source).getHostname()) > 0))",message="a source without provider uses defaultSyncProvider http and must be an http:// or https:// URL",fieldPath=".sources"
// +kubebuilder:validation:XValidation:rule="!has(self.defaultSyncProvider) || !(self.defaultSyncProvider in ['kubernetes', 'file', 'flagd-proxy']) || self.sources.all(s, has(s.provider) || s.source.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))",message="a source without provider uses defaultSyncProvider kubernetes, file or flagd-proxy and must be a FeatureFlag name, [namespace/]name",fieldPath=".sources"
type FeatureFlagSourceSpec struct {
	// managementPort is the sidecar's port for /healthz, /readyz and /metrics.
	// +optional
	// +kubebuilder:default=8014
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	ManagementPort int32 `json:"managementPort,omitempty"`

	// port is the sidecar's flag evaluation port (gRPC, gRPC-Web and Connect).
	// +optional
	// +kubebuilder:default=8013
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// socketPath, when set, makes the sidecar serve evaluations on this unix socket;
	// it is passed to the application as <envVarPrefix>_SOCKET_PATH.
	// +optional
	// +kubebuilder:validation:MaxLength=107
	SocketPath string `json:"socketPath,omitempty"`

	// evaluator is the flag evaluator; json (JsonLogic) is the only one.
	// +optional
	// +kubebuilder:default=json
	// +kubebuilder:validation:Enum=json
	Evaluator string `json:"evaluator,omitempty"`

	// sources are the flag sources, in priority order: when two sources define the
	// same flag (and flag set), the later one wins.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Sources []Source `json:"sources"`

	// envVars are environment variables set, with <envVarPrefix>_ prepended to their
	// names, on the sidecar and on every application container.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	EnvVars []corev1.EnvVar `json:"envVars,omitempty"`

	// syncProviderArgs are extra key=value arguments for the sync providers
	// (--sync-provider-args).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^[^=]+=`
	// +kubebuilder:validation:items:MaxLength=1024
	SyncProviderArgs []string `json:"syncProviderArgs,omitempty"`

	// defaultSyncProvider is the provider of the sources that name none. Unset, the
	// operator's default applies (kubernetes unless configured otherwise).
	// +optional
	// +kubebuilder:validation:Enum=kubernetes;file;http;grpc;flagd-proxy
	DefaultSyncProvider string `json:"defaultSyncProvider,omitempty"`

	// logFormat is the sidecar's log format.
	// +optional
	// +kubebuilder:default=json
	// +kubebuilder:validation:Enum=json;console
	LogFormat string `json:"logFormat,omitempty"`

	// envVarPrefix is the prefix of every environment variable the operator sets
	// (for example FLAGD_PORT).
	// +optional
	// +kubebuilder:default=FLAGD
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	EnvVarPrefix string `json:"envVarPrefix,omitempty"`

	// rolloutOnChange, when true, restarts the Deployments whose pods use this source
	// whenever it changes, so that their sidecars pick the change up.
	// +optional
	// +kubebuilder:default=false
	RolloutOnChange *bool `json:"rolloutOnChange,omitempty"`

	// probesEnabled adds liveness and readiness probes to the sidecar.
	// +optional
	// +kubebuilder:default=true
	ProbesEnabled *bool `json:"probesEnabled,omitempty"`

	// debugLogging turns on the sidecar's debug logs.
	// +optional
	// +kubebuilder:default=false
	DebugLogging *bool `json:"debugLogging,omitempty"`

	// otelCollectorUri, when set, exports the sidecar's metrics and traces to this
	// OpenTelemetry collector (host:port).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	OtelCollectorURI string `json:"otelCollectorUri,omitempty"`

	// resources replaces the sidecar's default resource requests and limits: a
	// requests (or limits) map given here replaces the default one whole.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// contextValues are added to the evaluation context of every evaluation
	// (--context-value key=value).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	ContextValues map[string]string `json:"contextValues,omitempty"`

	// headerToContextMappings copy request headers into the evaluation context:
	// header name to context key (--context-from-header header=key).
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	HeaderToContextMappings map[string]string `json:"headerToContextMappings,omitempty"`

	// cors lists the origins allowed to call the sidecar from a browser
	// (--cors-origin).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=2048
	Cors []string `json:"cors,omitempty"`

	// ofrepPort is the sidecar's OFREP (OpenFeature Remote Evaluation Protocol) port.
	// +optional
	// +kubebuilder:default=8016
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	OfrepPort int32 `json:"ofrepPort,omitempty"`
}

// Source is one flag source of the sidecar.
//
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || self.provider != 'http' || (isURL(self.source) && url(self.source).getScheme() in ['http', 'https'] && size(url(self.source).getHostname()) > 0)",message="an http source must be an http:// or https:// URL",messageExpression="'an http source must be an http:// or https:// URL, not ' + self.source",fieldPath=".source"
// +kubebuilder:validation:XValidation:rule="!has(self.provider) || !(self.provider in ['kubernetes', 'file', 'flagd-proxy']) || self.source.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')",message="a kubernetes, file or flagd-proxy source must be a FeatureFlag name, [namespace/]name",messageExpression="'a ' + self.provider + ' source must be a FeatureFlag name, [namespace/]name, not ' + self.source",fieldPath=".source"
type Source struct {
	// source says where the flags are: for kubernetes, file and flagd-proxy the name
	// of a FeatureFlag, [namespace/]name, in the pod's namespace when no namespace is
	// given; for http an http(s) URL; for grpc the address of a flagd sync service.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	Source string `json:"source"`

	// provider is how the sidecar reads the source. Unset, defaultSyncProvider applies.
	// +optional
	// +kubebuilder:validation:Enum=kubernetes;file;http;grpc;flagd-proxy
	Provider string `json:"provider,omitempty"`

	// httpSyncBearerToken is sent as a bearer token to an http source. The webhook
	// keeps it out of the pod spec (a Secret in the pod's namespace, read by the
	// sidecar through its environment), but anyone who can read this
	// FeatureFlagSource reads it: prefer a token without privileges beyond reading
	// the flags.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	HTTPSyncBearerToken string `json:"httpSyncBearerToken,omitempty"`

	// tls makes a grpc source connect with TLS.
	// +optional
	TLS bool `json:"tls,omitempty"`

	// certPath is the CA certificate file a grpc source verifies its server with.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	CertPath string `json:"certPath,omitempty"`

	// providerID identifies the sidecar to a grpc source.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	ProviderID string `json:"providerID,omitempty"`

	// selector chooses the flags a grpc source sends (for example flagSetId=<id>).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Selector string `json:"selector,omitempty"`

	// interval is the polling interval of an http source, in seconds. Unset or 0, the
	// sidecar's default (5) applies.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Interval int32 `json:"interval,omitempty"`
}

// FeatureFlagSourceStatus is the observed state of a FeatureFlagSource.
type FeatureFlagSourceStatus struct {
	Status `json:",inline"`
}

// FeatureFlagSourceList is a list of FeatureFlagSources.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type FeatureFlagSourceList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the FeatureFlagSources.
	Items []FeatureFlagSource `json:"items"`
}
