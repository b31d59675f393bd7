package controller

import (
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func desiredService() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "flagd", Labels: map[string]string{"app": "flagd"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "flagd"}, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "flagd", Port: 8013, TargetPort: intstr.FromInt32(8013)}}},
	}
}

func TestApplyPatchDropsNullsAndStatus(t *testing.T) {
	patch, err := ApplyPatch(&appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "d"}})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(patch, &doc); err != nil {
		t.Fatal(err)
	}
	meta := doc["metadata"].(map[string]any)
	if _, ok := meta["creationTimestamp"]; ok {
		t.Errorf("creationTimestamp: null kept: %s", patch)
	}
	if _, ok := doc["status"]; ok {
		t.Errorf("status kept: %s", patch)
	}
	if _, err := ApplyPatch(&corev1.Service{}); err == nil {
		t.Error("an object without apiVersion and kind was accepted")
	}
}

// TestUpToDate: server defaults and other managers' additions do not count as
// drift; a changed value, a removed member or element does.
func TestUpToDate(t *testing.T) {
	patch, err := ApplyPatch(desiredService())
	if err != nil {
		t.Fatal(err)
	}
	live := func(edit func(*corev1.Service)) *corev1.Service {
		s := desiredService()
		s.TypeMeta = metav1.TypeMeta{} // REST clients drop it
		s.ResourceVersion, s.UID = "7", "u"
		s.Labels["added-by-someone"] = "x"
		s.Spec.ClusterIP, s.Spec.SessionAffinity = "10.0.0.7", corev1.ServiceAffinityNone
		s.Spec.Ports[0].Protocol = corev1.ProtocolTCP
		if edit != nil {
			edit(s)
		}
		return s
	}
	cases := []struct {
		name string
		live *corev1.Service
		want bool
	}{
		{"defaults and foreign labels", live(nil), true},
		{"port changed", live(func(s *corev1.Service) { s.Spec.Ports[0].Port = 9000 }), false},
		{"label removed", live(func(s *corev1.Service) { delete(s.Labels, "app") }), false},
		{"port removed", live(func(s *corev1.Service) { s.Spec.Ports = nil }), false},
		{"type changed", live(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }), false},
	}
	for _, tc := range cases {
		if got := UpToDate(patch, tc.live); got != tc.want {
			t.Errorf("%s: UpToDate = %v, want %v", tc.name, got, tc.want)
		}
	}
	// quantities are compared in canonical form, as the server stores them
	withLimits := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}}}
	p, _ := ApplyPatch(withLimits)
	if !UpToDate(p, withLimits.DeepCopy()) {
		t.Error("a pod is not up to date with itself")
	}
	// a zero that the live object lacks is drift, not an omitted empty value
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &zero}}
	pdbPatch, err := ApplyPatch(pdb)
	if err != nil {
		t.Fatal(err)
	}
	if !UpToDate(pdbPatch, pdb.DeepCopy()) {
		t.Error("minAvailable 0: not up to date with itself")
	}
	edited := pdb.DeepCopy()
	edited.Spec.MinAvailable, edited.Spec.MaxUnavailable = nil, &one
	if UpToDate(pdbPatch, edited) {
		t.Error("minAvailable 0 edited into maxUnavailable 1 counts as up to date")
	}
}
