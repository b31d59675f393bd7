// Package sidecar renders flagpole's flagd container for a Kubernetes workload from
// its FeatureFlagSources — the sidecar the admission webhook injects into pods, or
// the container of a standalone Flagd's Deployment — together with what its sources
// need: volumes, environment, RBAC grants, ConfigMaps and Secrets. The container's
// args come from the sidecar contract (flagd/startconfig), so they are what flagd
// mode parses. It also holds the cluster side both the webhook and the controllers
// use: informer caches of the objects rendering reads, and the writes of its side
// effects.
package sidecar

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// AnnotationAllowedNamespaces on a FeatureFlagSource, FeatureFlag or
// InProcessConfiguration lists the namespaces whose workloads may reference it ("*"
// for every namespace): the owner of the object opts in to cross-namespace use.
const AnnotationAllowedNamespaces = "flagpole.dev/allowed-namespaces"

// ContainerName is the flagd container's name (OFO's).
const ContainerName = "flagd"

// CrossNamespace is the operator's policy for references from one namespace into
// another (--cross-namespace), for example a FeatureFlagSource source
// "other-team/flags".
type CrossNamespace string

const (
	// CrossNamespaceDeny (the default) refuses cross-namespace references unless the
	// referenced object lists the referring namespace in its
	// AnnotationAllowedNamespaces annotation.
	CrossNamespaceDeny CrossNamespace = "deny"
	// CrossNamespaceAllow allows them everywhere (the OpenFeature Operator's behaviour,
	// for migrations).
	CrossNamespaceAllow CrossNamespace = "allow"
)

// ParseCrossNamespace reads a --cross-namespace value: deny (also "") or allow.
func ParseCrossNamespace(s string) (CrossNamespace, error) {
	switch CrossNamespace(s) {
	case "", CrossNamespaceDeny:
		return CrossNamespaceDeny, nil
	case CrossNamespaceAllow:
		return CrossNamespaceAllow, nil
	}
	return "", fmt.Errorf("--cross-namespace %q: want deny or allow", s)
}

// Defaults are the operator-wide defaults FeatureFlagSources are merged over (OFO's
// SIDECAR_* environment, §2.4).
type Defaults struct {
	Port, ManagementPort int32
	SocketPath           string
	Evaluator            string
	DefaultSyncProvider  string
	EnvVarPrefix         string
	LogFormat            string
	ProbesEnabled        bool
	OfrepPort            int32
}

// Config is how flagd is rendered, operator-wide.
type Config struct {
	// Image is the flagd container's image: the operator's own, so operator and
	// sidecar are always the same version.
	Image           string
	ImagePullPolicy corev1.PullPolicy
	// Resources are the container's default requests and limits; a
	// FeatureFlagSource's resources override them per resource name.
	Resources      corev1.ResourceRequirements
	Defaults       Defaults
	CrossNamespace CrossNamespace
	// FlagdProxy is where flagd-proxy sources point.
	FlagdProxy FlagdProxy
}

// DefaultConfig returns OFO's defaults (ofo-compat §5.1, §5.2) with flagpole's image
// policy: IfNotPresent (OFO hard-codes Always, #762).
func DefaultConfig(image string) Config {
	return Config{
		Image:           image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
		},
		Defaults: Defaults{Port: 8013, ManagementPort: 8014, Evaluator: "json", DefaultSyncProvider: v1beta1.SyncProviderKubernetes,
			EnvVarPrefix: "FLAGD", LogFormat: "json", ProbesEnabled: true, OfrepPort: 8016},
		CrossNamespace: CrossNamespaceDeny,
		FlagdProxy:     DefaultFlagdProxy("flagpole-system"),
	}
}

// Validate checks the configuration the operator was started with.
func (c Config) Validate() error {
	switch {
	case c.Image == "":
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
	}{{"SIDECAR_PORT", c.Defaults.Port}, {"SIDECAR_MANAGEMENT_PORT", c.Defaults.ManagementPort}} {
		if p.v < 1 || p.v > 65535 {
			return fmt.Errorf("%s %d: want 1..65535", p.name, p.v)
		}
	}
	return nil
}

// EnvKey is OFO's EnvVarKey: the name itself when the prefix is blank, else
// prefix_name.
func EnvKey(prefix, name string) string {
	if strings.TrimSpace(prefix) == "" {
		return name
	}
	return prefix + "_" + name
}
