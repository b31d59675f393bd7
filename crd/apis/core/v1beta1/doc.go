// Package v1beta1 holds the core.openfeature.dev/v1beta1 API: FeatureFlag,
// FeatureFlagSource, Flagd and InProcessConfiguration. Field names, JSON shapes and
// defaults are those of the OpenFeature Operator's v1beta1 API, so its manifests apply
// unchanged; the schemas are stricter and every kind has a status with conditions.
// docs/api.md lists every difference.
//
// +k8s:deepcopy-gen=package
// +groupName=core.openfeature.dev
package v1beta1
