package sidecar

import (
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// mergeSources merges a pod's FeatureFlagSources, in annotation order, over the
// operator's defaults (OFO's Merge, §2.4) with one fix: a scalar overrides only
// when it is set to something other than its CRD default, so a later source left
// at the default does not erase an earlier source's (or the operator's) explicit
// value (OFO: ffs-one sets port 8090, ffs-two left at 8013 → 8013). Sources,
// envVars and syncProviderArgs accumulate; resources, contextValues and
// headerToContextMappings merge per key; cors is replaced.
func mergeSources(base Defaults, specs []*v1beta1.FeatureFlagSourceSpec) v1beta1.FeatureFlagSourceSpec {
	probes, debug, rollout := base.ProbesEnabled, false, false
	out := v1beta1.FeatureFlagSourceSpec{
		Port: base.Port, ManagementPort: base.ManagementPort, SocketPath: base.SocketPath, Evaluator: base.Evaluator,
		DefaultSyncProvider: base.DefaultSyncProvider, EnvVarPrefix: base.EnvVarPrefix, LogFormat: base.LogFormat,
		OfrepPort: base.OfrepPort, ProbesEnabled: &probes, DebugLogging: &debug, RolloutOnChange: &rollout,
	}
	for _, s := range specs {
		setInt(&out.Port, s.Port, v1beta1.DefaultPort)
		setInt(&out.ManagementPort, s.ManagementPort, v1beta1.DefaultManagementPort)
		setInt(&out.OfrepPort, s.OfrepPort, v1beta1.DefaultOfrepPort)
		setString(&out.SocketPath, s.SocketPath, "")
		setString(&out.Evaluator, s.Evaluator, v1beta1.DefaultEvaluator)
		setString(&out.DefaultSyncProvider, s.DefaultSyncProvider, "")
		setString(&out.EnvVarPrefix, s.EnvVarPrefix, v1beta1.DefaultEnvVarPrefix)
		setString(&out.LogFormat, s.LogFormat, v1beta1.DefaultLogFormat)
		setString(&out.OtelCollectorURI, s.OtelCollectorURI, "")
		setBool(out.ProbesEnabled, s.ProbesEnabled, true)
		setBool(out.DebugLogging, s.DebugLogging, false)
		setBool(out.RolloutOnChange, s.RolloutOnChange, false)
		out.Sources = append(out.Sources, s.Sources...)
		out.EnvVars = append(out.EnvVars, s.EnvVars...)
		out.SyncProviderArgs = append(out.SyncProviderArgs, s.SyncProviderArgs...)
		out.Resources = mergeResources(out.Resources, s.Resources)
		out.ContextValues = mergeMap(out.ContextValues, s.ContextValues)
		out.HeaderToContextMappings = mergeMap(out.HeaderToContextMappings, s.HeaderToContextMappings)
		if len(s.Cors) > 0 {
			out.Cors = append([]string(nil), s.Cors...)
		}
	}
	out.EnvVars = lastEnvWins(out.EnvVars)
	out.SyncProviderArgs = firstStringWins(out.SyncProviderArgs)
	return out
}

func setInt(dst *int32, v, crdDefault int32) {
	if v != 0 && v != crdDefault {
		*dst = v
	}
}

func setString(dst *string, v, crdDefault string) {
	if v != "" && v != crdDefault {
		*dst = v
	}
}

func setBool(dst *bool, v *bool, crdDefault bool) {
	if v != nil && *v != crdDefault {
		*dst = *v
	}
}

func mergeMap(dst, src map[string]string) map[string]string {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]string{}
	}
	maps.Copy(dst, src)
	return dst
}

func mergeResources(dst, src corev1.ResourceRequirements) corev1.ResourceRequirements {
	for _, m := range []struct {
		dst *corev1.ResourceList
		src corev1.ResourceList
	}{{&dst.Limits, src.Limits}, {&dst.Requests, src.Requests}} {
		if len(m.src) == 0 {
			continue
		}
		if *m.dst == nil {
			*m.dst = corev1.ResourceList{}
		}
		maps.Copy(*m.dst, m.src)
	}
	return dst
}

