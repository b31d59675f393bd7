package startconfig

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// options sets each option to a value other than its default, chosen to exercise
// what a command line makes hard: separators inside list and map values, JSON with
// every source field, negated booleans. Every flag of Config but --config (which
// Args refuses: TestArgsRefusesWhatACommandLineCannotCarry) must have an entry.
func options(t *testing.T) map[string]func(*Config) {
	t.Helper()
	return map[string]func(*Config){
		"uri": func(c *Config) {
			c.URI = []string{"file:/etc/flags/a,b.json", `https://flags.example.com/f.json?a=1,2&b=\x`, "core.openfeature.dev/ns/name"}
		},
		"sources": func(c *Config) {
			c.Sources = SourceList{
				{URI: "ns/ff", Provider: "kubernetes"},
				{URI: "https://flags.example.com/f.json", Provider: "http", CertPath: "/ca.pem", Interval: 30, IntervalSeed: "seed",
					TimeoutS: 5, Headers: map[string]string{"X-Team": "a, b"}, AuthHeaderFile: "/var/run/secrets/auth", AllowInsecure: true},
				{URI: "flagd-proxy.ops.svc:8015", Provider: "grpc", TLS: true, ProviderID: "pod-1", Selector: "core.openfeature.dev/ns/ff",
					MaxMsgSize: 1 << 20, AuthHeaderEnv: "SYNC_TOKEN"},
				{URI: "flagd-proxy-svc.ops.svc.cluster.local:8015", Provider: "grpc", Selector: "core.openfeature.dev/ns/other",
					BearerTokenFile: "/var/run/secrets/flagpole.dev/flagd-proxy/token", AllowInsecure: true},
				{URI: "https://flags.example.com/o.json", Provider: "http", OAuth: &flagsync.OAuth{ClientID: "id", ClientSecret: "s", TokenURL: "https://t/token", ReloadDelayS: 3}},
			}
		},
		"bind-address":            func(c *Config) { c.BindAddress = "127.0.0.1" },
		"management-bind-address": func(c *Config) { c.ManagementBind = "0.0.0.0" },
		"port":                    func(c *Config) { c.Port = 9013 },
		"management-port":         func(c *Config) { c.ManagementPort = 9014 },
		"sync-port":               func(c *Config) { c.SyncPort = 9015 },
		"ofrep-port":              func(c *Config) { c.OfrepPort = 9016 },
		"socket-path":             func(c *Config) { c.SocketPath = "/tmp/flagd.sock" },
		"sync-socket-path":        func(c *Config) { c.SyncSocketPath = "/tmp/flagd-sync.sock" },
		"server-cert-path":        func(c *Config) { c.ServerCertPath, c.ServerKeyPath = "/tls/tls.crt", "/tls/tls.key" },
		"server-key-path":         func(c *Config) { c.ServerCertPath, c.ServerKeyPath = "/tls/a.crt", "/tls/a.key" },
		"ofrep-tls":               func(c *Config) { c.OfrepTLS, c.ServerCertPath, c.ServerKeyPath = true, "/tls/tls.crt", "/tls/tls.key" },
		"client-ca-path": func(c *Config) {
			c.ClientCAPath, c.ServerCertPath, c.ServerKeyPath = "/tls/clients.crt", "/tls/tls.crt", "/tls/tls.key"
		},
		"auth-token-file": func(c *Config) { c.AuthTokenFile = "/var/run/secrets/flagd/token" },
		"cors-origin":     func(c *Config) { c.CORSOrigin = []string{"https://*.example.com", "https://a.example,b"} },
		"context-value": func(c *Config) {
			c.ContextValue = map[string]string{"env": "prod", "list": "a,b", "eq": "x=y", "back": `c:\dir`}
		},
		"context-from-header":              func(c *Config) { c.ContextFromHeader = map[string]string{"X-Tenant": "tenant", "X-User-Id": "userId"} },
		"stream-deadline":                  func(c *Config) { c.StreamDeadline = 90 * time.Minute },
		"disable-sync-metadata":            func(c *Config) { c.DisableSyncMetadata = true },
		"max-request-body":                 func(c *Config) { c.MaxRequestBody = 0 },
		"max-request-header":               func(c *Config) { c.MaxRequestHeader = 65536 },
		"keep-alive-min-time":              func(c *Config) { c.KeepAliveMinTime = 5 * time.Second },
		"keep-alive-permit-without-stream": func(c *Config) { c.KeepAlivePermitWithoutStream = false },
		"max-connections":                  func(c *Config) { c.MaxConnections = 500 },
		"idle-timeout":                     func(c *Config) { c.IdleTimeout = 0 },
		"metrics-exporter":                 func(c *Config) { c.MetricsExporter, c.OtelCollectorURI = "otel", "otel-collector.observability:4317" },
		"otel-collector-uri":               func(c *Config) { c.OtelCollectorURI = "https://otel.example.com:4317" },
		"otel-cert-path": func(c *Config) {
			c.OtelCollectorURI, c.OtelCertPath, c.OtelKeyPath = "https://otel.example.com:4317", "/otel/tls.crt", "/otel/tls.key"
		},
		"otel-key-path": func(c *Config) {
			c.OtelCollectorURI, c.OtelCertPath, c.OtelKeyPath = "https://otel.example.com:4317", "/otel/c.crt", "/otel/c.key"
		},
		"otel-ca-path":         func(c *Config) { c.OtelCollectorURI, c.OtelCAPath = "https://otel.example.com:4317", "/otel/ca.crt" },
		"otel-reload-interval": func(c *Config) { c.OtelReloadInterval = 10 * time.Minute },
		"debug":                func(c *Config) { c.Debug = true },
	}
}

