// Package startconfig is the contract between whoever starts flagd mode and flagd
// mode itself: Config holds every option of `flagpole flagd start` (flagd's `start`
// flags, short names and FLAGD_* variables, plus flagpole's additions), Parse reads
// a command line into it exactly as the binary does, and Args renders it back into
// a command line. flagd mode parses with it; the admission webhook and the Flagd
// controller render the sidecar's and the standalone flagd's args with it. A
// round-trip test (render → parse → equal) over every option keeps the two sides
// from drifting, so an injected pod can never carry args its sidecar rejects.
package startconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// Config is flagd mode's configuration. The kong tags are the command line: names,
// short names, defaults and FLAGD_* variables as flagd's (flagd-compat §5).
type Config struct {
	ConfigFile string `name:"config" help:"Configuration file (JSON or YAML) whose keys are the long flag names, e.g. {\"sources\":[...],\"context-value\":{...}}. Flags and FLAGD_* variables win over it." type:"path" env:"FLAGD_CONFIG"`

	URI     []string   `name:"uri" short:"f" help:"Flag source URI (file:, http(s)://, grpc(s)://, core.openfeature.dev/<ns>/<name>). Repeatable; later sources win." env:"FLAGD_URI" sep:","`
	Sources SourceList `name:"sources" short:"s" help:"JSON array of source configurations ({\"uri\",\"provider\",...}), after the --uri sources." env:"FLAGD_SOURCES"`

	BindAddress    string `name:"bind-address" help:"Address the evaluation, sync and OFREP listeners bind to (the injected sidecar uses 127.0.0.1). Empty: every interface." default:"" env:"FLAGD_BIND_ADDRESS"`
	ManagementBind string `name:"management-bind-address" help:"Address the management listener binds to; empty: --bind-address. The injected sidecar keeps management on the pod IP for the kubelet's probes." default:"" env:"FLAGD_MANAGEMENT_BIND_ADDRESS"`
	Port           uint16 `name:"port" short:"p" help:"Evaluation listener port (gRPC, gRPC-Web, Connect)." default:"8013" env:"FLAGD_PORT"`
	ManagementPort uint16 `name:"management-port" short:"m" help:"Management listener port (/healthz, /readyz, /metrics, gRPC health)." default:"8014" env:"FLAGD_MANAGEMENT_PORT"`
	SyncPort       uint16 `name:"sync-port" short:"g" help:"Sync listener port (flagd.sync.v1, for in-process providers)." default:"8015" env:"FLAGD_SYNC_PORT"`
	OfrepPort      uint16 `name:"ofrep-port" short:"r" help:"OFREP listener port." default:"8016" env:"FLAGD_OFREP_PORT"`
	SocketPath     string `name:"socket-path" short:"d" help:"Serve evaluation on this unix socket instead of TCP." env:"FLAGD_SOCKET_PATH"`
	SyncSocketPath string `name:"sync-socket-path" short:"e" help:"Serve sync on this unix socket instead of TCP." env:"FLAGD_SYNC_SOCKET_PATH"`

	ServerCertPath string `name:"server-cert-path" short:"c" help:"TLS certificate for the evaluation and sync listeners (reloaded when it changes)." env:"FLAGD_SERVER_CERT_PATH"`
	ServerKeyPath  string `name:"server-key-path" short:"k" help:"TLS key for the evaluation and sync listeners." env:"FLAGD_SERVER_KEY_PATH"`
	OfrepTLS       bool   `name:"ofrep-tls" help:"Serve OFREP over TLS too, with the same certificate (flagd's OFREP has no TLS)." env:"FLAGD_OFREP_TLS"`
	ClientCAPath   string `name:"client-ca-path" help:"Require client certificates signed by these CAs (PEM) on the TLS listeners (mutual TLS; needs --server-cert-path)." env:"FLAGD_CLIENT_CA_PATH"`
	AuthTokenFile  string `name:"auth-token-file" help:"Require \"Authorization: Bearer <token>\" on the evaluation, OFREP and sync listeners, with a token listed in this file (one per line; re-read when it changes). Management stays open for probes." env:"FLAGD_AUTH_TOKEN_FILE"`

	CORSOrigin        []string          `name:"cors-origin" short:"C" help:"Allowed CORS origins: exact, \"*\" for all, or one \"*\" inside (https://*.example.com). Empty: no CORS (flagd allows every origin)." env:"FLAGD_CORS_ORIGIN" sep:","`
	ContextValue      map[string]string `name:"context-value" short:"X" help:"Static evaluation context entries, key=value (comma-separated)." env:"FLAGD_CONTEXT_VALUE" mapsep:","`
	ContextFromHeader map[string]string `name:"context-from-header" short:"H" help:"Map request headers into the evaluation context, Header=contextKey (comma-separated)." env:"FLAGD_CONTEXT_FROM_HEADER" mapsep:","`

	StreamDeadline               time.Duration `name:"stream-deadline" help:"End event and sync streams after this long (0: never)." default:"0s" env:"FLAGD_STREAM_DEADLINE"`
	DisableSyncMetadata          bool          `name:"disable-sync-metadata" help:"Answer GetMetadata with Unimplemented." env:"FLAGD_DISABLE_SYNC_METADATA"`
	MaxRequestBody               int64         `name:"max-request-body" short:"B" help:"Request body limit in bytes for evaluation and OFREP (0: none)." default:"1000000" env:"FLAGD_MAX_REQUEST_BODY"`
	MaxRequestHeader             int           `name:"max-request-header" short:"R" help:"Request header limit in bytes (0: Go's default, 1 MiB)." default:"1000000" env:"FLAGD_MAX_REQUEST_HEADER"`
	KeepAliveMinTime             time.Duration `name:"keep-alive-min-time" help:"Minimum interval sync clients may send keepalive pings at." default:"30s" env:"FLAGD_KEEP_ALIVE_MIN_TIME"`
	KeepAlivePermitWithoutStream bool          `name:"keep-alive-permit-without-stream" help:"Allow sync keepalive pings without an open stream." default:"true" negatable:"" env:"FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM"`
	MaxConnections               int           `name:"max-connections" help:"Connections the evaluation, sync and OFREP listeners may hold open together; more are refused (503 on plaintext HTTP). 0: derived from the open-files limit, at most 10000." default:"0" env:"FLAGD_MAX_CONNECTIONS"`
	IdleTimeout                  time.Duration `name:"idle-timeout" help:"Close a connection without a request or stream in progress after this long (0: never)." default:"2m" env:"FLAGD_IDLE_TIMEOUT"`

	MetricsExporter    string        `name:"metrics-exporter" short:"t" help:"Metrics exporter: \"\" or \"prometheus\" (served on /metrics), or \"otel\" (also pushed over OTLP to --otel-collector-uri)." env:"FLAGD_METRICS_EXPORTER"`
	OtelCollectorURI   string        `name:"otel-collector-uri" short:"o" help:"OTLP/gRPC collector (host:port: plaintext unless TLS files are given; http://host:port; https://host:port): traces are exported there, and metrics with --metrics-exporter otel." env:"FLAGD_OTEL_COLLECTOR_URI"`
	OtelCertPath       string        `name:"otel-cert-path" short:"D" help:"Client certificate for the collector connection (mutual TLS)." env:"FLAGD_OTEL_CERT_PATH"`
	OtelKeyPath        string        `name:"otel-key-path" short:"K" help:"Client key for the collector connection." env:"FLAGD_OTEL_KEY_PATH"`
	OtelCAPath         string        `name:"otel-ca-path" short:"A" help:"CA certificates the collector's certificate must chain to (TLS)." env:"FLAGD_OTEL_CA_PATH"`
	OtelReloadInterval time.Duration `name:"otel-reload-interval" short:"I" help:"How often the collector TLS files are re-read (rotation without restart); 0 reads them once." default:"1h" env:"FLAGD_OTEL_RELOAD_INTERVAL"`

	Debug bool `name:"debug" short:"x" help:"Debug logging (same as --log-level debug)." env:"FLAGD_DEBUG"`
}

