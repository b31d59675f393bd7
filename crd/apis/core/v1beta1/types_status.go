package v1beta1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ConditionReady is the condition type every kind reports: True when the object was
// accepted and everything it describes is in place, False with a reason and a message
// otherwise.
const ConditionReady = "Ready"

// Status is the observed state every kind reports.
type Status struct {
	// observedGeneration is the metadata.generation of the spec the conditions were
	// computed from. Conditions are stale while it is lower than metadata.generation.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions are the latest observations of the object's state, one per type
	// (see the Ready condition).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`
}
