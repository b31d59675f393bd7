package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/alecthomas/kong"
)

// Command is the command line of the proxy: `flagpole flagd-proxy start` (the same
// image as the operator; OFO runs flagd-proxy's own image with `start`).
var Command = []string{"flagd-proxy", "start"}

// Config is `flagpole flagd-proxy start`'s configuration: flagd-proxy's flags
// (--port, --management-port, --debug) plus flagd's TLS flags and flagpole's
// caller authentication. Args renders it for the proxy's Deployment and Parse reads
// it back, as the binary does.
type Config struct {
	Port           uint16 `name:"port" short:"p" help:"Sync listener port (flagd.sync.v1)." default:"8015"`
	ManagementPort uint16 `name:"management-port" short:"m" help:"Management listener port (/healthz, /readyz, /metrics, gRPC health)." default:"8016"`
	BindAddress    string `name:"bind-address" help:"Address both listeners bind to; empty: every interface." default:""`
	Debug          bool   `name:"debug" short:"x" help:"Debug logging (every stream opened and closed)."`

	ServerCertPath string `name:"server-cert-path" short:"c" help:"TLS certificate of the sync listener (reloaded when it changes); sidecars then connect with tls and the CA in certPath."`
	ServerKeyPath  string `name:"server-key-path" short:"k" help:"TLS key of the sync listener."`

	Auth           string        `name:"auth" help:"Caller authentication: serviceaccount (a ServiceAccount token for --token-audience, verified with TokenReview; access to each FeatureFlag checked with SubjectAccessReview) or none (anyone who reaches the proxy reads any FeatureFlag, as the OpenFeature Operator's flagd-proxy; for migrations)." enum:"serviceaccount,none" default:"serviceaccount"`
	TokenAudience  string        `name:"token-audience" help:"Audience the callers' tokens must be valid for (the webhook mounts projected tokens with it)." default:"flagpole-flagd-proxy"`
	TokenCacheTTL  time.Duration `name:"token-cache-ttl" help:"How long a verified token is trusted before TokenReview is asked again (never beyond its expiry)." default:"2m"`
	AccessCacheTTL time.Duration `name:"access-cache-ttl" help:"How long an access decision is kept; open streams are re-checked this often, so a revoked grant ends them within about twice it." default:"30s"`
	DeniedCacheTTL time.Duration `name:"denied-cache-ttl" help:"How long a refusal is kept (a rejected token, a missing grant)." default:"5s"`
	AuthCacheSize  int           `name:"auth-cache-size" help:"Decisions kept per cache (tokens, access); the least recently used go first." default:"10000"`
	MaxStreams     int           `name:"max-streams" help:"Concurrent SyncFlags streams; more get ResourceExhausted." default:"10000"`

	Kubeconfig string  `name:"kubeconfig" help:"Kubeconfig file; empty: KUBECONFIG, in-cluster, ~/.kube/config." type:"path"`
	KubeQPS    float32 `name:"kube-api-qps" help:"Requests per second to the API server (token and access reviews: one per new token and ServiceAccount, cached)." default:"100"`
	KubeBurst  int     `name:"kube-api-burst" help:"Burst of requests to the API server (sidecars reconnecting after a restart)." default:"200"`
}

// DefaultConfig is the configuration without any flag.
func DefaultConfig() Config {
	return Config{Port: 8015, ManagementPort: 8016, Auth: AuthServiceAccount, TokenAudience: DefaultAudience,
		TokenCacheTTL: 2 * time.Minute, AccessCacheTTL: 30 * time.Second, DeniedCacheTTL: 5 * time.Second,
		AuthCacheSize: 10000, MaxStreams: 10000, KubeQPS: 100, KubeBurst: 200}
}

// Caller authentication modes (--auth).
const (
	AuthServiceAccount = "serviceaccount"
	AuthNone           = "none"
)

// Validate checks what kong cannot.
func (c *Config) Validate() error {
	if (c.ServerCertPath == "") != (c.ServerKeyPath == "") {
		return errors.New("--server-cert-path and --server-key-path must be given together")
	}
	if c.Port != 0 && c.Port == c.ManagementPort {
		return fmt.Errorf("--port and --management-port are both %d", c.Port)
	}
	if c.TokenAudience == "" {
		return errors.New("--token-audience must not be empty")
	}
	if c.TokenCacheTTL <= 0 || c.AccessCacheTTL <= 0 || c.DeniedCacheTTL <= 0 {
		return errors.New("--token-cache-ttl, --access-cache-ttl and --denied-cache-ttl must be positive")
	}
	if c.AuthCacheSize < 1 || c.MaxStreams < 1 {
		return errors.New("--auth-cache-size and --max-streams must be at least 1")
	}
	if c.KubeQPS <= 0 || c.KubeBurst < 1 {
		return errors.New("--kube-api-qps must be positive and --kube-api-burst at least 1")
	}
	return nil
}

// Args renders c as the proxy container's args: Command, --port and
// --management-port always (OFO forgets --port), then every option that differs
// from DefaultConfig. --kubeconfig is refused: a Deployment uses its ServiceAccount.
func (c Config) Args() ([]string, error) {
	if c.Kubeconfig != "" {
		return nil, errors.New("--kubeconfig cannot be rendered into a Deployment: the proxy uses its ServiceAccount")
	}
	def := DefaultConfig()
	args := append([]string(nil), Command...)
	args = append(args, "--port", strconv.Itoa(int(c.Port)), "--management-port", strconv.Itoa(int(c.ManagementPort)))
	str := func(flag, v, def string) {
		if v != def {
			args = append(args, flag, v)
		}
	}
	dur := func(flag string, v, def time.Duration) {
		if v != def {
			args = append(args, flag, v.String())
		}
	}
	num := func(flag string, v, def int) {
		if v != def {
			args = append(args, flag, strconv.Itoa(v))
		}
	}
	str("--bind-address", c.BindAddress, def.BindAddress)
	if c.Debug {
		args = append(args, "--debug")
	}
	str("--server-cert-path", c.ServerCertPath, "")
	str("--server-key-path", c.ServerKeyPath, "")
	str("--auth", c.Auth, def.Auth)
	str("--token-audience", c.TokenAudience, def.TokenAudience)
	dur("--token-cache-ttl", c.TokenCacheTTL, def.TokenCacheTTL)
	dur("--access-cache-ttl", c.AccessCacheTTL, def.AccessCacheTTL)
	dur("--denied-cache-ttl", c.DeniedCacheTTL, def.DeniedCacheTTL)
	num("--auth-cache-size", c.AuthCacheSize, def.AuthCacheSize)
	num("--max-streams", c.MaxStreams, def.MaxStreams)
	if c.KubeQPS != def.KubeQPS {
		args = append(args, "--kube-api-qps", strconv.FormatFloat(float64(c.KubeQPS), 'g', -1, 32))
	}
	num("--kube-api-burst", c.KubeBurst, def.KubeBurst)
	return args, nil
}

// Parse reads a command line as Args renders it (Command, then the flags) into a
// Config, as the binary does, and validates it.
func Parse(args []string) (*Config, error) {
	var root struct {
		FlagdProxy struct {
			Start Config `cmd:""`
		} `cmd:"" name:"flagd-proxy"`
	}
	parser, err := kong.New(&root, kong.Name("flagpole"), kong.Exit(func(int) {}), kong.Writers(discard{}, discard{}))
	if err != nil {
		return nil, err
	}
	if _, err := parser.Parse(args); err != nil {
		return nil, err
	}
	return &root.FlagdProxy.Start, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
