package v1beta1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FeatureFlag is a flagd flag document stored in the cluster: flags, shared
// $evaluators and flag-set metadata. Sidecars read it through the kubernetes sync
// provider; FeatureFlagSources name it with provider kubernetes, file or flagd-proxy.
//
// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=featureflags,singular=featureflag,shortName=ff,categories=openfeature
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:printcolumn:name="Flags",type=integer,JSONPath=`.status.flagCount`,description="Number of flags in spec.flagSpec.flags"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`,description="Whether the flags were accepted"
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1,description="Why the Ready condition has its status"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type FeatureFlag struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec holds the flag document.
	// +required
	Spec FeatureFlagSpec `json:"spec"`

	// status is the state observed by the operator.
	// +optional
	Status FeatureFlagStatus `json:"status,omitempty"`
}

// FeatureFlagSpec is the desired state of a FeatureFlag.
type FeatureFlagSpec struct {
	// flagSpec is a flagd flag document in the map form ({"flags": {"<key>": {...}}}),
	// kept as written: targeting rules, variants and metadata are arbitrary JSON.
	// +required
	FlagSpec FlagSpec `json:"flagSpec"`
}

// FlagSpec is a flagd flag document (https://flagd.dev/reference/flag-definitions/).
type FlagSpec struct {
	// $schema is the JSON schema URL flagd documents usually start with
	// (https://flagd.dev/schema/v0/flags.json). Accepted so that a flagd file can be
	// pasted as is; flagd ignores it.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Schema string `json:"$schema,omitempty"`

	// flags maps each flag key to its definition. An empty map is allowed: it removes
	// every flag while the resource stays referenced.
	// +required
	Flags map[string]Flag `json:"flags"`

	// $evaluators holds shared JsonLogic rules by name; a targeting rule references one
	// with {"$ref": "<name>"}.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Evaluators json.RawMessage `json:"$evaluators,omitempty"`

	// metadata is the flag-set metadata, string, number or boolean values (for example
	// flagSetId and version). Every flag inherits it; a flag's own metadata wins.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// Flag is one flag definition.
type Flag struct {
	// state is ENABLED or DISABLED. A disabled flag resolves to the caller's code
	// default with reason DISABLED.
	// +required
	// +kubebuilder:validation:Enum=ENABLED;DISABLED
	State string `json:"state"`

	// variants maps each variant name to its value. Values are all booleans, all
	// strings, all numbers or all objects.
	// +required
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:MinProperties=1
	Variants json.RawMessage `json:"variants"`

	// defaultVariant names the variant served when targeting does not pick one. It must
	// be one of variants. Absent, null or empty, the caller's code default is used
	// (reason DEFAULT).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DefaultVariant string `json:"defaultVariant,omitempty"`

	// targeting is a JsonLogic rule (with flagd's fractional, sem_ver, starts_with and
	// ends_with operators and $ref to $evaluators) whose result names a variant.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Targeting json.RawMessage `json:"targeting,omitempty"`

	// metadata is the flag's own metadata (string, number or boolean values), merged
	// over the flag-set metadata and returned with every evaluation.
	// +optional
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// FeatureFlagStatus is the observed state of a FeatureFlag.
type FeatureFlagStatus struct {
	Status `json:",inline"`

	// flagCount is the number of flags in spec.flagSpec.flags at observedGeneration.
	// +optional
	// +kubebuilder:validation:Minimum=0
	FlagCount *int32 `json:"flagCount,omitempty"`
}

// FeatureFlagList is a list of FeatureFlags.
//
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
// +kubebuilder:object:root=true
type FeatureFlagList struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items are the FeatureFlags.
	Items []FeatureFlag `json:"items"`
}
