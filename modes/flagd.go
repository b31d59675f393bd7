package modes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"sigs.k8s.io/yaml"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// FlagdCmd groups the flagd-compatible commands.
type FlagdCmd struct {
	Start FlagdStartCmd `cmd:"" help:"Serve flags like flagd: evaluation (gRPC/Connect), sync, OFREP and management listeners."`
}

// FlagdStartCmd is flagd's "start" command: the same flags, short names and FLAGD_*
// environment variables, so OpenFeature Operator pod specs run unchanged.
type FlagdStartCmd struct {
	Config string `name:"config" help:"Configuration file (JSON or YAML) whose keys are the long flag names, e.g. {\"sources\":[...],\"context-value\":{...}}. Flags and FLAGD_* variables win over it." type:"path" env:"FLAGD_CONFIG"`

	URI     []string `name:"uri" short:"f" help:"Flag source URI (file:, http(s)://, grpc(s)://, core.openfeature.dev/<ns>/<name>). Repeatable; later sources win." env:"FLAGD_URI" sep:","`
	Sources string   `name:"sources" short:"s" help:"JSON array of source configurations ({\"uri\",\"provider\",...}), after the --uri sources." env:"FLAGD_SOURCES"`

	BindAddress    string `name:"bind-address" help:"Address the TCP listeners bind to (the injected sidecar uses 127.0.0.1)." default:"" env:"FLAGD_BIND_ADDRESS"`
	Port           uint16 `name:"port" short:"p" help:"Evaluation listener port (gRPC, gRPC-Web, Connect)." default:"8013" env:"FLAGD_PORT"`
	ManagementPort uint16 `name:"management-port" short:"m" help:"Management listener port (/healthz, /readyz, /metrics, gRPC health)." default:"8014" env:"FLAGD_MANAGEMENT_PORT"`
	SyncPort       uint16 `name:"sync-port" short:"g" help:"Sync listener port (flagd.sync.v1, for in-process providers)." default:"8015" env:"FLAGD_SYNC_PORT"`
	OfrepPort      uint16 `name:"ofrep-port" short:"r" help:"OFREP listener port." default:"8016" env:"FLAGD_OFREP_PORT"`
	SocketPath     string `name:"socket-path" short:"d" help:"Serve evaluation on this unix socket instead of TCP." env:"FLAGD_SOCKET_PATH"`
	SyncSocketPath string `name:"sync-socket-path" short:"e" help:"Serve sync on this unix socket instead of TCP." env:"FLAGD_SYNC_SOCKET_PATH"`

	ServerCertPath string `name:"server-cert-path" short:"c" help:"TLS certificate for the evaluation and sync listeners (reloaded when it changes)." env:"FLAGD_SERVER_CERT_PATH"`
	ServerKeyPath  string `name:"server-key-path" short:"k" help:"TLS key for the evaluation and sync listeners." env:"FLAGD_SERVER_KEY_PATH"`
	OfrepTLS       bool   `name:"ofrep-tls" help:"Serve OFREP over TLS too, with the same certificate (flagd's OFREP has no TLS)." env:"FLAGD_OFREP_TLS"`

	CORSOrigin        []string          `name:"cors-origin" short:"C" help:"Allowed CORS origins (\"*\" for all). Empty: no CORS (flagd allows every origin)." env:"FLAGD_CORS_ORIGIN" sep:","`
	ContextValue      map[string]string `name:"context-value" short:"X" help:"Static evaluation context entries, key=value (comma-separated)." env:"FLAGD_CONTEXT_VALUE" mapsep:","`
	ContextFromHeader map[string]string `name:"context-from-header" short:"H" help:"Map request headers into the evaluation context, Header=contextKey (comma-separated)." env:"FLAGD_CONTEXT_FROM_HEADER" mapsep:","`

	StreamDeadline               time.Duration `name:"stream-deadline" help:"End event and sync streams after this long (0: never)." default:"0s" env:"FLAGD_STREAM_DEADLINE"`
	DisableSyncMetadata          bool          `name:"disable-sync-metadata" help:"Answer GetMetadata with Unimplemented." env:"FLAGD_DISABLE_SYNC_METADATA"`
	MaxRequestBody               int64         `name:"max-request-body" short:"B" help:"Request body limit in bytes for evaluation and OFREP (0: none)." default:"1000000" env:"FLAGD_MAX_REQUEST_BODY"`
	MaxRequestHeader             int           `name:"max-request-header" short:"R" help:"Request header limit in bytes (0: Go's default, 1 MiB)." default:"1000000" env:"FLAGD_MAX_REQUEST_HEADER"`
	KeepAliveMinTime             time.Duration `name:"keep-alive-min-time" help:"Minimum interval sync clients may send keepalive pings at." default:"30s" env:"FLAGD_KEEP_ALIVE_MIN_TIME"`
	KeepAlivePermitWithoutStream bool          `name:"keep-alive-permit-without-stream" help:"Allow sync keepalive pings without an open stream." default:"true" negatable:"" env:"FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM"`

	MetricsExporter  string `name:"metrics-exporter" short:"t" help:"Metrics exporter: \"\" or \"prometheus\" (served on /metrics). OTLP export is not supported." env:"FLAGD_METRICS_EXPORTER"`
	OtelCollectorURI string `name:"otel-collector-uri" short:"o" help:"Not supported (OTLP export); rejected if set." env:"FLAGD_OTEL_COLLECTOR_URI"`
	OtelCertPath     string `name:"otel-cert-path" short:"D" hidden:"" env:"FLAGD_OTEL_CERT_PATH"`
	OtelKeyPath      string `name:"otel-key-path" short:"K" hidden:"" env:"FLAGD_OTEL_KEY_PATH"`
	OtelCAPath       string `name:"otel-ca-path" short:"A" hidden:"" env:"FLAGD_OTEL_CA_PATH"`
	OtelReload       string `name:"otel-reload-interval" short:"I" hidden:"" env:"FLAGD_OTEL_RELOAD_INTERVAL"`
	Debug            bool   `name:"debug" short:"x" help:"Debug logging (same as --log-level debug)." env:"FLAGD_DEBUG"`
}