// Default returns the configuration flagd start has without any flag.
func Default() Config {
	return Config{Port: 8013, ManagementPort: 8014, SyncPort: 8015, OfrepPort: 8016, MaxRequestBody: 1000000,
		MaxRequestHeader: 1000000, KeepAliveMinTime: 30 * time.Second, KeepAlivePermitWithoutStream: true,
		IdleTimeout: 2 * time.Minute, OtelReloadInterval: time.Hour}
}

// Validate checks combinations kong cannot (kong calls it after parsing).
func (c *Config) Validate() error {
	if (c.ServerCertPath == "") != (c.ServerKeyPath == "") {
		return errors.New("--server-cert-path and --server-key-path must be given together")
	}
	if c.OfrepTLS && c.ServerCertPath == "" {
		return errors.New("--ofrep-tls needs --server-cert-path and --server-key-path")
	}
	if c.ClientCAPath != "" && c.ServerCertPath == "" {
		return errors.New("--client-ca-path needs --server-cert-path and --server-key-path (client certificates are checked in TLS)")
	}
	switch strings.ToLower(c.MetricsExporter) {
	case "", "prometheus":
	case "otel":
		if c.OtelCollectorURI == "" {
			return errors.New("--metrics-exporter otel needs --otel-collector-uri")
		}
	default:
		return fmt.Errorf("--metrics-exporter %q: want \"\" or \"prometheus\" (Prometheus on /metrics) or \"otel\" (also OTLP)", c.MetricsExporter)
	}
	if (c.OtelCertPath == "") != (c.OtelKeyPath == "") {
		return errors.New("--otel-cert-path and --otel-key-path must be given together")
	}
	if c.OtelCollectorURI == "" && (c.OtelCertPath != "" || c.OtelCAPath != "") {
		return errors.New("--otel-cert-path, --otel-key-path and --otel-ca-path need --otel-collector-uri")
	}
	if c.OtelReloadInterval < 0 || c.StreamDeadline < 0 || c.KeepAliveMinTime < 0 {
		return errors.New("--otel-reload-interval, --stream-deadline and --keep-alive-min-time must not be negative")
	}
	if c.MaxRequestBody < 0 || c.MaxRequestHeader < 0 || c.MaxConnections < 0 {
		return errors.New("--max-request-body, --max-request-header and --max-connections must not be negative")
	}
	if c.IdleTimeout < 0 {
		return errors.New("--idle-timeout must not be negative")
	}
	ports := map[uint16]string{}
	for _, p := range []struct {
		name string
		port uint16
	}{{"--port", c.Port}, {"--management-port", c.ManagementPort}, {"--sync-port", c.SyncPort}, {"--ofrep-port", c.OfrepPort}} {
		if p.port == 0 {
			continue // 0 picks a free port (tests)
		}
		if other, dup := ports[p.port]; dup {
			return fmt.Errorf("%s and %s are both %d", other, p.name, p.port)
		}
		ports[p.port] = p.name
	}
	return nil
}

