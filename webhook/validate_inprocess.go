package webhook

import (
	"path"
	"strings"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
)

// ValidateInProcessConfiguration returns the AdmitFunc of InProcessConfigurations,
// whose fields become environment variables of the application's flagd provider:
// the port, a host that is a DNS name or an IP address (without port), the cache
// settings, a flagd selector the sync service accepts, and environment variable names
// (with the prefix) a pod accepts. Warned: a relative offlineFlagSourcePath, a prefix
// other than FLAGD (the providers read FLAGD_* only), variables the operator sets
// itself, credentials in plain text.
func ValidateInProcessConfiguration() AdmitFunc {
	return validator[v1beta1.InProcessConfiguration](KindInProcessConfiguration, false,
		func(r *report, ipc *v1beta1.InProcessConfiguration, _ string, _ []byte) {
			checkInProcess(r, &ipc.Spec)
		})
}

// defaultSyncServicePort is the CRD default of InProcessConfiguration.port.
const defaultSyncServicePort = 8015

// ipcOperatorEnv are the variables the operator sets from an InProcessConfiguration
// (OFO's ToEnvVars), by suffix after the prefix.
var ipcOperatorEnv = map[string]string{
	"HOST": "from spec.host", "PORT": "from spec.port", "TLS": "from spec.tls", "CACHE": "from spec.cache",
	"MAX_CACHE_SIZE": "from spec.cacheMaxSize", "RESOLVER": "in-process", "SOCKET_PATH": "from spec.socketPath",
	"OFFLINE_FLAG_SOURCE_PATH": "from spec.offlineFlagSourcePath", "SOURCE_SELECTOR": "from spec.selector",
}

func checkInProcess(r *report, s *v1beta1.InProcessConfigurationSpec) {
	port(r, "spec.port", s.Port, defaultSyncServicePort)
	if s.Host != "" {
		host(r, "spec.host", s.Host)
	}
	if strings.ContainsRune(s.SocketPath, 0) || len(s.SocketPath) > 107 {
		r.problemf("spec.socketPath", "must be a unix socket path: at most 107 bytes, no NUL")
	}
	switch s.Cache {
	case "", "lru", "disabled":
	default:
		r.problemf("spec.cache", "must be lru or disabled, got %q", s.Cache)
	}
	if s.CacheMaxSize < 0 {
		r.problemf("spec.cacheMaxSize", "must be at least 1, got %d (cache: disabled turns the cache off)", s.CacheMaxSize)
	}
	if s.Selector != "" {
		selector(r, "spec.selector", s.Selector)
	}
	if p := s.OfflineFlagSourcePath; p != "" {
		switch {
		case strings.ContainsRune(p, 0):
			r.problemf("spec.offlineFlagSourcePath", "must be a file path: no NUL")
		case !path.IsAbs(p):
			r.warnf("spec.offlineFlagSourcePath", "%q is relative: the provider resolves it against the application's working directory; use an absolute path", p)
		}
	}
	prefix := envVarPrefix(r, "spec.envVarPrefix", s.EnvVarPrefix)
	envVars(r, "spec.envVars", prefix, s.EnvVars, false, ipcOperatorEnv, KindInProcessConfiguration)
}