// lastEnvWins keeps, for each name, the last definition, at the position of that
// last definition (OFO keeps the last one too, but reverses the list).
func lastEnvWins(env []corev1.EnvVar) []corev1.EnvVar {
	last := map[string]int{}
	for i, e := range env {
		last[e.Name] = i
	}
	var out []corev1.EnvVar
	for i, e := range env {
		if last[e.Name] == i {
			out = append(out, e)
		}
	}
	return out
}

func firstStringWins(items []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range items {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
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

// InProcessEnv is the environment in-process mode gives every app container (OFO
// §2.11), from the workload's InProcessConfigurations merged over the operator's
// defaults with the same rule as FeatureFlagSources (a value equal to its CRD
// default does not override; the last definition of an envVar name wins, in its
// original order): the envVars under the prefix, then <P>_HOST, <P>_PORT, <P>_TLS,
// <P>_CACHE, <P>_MAX_CACHE_SIZE, <P>_RESOLVER=in-process, and <P>_SOCKET_PATH,
// <P>_OFFLINE_FLAG_SOURCE_PATH, <P>_SOURCE_SELECTOR when set.
//
// Every value is literal: escaped for the kubelet's $(VAR) expansion, which would
// otherwise fill it from the app container's own environment (its secrets) for a
// provider that connects to a host the configuration names.
func InProcessEnv(base InProcessDefaults, specs []*v1beta1.InProcessConfigurationSpec) []corev1.EnvVar {
	cfg, userEnv := mergeInProcess(base, specs)
	p := cfg.EnvVarPrefix
	var env []corev1.EnvVar
	for _, e := range userEnv {
		v := *e.DeepCopy()
		v.Name = EnvKey(p, e.Name)
		v.Value = escapeExpansion(v.Value)
		env = append(env, v)
	}
	env = append(env,
		corev1.EnvVar{Name: EnvKey(p, "HOST"), Value: escapeExpansion(cfg.Host)},
		corev1.EnvVar{Name: EnvKey(p, "PORT"), Value: strconv.Itoa(int(cfg.Port))},
		corev1.EnvVar{Name: EnvKey(p, "TLS"), Value: strconv.FormatBool(cfg.TLS)},
		corev1.EnvVar{Name: EnvKey(p, "CACHE"), Value: escapeExpansion(cfg.Cache)},
		corev1.EnvVar{Name: EnvKey(p, "MAX_CACHE_SIZE"), Value: strconv.Itoa(int(cfg.CacheMaxSize))},
		corev1.EnvVar{Name: EnvKey(p, "RESOLVER"), Value: "in-process"},
	)
	for _, opt := range []struct{ name, value string }{
		{"SOCKET_PATH", cfg.SocketPath}, {"OFFLINE_FLAG_SOURCE_PATH", cfg.OfflineFlagSourcePath}, {"SOURCE_SELECTOR", cfg.Selector},
	} {
		if opt.value != "" {
			env = append(env, corev1.EnvVar{Name: EnvKey(p, opt.name), Value: escapeExpansion(opt.value)})
		}
	}
	return env
}

// mergeInProcess merges a pod's InProcessConfigurations over the operator's
// defaults with the same rule as mergeSources (a value equal to its CRD default
// does not override); envVars accumulate, the last definition of a name wins.
func mergeInProcess(base InProcessDefaults, specs []*v1beta1.InProcessConfigurationSpec) (InProcessDefaults, []corev1.EnvVar) {
	out := base
	var env []corev1.EnvVar
	for _, s := range specs {
		setInt(&out.Port, s.Port, v1beta1.DefaultInProcessPort)
		setString(&out.SocketPath, s.SocketPath, "")
		setString(&out.Host, s.Host, v1beta1.DefaultInProcessHost)
		if s.TLS {
			out.TLS = true
		}
		setString(&out.OfflineFlagSourcePath, s.OfflineFlagSourcePath, "")
		setString(&out.Selector, s.Selector, "")
		setString(&out.Cache, s.Cache, v1beta1.DefaultCache)
		setInt(&out.CacheMaxSize, s.CacheMaxSize, v1beta1.DefaultCacheMaxSize)
		setString(&out.EnvVarPrefix, s.EnvVarPrefix, v1beta1.DefaultEnvVarPrefix)
		env = append(env, s.EnvVars...)
	}
	return out, lastEnvWins(env)
}
