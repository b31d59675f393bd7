package webhook

import (
	"net/http"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/sidecar"
)

// Paths the webhooks are served on: OFO's for pods and FeatureFlags, the same
// pattern for the other kinds.
const (
	PathMutatePod                      = "/mutate-v1-pod"
	PathValidateFeatureFlag            = "/validate-core-openfeature-dev-v1beta1-featureflag"
	PathValidateFeatureFlagSource      = "/validate-core-openfeature-dev-v1beta1-featureflagsource"
	PathValidateFlagd                  = "/validate-core-openfeature-dev-v1beta1-flagd"
	PathValidateInProcessConfiguration = "/validate-core-openfeature-dev-v1beta1-inprocessconfiguration"
)

// Mux serves each handler on its path and answers 404 elsewhere.
func Mux(handlers map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	for path, h := range handlers {
		mux.Handle(path, h)
	}
	return mux
}

// Registration says how the API server reaches the webhooks.
type Registration struct {
	// MutatingName and ValidatingName name the two configurations (the TLS manager
	// keeps their caBundle current by these names).
	MutatingName, ValidatingName string
	// Service is the webhook Service (namespace, name, port); URL, when set instead,
	// is the base URL ("https://127.0.0.1:9443") for webhooks outside the cluster.
	ServiceNamespace, ServiceName string
	ServicePort                   int32
	URL                           string
	// ExcludeNamespaces never depend on the pod webhook: kube-system and the
	// operator's own namespace, so that the operator can always start.
	ExcludeNamespaces []string
	// TimeoutSeconds bounds each admission call (default 5: a slow webhook should
	// fail fast rather than stall every pod creation).
	TimeoutSeconds int32
	// Validation registers the validating webhooks (OFO's FLAGS_VALIDATION_ENABLED).
	Validation bool
}

// Configurations renders the MutatingWebhookConfiguration (pods, CREATE only,
// failurePolicy Fail, only pods annotated openfeature.dev/enabled: "true" through
// matchConditions, never in ExcludeNamespaces) and the ValidatingWebhookConfiguration
// (the four kinds, CREATE and UPDATE, failurePolicy Fail). caBundle is left empty:
// the TLS manager fills it.
//
// failurePolicy Fail for pods is a trade-off the docs spell out: with OFO's Ignore,
// an annotated pod created while the webhook is down starts without its sidecar and
// silently serves code defaults (OFO #654); with Fail it is refused and its
// ReplicaSet retries until the webhook is back, while namespaces outside the
// selector and unannotated pods (matchConditions) never notice an outage.
func (r Registration) Configurations() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	timeout := r.TimeoutSeconds
	if timeout == 0 {
		timeout = 5
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	noneOnDryRun := admissionregistrationv1.SideEffectClassNoneOnDryRun
	never := admissionregistrationv1.NeverReinvocationPolicy
	exact := admissionregistrationv1.Exact
	namespaced := admissionregistrationv1.NamespacedScope
	namespaceSelector := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: r.ExcludeNamespaces}}}
	if len(r.ExcludeNamespaces) == 0 {
		namespaceSelector = &metav1.LabelSelector{}
	}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: r.MutatingName, Labels: map[string]string{sidecar.LabelManagedBy: sidecar.ManagedBy}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "mutate.openfeature.dev",
			ClientConfig: r.clientConfig(PathMutatePod),
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}, Scope: &namespaced}}},
			FailurePolicy:           &fail,
			MatchPolicy:             &exact,
			NamespaceSelector:       namespaceSelector,
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             &noneOnDryRun,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
			MatchConditions: []admissionregistrationv1.MatchCondition{{Name: "openfeature-enabled",
				Expression: `has(object.metadata.annotations) && "` + AnnotationEnabled + `" in object.metadata.annotations && object.metadata.annotations["` + AnnotationEnabled + `"] == "true"`}},
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: admissionregistrationv1.SchemeGroupVersion.String(), Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: r.ValidatingName, Labels: map[string]string{sidecar.LabelManagedBy: sidecar.ManagedBy}},
	}
	if !r.Validation {
		return mutating, validating
	}
	for _, k := range ValidatingWebhooks(ValidationOptions{}) {
		validating.Webhooks = append(validating.Webhooks, admissionregistrationv1.ValidatingWebhook{
			Name:         "v" + strings.ToLower(k.Kind) + ".openfeature.dev",
			ClientConfig: r.clientConfig(k.Path),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{v1beta1.GroupName}, APIVersions: []string{v1beta1.Version},
					Resources: []string{k.Resource}, Scope: &namespaced}}},
			FailurePolicy:           &fail,
			MatchPolicy:             &exact,
			NamespaceSelector:       &metav1.LabelSelector{},
			ObjectSelector:          &metav1.LabelSelector{},
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		})
	}
	return mutating, validating
}

func (r Registration) clientConfig(path string) admissionregistrationv1.WebhookClientConfig {
	if r.URL != "" {
		u := r.URL + path
		return admissionregistrationv1.WebhookClientConfig{URL: &u}
	}
	port := r.ServicePort
	if port == 0 {
		port = 443
	}
	return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
		Namespace: r.ServiceNamespace, Name: r.ServiceName, Path: &path, Port: &port}}
}