func roundTrip(t *testing.T, c Config) {
	t.Helper()
	args, err := c.Args()
	if err != nil {
		t.Fatalf("Args: %v", err)
	}
	got, err := Parse(args)
	if err != nil {
		t.Fatalf("Parse(%q): %v", args, err)
	}
	if diff := cmp.Diff(c, *got); diff != "" {
		t.Errorf("render → parse changed the configuration (-rendered +parsed):\n%s\nargs: %q", diff, args)
	}
}

// TestEveryOptionRoundTrips renders each option alone, and all of them together,
// and parses the result back: what the webhook renders is what the sidecar runs.
func TestEveryOptionRoundTrips(t *testing.T) {
	opts := options(t)
	for _, name := range Flags() {
		if _, ok := opts[name]; !ok && name != "config" {
			t.Errorf("option --%s has no round-trip case: add one to options()", name)
		}
	}
	t.Run("defaults", func(t *testing.T) { roundTrip(t, Default()) })
	all := Default()
	for name, set := range opts {
		t.Run(name, func(t *testing.T) {
			c := Default()
			set(&c)
			if reflect.DeepEqual(c, Default()) {
				t.Fatalf("the case for --%s does not change the configuration", name)
			}
			roundTrip(t, c)
		})
		set(&all)
	}
	t.Run("all at once", func(t *testing.T) { roundTrip(t, all) })
}

// TestArgsOrder: the OpenFeature Operator's order for the options it renders, with
// "start" first, so injected pods read like OFO's.
func TestArgsOrder(t *testing.T) {
	c := Default()
	c.Sources = SourceList{{URI: "ns/ff", Provider: "kubernetes"}}
	c.Debug = true
	c.MetricsExporter, c.OtelCollectorURI = "otel", "collector:4317"
	c.ContextValue = map[string]string{"b": "2", "a": "1"}
	c.ContextFromHeader = map[string]string{"X-B": "b", "X-A": "a"}
	c.CORSOrigin = []string{"https://app.example"}
	c.BindAddress = "127.0.0.1"
	args, err := c.Args()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"start", "--management-port", "8014", "--port", "8013",
		"--sources", `[{"uri":"ns/ff","provider":"kubernetes"}]`, "--debug",
		"--metrics-exporter", "otel", "--otel-collector-uri", "collector:4317",
		"--context-value", "a=1", "--context-value", "b=2",
		"--context-from-header", "X-A=a", "--context-from-header", "X-B=b",
		"--cors-origin", "https://app.example", "--ofrep-port", "8016", "--bind-address", "127.0.0.1"}
	if diff := cmp.Diff(want, args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
}