// SourceConfigs combines --uri and --sources in flagd's order (later sources win).
func (c *Config) SourceConfigs() ([]flagsync.SourceConfig, error) {
	all, err := flagsync.Combine(c.URI, c.Sources)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, errors.New("no flag sources: give at least one --uri/-f or --sources/-s")
	}
	return all, nil
}

// SourceList is the --sources JSON array, parsed and validated when the flag is read.
type SourceList []flagsync.SourceConfig

// Decode implements kong.MapperValue: the value is flagd's JSON array.
func (l *SourceList) Decode(ctx *kong.DecodeContext) error {
	var raw string
	if err := ctx.Scan.PopValueInto("sources", &raw); err != nil {
		return err
	}
	sources, err := flagsync.ParseSources(raw)
	if err != nil {
		return err
	}
	if len(sources) == 0 {
		sources = nil // "[]" is no sources, as an absent flag
	}
	*l = sources
	return nil
}

// Args renders c as the command line that Parse reads back into c: "start", then
// the options in the OpenFeature Operator's order (--management-port, --port,
// --sources, --debug, --metrics-exporter and --otel-collector-uri, --context-value
// and --context-from-header sorted by key, --cors-origin, --ofrep-port), then the
// others in a fixed order, each only when it differs from Default. The ports OFO
// always passes are always rendered. Values that a command line cannot carry (a
// map key with "=") are an error, and so is --config: the file would supply values
// for the options rendered as defaults, so the result would not be c.
func (c *Config) Args() ([]string, error) {
	if c.ConfigFile != "" {
		return nil, fmt.Errorf("--config %s: a configuration read from a file cannot be rendered exactly; render the options themselves", c.ConfigFile)
	}
	def := Default()
	args := []string{"start", "--management-port", fmt.Sprint(c.ManagementPort), "--port", fmt.Sprint(c.Port)}
	if len(c.Sources) > 0 {
		b, err := json.Marshal(c.Sources)
		if err != nil {
			return nil, fmt.Errorf("--sources: %w", err)
		}
		args = append(args, "--sources", string(b))
	}
	if c.Debug {
		args = append(args, "--debug")
	}
	args = appendString(args, "--metrics-exporter", c.MetricsExporter)
	args = appendString(args, "--otel-collector-uri", c.OtelCollectorURI)
	for _, m := range []struct {
		name   string
		values map[string]string
	}{{"--context-value", c.ContextValue}, {"--context-from-header", c.ContextFromHeader}} {
		keys := make([]string, 0, len(m.values))
		for k := range m.values {
			if k == "" || strings.Contains(k, "=") {
				return nil, fmt.Errorf("%s: key %q cannot be given on a command line (empty or with \"=\")", m.name, k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v, err := listValue(m.name, k+"="+m.values[k])
			if err != nil {
				return nil, err
			}
			args = append(args, m.name, v)
		}
	}
	for _, o := range c.CORSOrigin {
		v, err := listValue("--cors-origin", o)
		if err != nil {
			return nil, err
		}
		args = append(args, "--cors-origin", v)
	}
	args = append(args, "--ofrep-port", fmt.Sprint(c.OfrepPort))
	for _, u := range c.URI {
		v, err := listValue("--uri", u)
		if err != nil {
			return nil, err
		}
		args = append(args, "--uri", v)
	}
	if c.SyncPort != def.SyncPort {
		args = append(args, "--sync-port", fmt.Sprint(c.SyncPort))
	}
	args = appendString(args, "--bind-address", c.BindAddress)
	args = appendString(args, "--management-bind-address", c.ManagementBind)
	args = appendString(args, "--socket-path", c.SocketPath)
	args = appendString(args, "--sync-socket-path", c.SyncSocketPath)
	args = appendString(args, "--server-cert-path", c.ServerCertPath)
	args = appendString(args, "--server-key-path", c.ServerKeyPath)
	if c.OfrepTLS {
		args = append(args, "--ofrep-tls")
	}
	args = appendString(args, "--client-ca-path", c.ClientCAPath)
	args = appendString(args, "--auth-token-file", c.AuthTokenFile)
	if c.StreamDeadline != def.StreamDeadline {
		args = append(args, "--stream-deadline", c.StreamDeadline.String())
	}
	if c.DisableSyncMetadata {
		args = append(args, "--disable-sync-metadata")
	}
	if c.MaxRequestBody != def.MaxRequestBody {
		args = append(args, "--max-request-body", fmt.Sprint(c.MaxRequestBody))
	}
	if c.MaxRequestHeader != def.MaxRequestHeader {
		args = append(args, "--max-request-header", fmt.Sprint(c.MaxRequestHeader))
	}
	if c.KeepAliveMinTime != def.KeepAliveMinTime {
		args = append(args, "--keep-alive-min-time", c.KeepAliveMinTime.String())
	}
	if !c.KeepAlivePermitWithoutStream {
		args = append(args, "--no-keep-alive-permit-without-stream")
	}
	if c.MaxConnections != def.MaxConnections {
		args = append(args, "--max-connections", fmt.Sprint(c.MaxConnections))
	}
	if c.IdleTimeout != def.IdleTimeout {
		args = append(args, "--idle-timeout", c.IdleTimeout.String())
	}
	args = appendString(args, "--otel-cert-path", c.OtelCertPath)
	args = appendString(args, "--otel-key-path", c.OtelKeyPath)
	args = appendString(args, "--otel-ca-path", c.OtelCAPath)
	if c.OtelReloadInterval != def.OtelReloadInterval {
		args = append(args, "--otel-reload-interval", c.OtelReloadInterval.String())
	}
	return args, nil
}

func appendString(args []string, flag, value string) []string {
	if value == "" {
		return args
	}
	return append(args, flag, value)
}

// listValue renders one value of a list or map flag. kong splits those on commas,
// reads "\," as a literal comma and keeps every other backslash, so commas are
// escaped and a backslash right before a comma cannot be carried.
func listValue(flag, v string) (string, error) {
	if strings.Contains(v, `\,`) {
		return "", fmt.Errorf("%s: %q cannot be given on a command line (a backslash before a comma)", flag, v)
	}
	return strings.ReplaceAll(v, ",", `\,`), nil
}

// Parse reads a command line ("start" and its flags, as Args renders it, or with
// flagd's short names) into a Config, with FLAGD_* variables and the --config file
// applied as the binary applies them, and validates it.
func Parse(args []string) (*Config, error) {
	var root struct {
		Start Config `cmd:""`
	}
	parser, err := kong.New(&root, kong.Name("flagpole"), kong.Resolvers(ConfigResolver()),
		kong.Exit(func(int) {}), kong.Writers(discard{}, discard{}))
	if err != nil {
		return nil, err
	}
	if _, err := parser.Parse(args); err != nil {
		return nil, err
	}
	return &root.Start, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Flags lists the long names of every option (for tests that must cover them all).
func Flags() []string {
	t := reflect.TypeFor[Config]()
	names := make([]string, 0, t.NumField())
	for field := range t.Fields() {
		if n := field.Tag.Get("name"); n != "" {
			names = append(names, n)
		}
	}
	return names
}
