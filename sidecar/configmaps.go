package sidecar

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations of a file source's ConfigMap.
const (
	// AnnotationFeatureFlag names the FeatureFlag ("namespace/name") whose document a
	// file source's ConfigMap holds (OFO's annotation; OFO writes the bare name).
	AnnotationFeatureFlag = "openfeature.dev/featureflag"
	// AnnotationFlagsHash is the SHA-256 (first 32 hex digits) of the document the
	// controller last wrote into the ConfigMap: equal to the hash of the
	// FeatureFlag's current document, the ConfigMap is up to date without reading it.
	AnnotationFlagsHash = "flagpole.dev/flags-sha256"
)

// FileConfigMapKey is the data key of a file source's ConfigMap holding the
// document of FeatureFlag ff: "<namespace>_<name>.flagd.json" (OFO's).
func FileConfigMapKey(ff Ref) string {
	return ff.Namespace + "_" + ff.Name + ".flagd.json"
}

// FlagsHash is the value of AnnotationFlagsHash for a flag document.
func FlagsHash(doc []byte) string {
	return shortHash(32, string(doc))
}

// KeepFileConfigMap is the ConfigMap cache's transform: the identity and labels
// the webhook needs plus the annotations the controllers read
// (AnnotationFeatureFlag, AnnotationFlagsHash, AnnotationCAHash); data is dropped,
// so the cache stays small.
func KeepFileConfigMap(obj any) (any, error) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return obj, nil
	}
	out := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: cm.Namespace, Name: cm.Name, UID: cm.UID, Labels: cm.Labels, ResourceVersion: cm.ResourceVersion}}
	for _, k := range []string{AnnotationFeatureFlag, AnnotationFlagsHash, AnnotationCAHash} {
		if v, ok := cm.Annotations[k]; ok {
			if out.Annotations == nil {
				out.Annotations = map[string]string{}
			}
			out.Annotations[k] = v
		}
	}
	return out, nil
}
