package webhook

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// Annotations of the OpenFeature Operator, read from (and written on) pods.
const (
	AnnotationEnabled           = "openfeature.dev/enabled"
	AnnotationFeatureFlagSource = "openfeature.dev/featureflagsource"
	AnnotationInProcess         = "openfeature.dev/inprocessconfiguration"
	AnnotationAllowK8sSync      = "openfeature.dev/allowkubernetessync"
	// AnnotationInjected marks a pod this webhook injected: a pod that carries it
	// (created again from an injected pod's manifest) is left alone.
	AnnotationInjected = "flagpole.dev/injected"
	// AnnotationAllowedNamespaces on a FeatureFlagSource or FeatureFlag lists the
	// namespaces whose pods may reference it ("*" for every namespace): the owner of
	// the object opts in to cross-namespace use.
	AnnotationAllowedNamespaces = "flagpole.dev/allowed-namespaces"
)

// SidecarName is the injected container's name (OFO's).
const SidecarName = "flagd"

// SidecarDefaults are the operator-wide defaults a pod's FeatureFlagSources are
// merged over (OFO's SIDECAR_* environment, §2.4).
type SidecarDefaults struct {
	Port, ManagementPort int32
	SocketPath           string
	Evaluator            string
	DefaultSyncProvider  string
	EnvVarPrefix         string
	LogFormat            string
	ProbesEnabled        bool
	OfrepPort            int32
}

// InProcessDefaults are the operator-wide defaults of in-process mode (OFO's
// IN_PROCESS_* environment, §2.11).
type InProcessDefaults struct {
	Port                  int32
	SocketPath            string
	Host                  string
	TLS                   bool
	OfflineFlagSourcePath string
	Selector              string
	Cache                 string
	CacheMaxSize          int32
	EnvVarPrefix          string
}

// InjectorConfig is what the pod webhook injects, operator-wide.
type InjectorConfig struct {
	// SidecarImage is the image of the injected container: the operator's own image,
	// so operator and sidecar are always the same version.
	SidecarImage    string
	ImagePullPolicy corev1.PullPolicy
	// Resources are the sidecar's default requests and limits; a FeatureFlagSource's
	// resources override them per resource name.
	Resources      corev1.ResourceRequirements
	Sidecar        SidecarDefaults
	InProcess      InProcessDefaults
	CrossNamespace CrossNamespace
}

// DefaultInjectorConfig returns OFO's defaults (ofo-compat §5.1, §5.2) with
// flagpole's image policy: IfNotPresent (OFO hard-codes Always, #762).
func DefaultInjectorConfig(image string) InjectorConfig {
	return InjectorConfig{
		SidecarImage:    image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		Sidecar: SidecarDefaults{Port: 8013, ManagementPort: 8014, Evaluator: "json", DefaultSyncProvider: v1beta1.SyncProviderKubernetes,
			EnvVarPrefix: "FLAGD", LogFormat: "json", ProbesEnabled: true, OfrepPort: 8016},
		InProcess:      InProcessDefaults{Port: 8015, Host: "localhost", Cache: "lru", CacheMaxSize: 1000, EnvVarPrefix: "FLAGD"},
		CrossNamespace: CrossNamespaceDeny,
	}
}

// Validate checks the configuration the operator was started with.
func (c InjectorConfig) Validate() error {
	switch {
	case c.SidecarImage == "":
		return fmt.Errorf("no sidecar image: give --sidecar-image (the operator's own image)")
	case c.CrossNamespace != CrossNamespaceDeny && c.CrossNamespace != CrossNamespaceAllow:
		return fmt.Errorf("--cross-namespace %q: want deny or allow", c.CrossNamespace)
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("--sidecar-image-pull-policy %q: want Always, IfNotPresent or Never", c.ImagePullPolicy)
	}
	for name, q := range c.Resources.Requests {
		if l, ok := c.Resources.Limits[name]; ok && q.Cmp(l) > 0 {
			return fmt.Errorf("sidecar %s request %s is above its limit %s", name, q.String(), l.String())
		}
	}
	for _, p := range []struct {
		name string
		v    int32
	}{{"SIDECAR_PORT", c.Sidecar.Port}, {"SIDECAR_MANAGEMENT_PORT", c.Sidecar.ManagementPort}, {"IN_PROCESS_PORT", c.InProcess.Port}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s %d: want 1..65535", p.name, p.v)
		}
	}
	return nil
}

// envKey is OFO's EnvVarKey: the name itself when the prefix is blank, else
// prefix_name.
func envKey(prefix, name string) string {
	if strings.TrimSpace(prefix) == "" {
		return name
	}
	return prefix + "_" + name
}