// Validate runs after parsing (kong calls it): it checks combinations kong cannot.
func (c *FlagdStartCmd) Validate() error {
	if (c.ServerCertPath == "") != (c.ServerKeyPath == "") {
		return errors.New("--server-cert-path and --server-key-path must be given together")
	}
	if c.OfrepTLS && c.ServerCertPath == "" {
		return errors.New("--ofrep-tls needs --server-cert-path and --server-key-path")
	}
	switch strings.ToLower(c.MetricsExporter) {
	case "", "prometheus":
	default:
		return fmt.Errorf("--metrics-exporter %q is not supported: metrics are served in Prometheus format on the management port's /metrics", c.MetricsExporter)
	}
	if c.OtelCollectorURI != "" {
		return errors.New("--otel-collector-uri is not supported: scrape /metrics on the management port instead")
	}
	if c.MaxRequestBody < 0 || c.MaxRequestHeader < 0 {
		return errors.New("--max-request-body and --max-request-header must not be negative")
	}
	ports := map[uint16]string{}
	for name, p := range map[string]uint16{"--port": c.Port, "--management-port": c.ManagementPort, "--sync-port": c.SyncPort, "--ofrep-port": c.OfrepPort} {
		if p == 0 {
			continue // 0 picks a free port (tests)
		}
		if other, dup := ports[p]; dup {
			names := []string{other, name}
			sort.Strings(names)
			return fmt.Errorf("%s and %s are both %d", names[0], names[1], p)
		}
		ports[p] = name
	}
	return nil
}

// SourceConfigs combines --uri and --sources in flagd's order (later sources win).
func (c *FlagdStartCmd) SourceConfigs() ([]flagsync.SourceConfig, error) {
	sources, err := flagsync.ParseSources(c.Sources)
	if err != nil {
		return nil, err
	}
	all, err := flagsync.Combine(c.URI, sources)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errors.New("no flag sources: give at least one --uri/-f or --sources/-s")
	}
	return all, nil
}

// ConfigResolver resolves flags from the file named by --config, with flagd's
// precedence: a flag on the command line or its FLAGD_* variable wins over the file.
// Values are converted to the command-line syntax (sources: the JSON array; maps:
// key=value pairs; lists: comma-separated).
func ConfigResolver() kong.Resolver {
	var file configFile
	return kong.ResolverFunc(func(kctx *kong.Context, parent *kong.Path, flag *kong.Flag) (any, error) {
		if flag.Name == "config" {
			return nil, nil
		}
		path := configPath(kctx)
		if path == "" {
			return nil, nil
		}
		if err := file.load(path); err != nil {
			return nil, err
		}
		for _, env := range flag.Tag.Envs {
			if _, set := os.LookupEnv(env); set {
				return nil, nil
			}
		}
		v, ok := file.values[flag.Name]
		if !ok {
			return nil, nil
		}
		s, err := configValue(v)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %q: %w", path, flag.Name, err)
		}
		return s, nil
	})
}

// configPath finds the --config value (or FLAGD_CONFIG) of the command being parsed.
func configPath(kctx *kong.Context) string {
	for _, f := range kctx.Flags() {
		if f.Name == "config" {
			if s, ok := kctx.FlagValue(f).(string); ok {
				return s
			}
		}
	}
	return ""
}

// configFile is a --config file, read once.
type configFile struct {
	path   string
	values map[string]any
	err    error
}

// load reads a JSON or YAML config file unless it was already read.
func (f *configFile) load(path string) error {
	if f.path == path {
		return f.err
	}
	f.path, f.values, f.err = path, map[string]any{}, nil
	data, err := os.ReadFile(path)
	if err == nil {
		data, err = yaml.YAMLToJSON(data) // JSON is YAML too
	}
	if err == nil {
		err = json.Unmarshal(data, &f.values)
	}
	if err != nil {
		f.err = fmt.Errorf("--config %s: %w", filepath.Clean(path), err)
	}
	return f.err
}

// configValue renders a config file value in command-line syntax.
func configValue(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return t, nil
	case bool:
		return strconv.FormatBool(t), nil
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), nil
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		pairs := make([]string, 0, len(t))
		for _, k := range keys {
			s, err := configValue(t[k])
			if err != nil {
				return "", err
			}
			pairs = append(pairs, k+"="+s)
		}
		return strings.Join(pairs, ","), nil
	case []any:
		if len(t) > 0 {
			if _, isObject := t[0].(map[string]any); isObject { // sources
				b, err := json.Marshal(t)
				return string(b), err
			}
		}
		parts := make([]string, len(t))
		for i, e := range t {
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("unsupported value %v", v)
}
