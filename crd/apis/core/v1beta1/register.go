package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every kind in this package.
const GroupName = "core.openfeature.dev"

// Version is the API version of this package.
const Version = "v1beta1"

// SchemeGroupVersion is the group and version of this package. It is a variable only
// because the generated clients take its address; nothing assigns it.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: Version}

// Kind returns a group-qualified GroupKind for kind.
func Kind(kind string) schema.GroupKind {
	return SchemeGroupVersion.WithKind(kind).GroupKind()
}

// Resource returns a group-qualified GroupResource for resource (the generated
// listers use it in NotFound errors).
func Resource(resource string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(resource).GroupResource()
}

// AddToScheme registers every kind of this package, and the list kinds, with s.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&FeatureFlag{}, &FeatureFlagList{},
		&FeatureFlagSource{}, &FeatureFlagSourceList{},
		&Flagd{}, &FlagdList{},
		&InProcessConfiguration{}, &InProcessConfigurationList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
