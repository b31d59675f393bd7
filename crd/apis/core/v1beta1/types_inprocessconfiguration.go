package v1beta1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// InProcessConfiguration configures applications whose OpenFeature SDK evaluates
// flags in process: the operator sets environment variables (<envVarPrefix>_HOST,
// _PORT, _RESOLVER=in-process, ...) on the containers of pods annotated with
// openfeature.dev/inprocessconfiguration. No sidecar is injected.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=inprocessconfigurations,singular=inprocessconfiguration,categories=openfeature
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.host`,description="Sync service host"
// +kubebuilder:printcolumn:name="Port",type=integer,JSONPath=`.spec.port`,description="Sync service port"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InProcessConfiguration struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the configuration passed to the applications.
	// +optional
	// +kubebuilder:default={}
	Spec InProcessConfigurationSpec `json:"spec,omitempty"`

	// status is the state observed by the operator.
	// +optional
	Status InProcessConfigurationStatus `json:"status,omitempty"`
}

// InProcessConfigurationSpec is what in-process providers are told through their
// environment. When a pod names several InProcessConfigurations they are merged in
// order.
type InProcessConfigurationSpec struct {
	// port is the port of the flag sync service (flagd.sync.v1) the provider connects
	// to (<envVarPrefix>_PORT).
	// +optional
	// +kubebuilder:default=8015
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// socketPath, when set, makes the provider connect to this unix socket instead
	// (<envVarPrefix>_SOCKET_PATH).
	// +optional
	// +kubebuilder:validation:MaxLength=107
	SocketPath string `json:"socketPath,omitempty"`

	// host is the host of the flag sync service (<envVarPrefix>_HOST).
	// +optional
	// +kubebuilder:default=localhost
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host,omitempty"`

	// tls makes the provider connect with TLS (<envVarPrefix>_TLS).
	// +optional
	// +kubebuilder:default=false
	TLS bool `json:"tls,omitempty"`

	// offlineFlagSourcePath, when set, makes the provider read flags from this file
	// instead of a sync service (<envVarPrefix>_OFFLINE_FLAG_SOURCE_PATH).
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	OfflineFlagSourcePath string `json:"offlineFlagSourcePath,omitempty"`

	// selector chooses the flags the sync service sends, for example
	// flagSetId=<id> (<envVarPrefix>_SOURCE_SELECTOR).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Selector string `json:"selector,omitempty"`

	// cache is the provider's evaluation cache: lru or disabled
	// (<envVarPrefix>_CACHE).
	// +optional
	// +kubebuilder:default=lru
	// +kubebuilder:validation:Enum=lru;disabled
	Cache string `json:"cache,omitempty"`

	// cacheMaxSize is the size of the lru cache (<envVarPrefix>_MAX_CACHE_SIZE).
	// +optional
	// +kubebuilder:default=1000
	// +kubebuilder:validation:Minimum=1
	CacheMaxSize int32 `json:"cacheMaxSize,omitempty"`

	// envVars are environment variables set, with <envVarPrefix>_ prepended to their
	// names, on every application container.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	EnvVars []corev1.EnvVar `json:"envVars,omitempty"`

	// envVarPrefix is the prefix of every environment variable the operator sets.
	// +optional
	// +kubebuilder:default=FLAGD
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z][-._a-zA-Z0-9]*$`
	EnvVarPrefix string `json:"envVarPrefix,omitempty"`
}

// InProcessConfigurationStatus is the observed state of an InProcessConfiguration.
type InProcessConfigurationStatus struct {
	Status `json:",inline"`
}

// InProcessConfigurationList is a list of InProcessConfigurations.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type InProcessConfigurationList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the InProcessConfigurations.
	Items []InProcessConfiguration `json:"items"`
}
