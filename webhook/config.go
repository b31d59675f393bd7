package webhook

import (
	"fmt"

	"github.com/flagpole-dev/flagpole/sidecar"
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
)

// InjectorConfig is what the pod webhook injects, operator-wide.
type InjectorConfig struct {
	Sidecar   sidecar.Config
	InProcess sidecar.InProcessDefaults
}

// DefaultInjectorConfig returns OFO's defaults (ofo-compat §5.1, §5.2) with
// flagpole's image policy (sidecar.DefaultConfig).
func DefaultInjectorConfig(image string) InjectorConfig {
	return InjectorConfig{
		Sidecar:   sidecar.DefaultConfig(image),
		InProcess: sidecar.InProcessDefaults{Port: 8015, Host: "localhost", Cache: "lru", CacheMaxSize: 1000, EnvVarPrefix: "FLAGD"},
	}
}

// Validate checks the configuration the operator was started with.
func (c InjectorConfig) Validate() error {
	if err := c.Sidecar.Validate(); err != nil {
		return err
	}
	if c.InProcess.Port < 1 || c.InProcess.Port > 65535 {
		return fmt.Errorf("IN_PROCESS_PORT %d: want 1..65535", c.InProcess.Port)
	}
	return nil
}