func TestArgsRefusesWhatACommandLineCannotCarry(t *testing.T) {
	withFile := Default()
	withFile.ConfigFile = "/etc/flagd/config.yaml"
	if _, err := withFile.Args(); err == nil || !strings.Contains(err.Error(), "--config") {
		t.Errorf("--config: error %v, want one naming --config", err)
	}
	c := Default()
	c.URI = []string{`file:C:\dir\,x`}
	if _, err := c.Args(); err == nil || !strings.Contains(err.Error(), "--uri") {
		t.Errorf("backslash before a comma: error %v, want one naming --uri", err)
	}
	for _, m := range []map[string]string{{"a=b": "x"}, {"": "x"}, {"k": `a\,b`}} {
		c := Default()
		c.ContextValue = m
		if _, err := c.Args(); err == nil || !strings.Contains(err.Error(), "--context-value") {
			t.Errorf("context value %q: error %v, want one naming --context-value", m, err)
		}
	}
}

// TestParseAcceptsFlagdCommandLines: flagd's short names and comma lists, as
// OpenFeature Operator pods and flagd users write them.
func TestParseAcceptsFlagdCommandLines(t *testing.T) {
	got, err := Parse([]string{"start", "-p", "1234", "-m", "1235", "-X", "a=1,b=2", "-f", "file:x.json", "-C", "https://a,https://b",
		"-s", `[{"uri":"ns/ff","provider":"kubernetes"}]`, "-x", "-t", "prometheus"})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Port, want.ManagementPort, want.Debug, want.MetricsExporter = 1234, 1235, true, "prometheus"
	want.ContextValue = map[string]string{"a": "1", "b": "2"}
	want.URI = []string{"file:x.json"}
	want.CORSOrigin = []string{"https://a", "https://b"}
	want.Sources = SourceList{{URI: "ns/ff", Provider: "kubernetes"}}
	if diff := cmp.Diff(want, *got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"cert without key":         {[]string{"-c", "cert.pem"}, "--server-cert-path and --server-key-path must be given together"},
		"ofrep tls without cert":   {[]string{"--ofrep-tls"}, "--ofrep-tls needs --server-cert-path"},
		"same port twice":          {[]string{"-p", "9000", "-r", "9000"}, "--port and --ofrep-port are both 9000"},
		"otel without collector":   {[]string{"-t", "otel"}, "--metrics-exporter otel needs --otel-collector-uri"},
		"unknown exporter":         {[]string{"-t", "statsd"}, `--metrics-exporter "statsd"`},
		"otel cert without key":    {[]string{"-o", "c:4317", "-D", "c.pem"}, "--otel-cert-path and --otel-key-path must be given together"},
		"otel ca without uri":      {[]string{"-A", "ca.pem"}, "need --otel-collector-uri"},
		"negative body limit":      {[]string{"--max-request-body=-1"}, "must not be negative"},
		"sources not JSON":         {[]string{"-s", `[{"uri":`}, "--sources: must be a JSON array"},
		"sources unknown field":    {[]string{"-s", `[{"uri":"x","provider":"file","bearerToken":"t"}]`}, `unknown field "bearerToken"`},
		"sources unknown provider": {[]string{"-s", `[{"uri":"x","provider":"ftp"}]`}, `sources[0].provider: unknown provider "ftp"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(append([]string{"start"}, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
