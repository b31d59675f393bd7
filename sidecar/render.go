package sidecar

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// Probe settings: OFO's liveness and readiness (initialDelaySeconds 5), plus a
// startup probe on /readyz. A native sidecar's startup probe holds back the app
// containers until it succeeds, so the app starts with its flags served (OFO #806:
// evaluation errors while the sidecar starts); the sidecar is restarted if its flags
// are not served within sidecarStartupSeconds.
const (
	probeInitialDelay     = 5
	sidecarStartupSeconds = 120
)

// sidecarContract renders the merged spec into flagd mode's configuration (the
// contract flagd mode parses; a round-trip test keeps both sides equal). In a
// sidecar, evaluation, sync and OFREP listen on 127.0.0.1 only: nothing outside the
// pod reaches them; management listens on every interface: the kubelet's probes and
// Prometheus come from outside the pod, and it carries no flag values or contexts.
// A standalone flagd (a Flagd's Deployment) serves other pods: every listener on
// every interface.
func sidecarContract(spec *v1beta1.FeatureFlagSourceSpec, sources []flagsync.SourceConfig, standalone bool) (startconfig.Config, error) {
	c := startconfig.Default()
	var errs [3]error
	c.Port, errs[0] = port("port", spec.Port)
	c.ManagementPort, errs[1] = port("managementPort", spec.ManagementPort)
	c.OfrepPort, errs[2] = port("ofrepPort", spec.OfrepPort)
	if err := errors.Join(errs[:]...); err != nil {
		return c, err
	}
	c.Sources = startconfig.SourceList(sources)
	c.Debug = spec.DebugLogging != nil && *spec.DebugLogging
	if spec.OtelCollectorURI != "" {
		c.MetricsExporter, c.OtelCollectorURI = "otel", spec.OtelCollectorURI
	}
	c.ContextValue = maps.Clone(spec.ContextValues)
	c.ContextFromHeader = maps.Clone(spec.HeaderToContextMappings)
	c.CORSOrigin = append([]string(nil), spec.Cors...)
	if !standalone {
		c.BindAddress, c.ManagementBind = "127.0.0.1", "0.0.0.0"
	}
	return c, nil
}

// port is a FeatureFlagSource port field as a TCP port; out of range (an object
// that bypassed the schema) is an error naming the field.
func port(field string, v int32) (uint16, error) {
	if v < 1 || v > math.MaxUint16 {
		return 0, fmt.Errorf("%s %d: want a TCP port, 1-65535", field, v)
	}
	return uint16(v), nil
}

// sidecarEnv is OFO's environment of the sidecar (§2.8): the FeatureFlagSource
// envVars under the prefix (AZURE_STORAGE*, AWS_* and GOOGLE_* unprefixed, for the
// cloud SDKs), then the settings every container gets (appEnv), then what the
// sources need (Secret references).
func sidecarEnv(spec *v1beta1.FeatureFlagSourceSpec, plan *sidecarPlan) []corev1.EnvVar {
	var env []corev1.EnvVar
	for _, e := range spec.EnvVars {
		name := e.Name
		if !strings.HasPrefix(name, "AZURE_STORAGE") && !strings.HasPrefix(name, "AWS_") && !strings.HasPrefix(name, "GOOGLE_") {
			name = EnvKey(spec.EnvVarPrefix, name)
		}
		v := corev1.EnvVar{Name: name, Value: e.Value}
		if e.Value == "" && e.ValueFrom != nil {
			v.ValueFrom = e.ValueFrom.DeepCopy()
		}
		env = append(env, v)
	}
	env = append(env, appEnv(spec)...)
	return append(env, plan.sidecarEnv...)
}

// appEnv is what the application containers get in sidecar mode: the settings an
// OpenFeature flagd provider reads (OFO's list, §2.8). Unlike OFO, the
// FeatureFlagSource envVars (which may hold secrets for the sidecar's sources) are
// not copied into the app containers.
func appEnv(spec *v1beta1.FeatureFlagSourceSpec) []corev1.EnvVar {
	p := spec.EnvVarPrefix
	env := []corev1.EnvVar{
		{Name: EnvKey(p, "MANAGEMENT_PORT"), Value: strconv.Itoa(int(spec.ManagementPort))},
		{Name: EnvKey(p, "PORT"), Value: strconv.Itoa(int(spec.Port))},
		{Name: EnvKey(p, "EVALUATOR"), Value: spec.Evaluator},
		{Name: EnvKey(p, "LOG_FORMAT"), Value: spec.LogFormat},
		{Name: EnvKey(p, "RESOLVER"), Value: "rpc"},
	}
	if spec.SocketPath != "" {
		env = append(env, corev1.EnvVar{Name: EnvKey(p, "SOCKET_PATH"), Value: spec.SocketPath})
	}
	return env
}

// container renders the flagd container.
func (r *Renderer) container(w Workload, spec *v1beta1.FeatureFlagSourceSpec, plan *sidecarPlan) (corev1.Container, error) {
	contract, err := sidecarContract(spec, plan.sources, w.Standalone)
	if err != nil {
		return corev1.Container{}, err
	}
	if w.Configure != nil {
		w.Configure(&contract)
	}
	args, err := contract.Args()
	if err != nil {
		return corev1.Container{}, fmt.Errorf("rendering the sidecar's arguments: %w", err)
	}
	c := corev1.Container{
		Name:            ContainerName,
		Image:           r.Config.Image,
		ImagePullPolicy: r.Config.ImagePullPolicy,
		Args:            args,
		Env:             sidecarEnv(spec, plan),
		Ports: []corev1.ContainerPort{
			{Name: "management", ContainerPort: spec.ManagementPort},
			{Name: "flagd", ContainerPort: spec.Port},
			{Name: "ofrep", ContainerPort: spec.OfrepPort},
		},
		Resources:    mergeResources(*r.Config.Resources.DeepCopy(), *spec.Resources.DeepCopy()),
		VolumeMounts: append(plan.mounts, w.Mounts...),
		SecurityContext: &corev1.SecurityContext{
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			Privileged:               new(false),
			RunAsNonRoot:             new(true),
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if !w.Standalone { // a native sidecar: an init container that keeps running
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
	}
	if spec.ProbesEnabled == nil || *spec.ProbesEnabled {
		probe := func(path string) *corev1.Probe {
			return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(spec.ManagementPort), Scheme: corev1.URISchemeHTTP}}}
		}
		c.LivenessProbe, c.ReadinessProbe, c.StartupProbe = probe("/healthz"), probe("/readyz"), probe("/readyz")
		c.LivenessProbe.InitialDelaySeconds, c.ReadinessProbe.InitialDelaySeconds = probeInitialDelay, probeInitialDelay
		c.StartupProbe.PeriodSeconds, c.StartupProbe.FailureThreshold = 1, sidecarStartupSeconds
	}
	return c, nil
}
