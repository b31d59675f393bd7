package modes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
	"github.com/flagpole-dev/flagpole/webhook/certs"
)

// WebhookCmd is `flagpole webhook`: the admission webhooks (pod injection and
// validation of the core.openfeature.dev kinds) with their TLS, readiness and
// metrics. The flags keep the OpenFeature Operator's names and environment
// variables where they mean the same (ofo-compat §5.1, §5.2).
type WebhookCmd struct {
	Namespace  string  `name:"namespace" help:"The operator's namespace (its TLS Secret, its webhook Service)." env:"POD_NAMESPACE" default:"flagpole-system"`
	Kubeconfig string  `name:"kubeconfig" help:"Kubeconfig file; empty: KUBECONFIG, in-cluster, ~/.kube/config." type:"path"`
	KubeQPS    float32 `name:"kube-api-qps" help:"Requests per second to the API server." default:"50"`
	KubeBurst  int     `name:"kube-api-burst" help:"Burst of requests to the API server." default:"100"`

	BindAddress string `name:"webhook-bind-address" help:"Address the HTTPS admission server listens on." default:""`
	Port        uint16 `name:"webhook-port" help:"Port of the HTTPS admission server (OFO: 9443)." default:"9443"`
	HealthAddr  string `name:"health-probe-bind-address" help:"Management listener: /healthz, /readyz, /metrics, gRPC health." default:":8081"`

	CertDir        string   `name:"cert-dir" help:"Serve tls.crt/tls.key from this directory (a mounted Secret, e.g. cert-manager's), reloaded on rotation, instead of the self-managed certificate. OFO: --webhook-cert-path." aliases:"webhook-cert-path" type:"path"`
	TLSSecret      string   `name:"tls-secret" help:"Self-managed mode: the Secret (in --namespace) holding the webhook's CA and serving certificate." default:"flagpole-webhook-tls"`
	ServiceName    string   `name:"service-name" help:"The webhook's Service: the serving certificate is for <service>.<namespace>.svc[.<cluster domain>]." default:"flagpole-webhook"`
	ClusterDomain  string   `name:"cluster-domain" help:"The cluster's DNS domain." env:"FLAGD_CLUSTER_DOMAIN" default:"cluster.local"`
	CertHosts      []string `name:"cert-extra-hosts" help:"More DNS names or IP addresses for the serving certificate (a webhook registered by URL)." sep:","`
	MutatingName   string   `name:"mutating-webhook-configuration" help:"The MutatingWebhookConfiguration whose caBundle the operator keeps current." default:"flagpole-mutating-webhook"`
	ValidatingName string   `name:"validating-webhook-configuration" help:"The ValidatingWebhookConfiguration whose caBundle the operator keeps current." default:"flagpole-validating-webhook"`
	Validation     bool     `name:"flags-validation" help:"Serve the validating webhooks of the four kinds (OFO: FLAGS_VALIDATION_ENABLED)." env:"FLAGS_VALIDATION_ENABLED" default:"true" negatable:""`

	SidecarImage      string `name:"sidecar-image" help:"Image of the injected sidecar: the operator's own image, so operator and sidecar are the same version. Default: $SIDECAR_IMAGE:$SIDECAR_TAG." env:"FLAGPOLE_SIDECAR_IMAGE"`
	OFOSidecarImage   string `name:"ofo-sidecar-image" hidden:"" env:"SIDECAR_IMAGE"`
	OFOSidecarTag     string `name:"ofo-sidecar-tag" hidden:"" env:"SIDECAR_TAG"`
	SidecarPullPolicy string `name:"sidecar-image-pull-policy" help:"imagePullPolicy of the sidecar (OFO hard-codes Always)." default:"IfNotPresent" enum:"Always,IfNotPresent,Never"`
	SidecarCPULimit   string `name:"sidecar-cpu-limit" help:"Sidecar CPU limit." default:"500m"`
	SidecarRAMLimit   string `name:"sidecar-ram-limit" help:"Sidecar memory limit." default:"64Mi"`
	SidecarCPURequest string `name:"sidecar-cpu-request" help:"Sidecar CPU request." default:"200m"`
	SidecarRAMRequest string `name:"sidecar-ram-request" help:"Sidecar memory request." default:"32Mi"`

	SidecarPort           int32  `name:"sidecar-port" help:"Default evaluation port of the sidecar." env:"SIDECAR_PORT" default:"8013"`
	SidecarManagementPort int32  `name:"sidecar-management-port" help:"Default management port of the sidecar." env:"SIDECAR_MANAGEMENT_PORT" default:"8014"`
	SidecarSocketPath     string `name:"sidecar-socket-path" help:"Default socket path (environment of the sidecar and the apps)." env:"SIDECAR_SOCKET_PATH"`
	SidecarEvaluator      string `name:"sidecar-evaluator" help:"Default evaluator (environment)." env:"SIDECAR_EVALUATOR" default:"json"`
	SidecarSyncProvider   string `name:"sidecar-sync-provider" help:"Provider of sources that name none." env:"SIDECAR_SYNC_PROVIDER" default:"kubernetes"`
	SidecarEnvVarPrefix   string `name:"sidecar-env-var-prefix" help:"Prefix of the environment given to the sidecar and the apps." env:"SIDECAR_ENV_VAR_PREFIX" default:"FLAGD"`
	SidecarLogFormat      string `name:"sidecar-log-format" help:"Default log format of the sidecar." env:"SIDECAR_LOG_FORMAT" default:"json"`
	SidecarProbesEnabled  bool   `name:"sidecar-probes-enabled" help:"Probes on the sidecar." env:"SIDECAR_PROBES_ENABLED" default:"true" negatable:""`

	InProcessPort         int32  `name:"in-process-port" help:"In-process mode: sync port the apps connect to." env:"IN_PROCESS_PORT" default:"8015"`
	InProcessSocketPath   string `name:"in-process-socket-path" help:"In-process mode: socket path." env:"IN_PROCESS_SOCKET_PATH"`
	InProcessHost         string `name:"in-process-host" help:"In-process mode: sync host." env:"IN_PROCESS_HOST" default:"localhost"`
	InProcessTLS          bool   `name:"in-process-tls" help:"In-process mode: TLS to the sync host." env:"IN_PROCESS_TLS"`
	InProcessOfflinePath  string `name:"in-process-offline-flag-source-path" help:"In-process mode: offline flag file." env:"IN_PROCESS_OFFLINE_FLAG_SOURCE_PATH"`
	InProcessSelector     string `name:"in-process-selector" help:"In-process mode: source selector." env:"IN_PROCESS_SELECTOR"`
	InProcessCache        string `name:"in-process-cache" help:"In-process mode: cache (lru or disabled)." env:"IN_PROCESS_CACHE" default:"lru" enum:"lru,disabled"`
	InProcessCacheMaxSize int32  `name:"in-process-cache-max-size" help:"In-process mode: cache size." env:"IN_PROCESS_CACHE_MAX_SIZE" default:"1000"`
	InProcessEnvVarPrefix string `name:"in-process-env-var-prefix" help:"In-process mode: environment prefix." env:"IN_PROCESS_ENV_VAR_PREFIX" default:"FLAGD"`

	CrossNamespace string `name:"cross-namespace" help:"Pods may reference FeatureFlagSources and FeatureFlags of other namespaces: deny (unless the object lists the pod's namespace in its flagpole.dev/allowed-namespaces annotation) or allow (OFO's behaviour, for migrations)." default:"deny" enum:"deny,allow"`
}

// injectorConfig builds the injection settings from the flags.
func (c *WebhookCmd) injectorConfig() (webhook.InjectorConfig, error) {
	image := c.SidecarImage
	if image == "" && c.OFOSidecarImage != "" {
		image = c.OFOSidecarImage
		if c.OFOSidecarTag != "" {
			image += ":" + c.OFOSidecarTag
		}
	}
	cfg := webhook.DefaultInjectorConfig(image)
	cfg.Sidecar.ImagePullPolicy = corev1.PullPolicy(c.SidecarPullPolicy)
	quantities := map[string]string{"--sidecar-cpu-limit": c.SidecarCPULimit, "--sidecar-ram-limit": c.SidecarRAMLimit,
		"--sidecar-cpu-request": c.SidecarCPURequest, "--sidecar-ram-request": c.SidecarRAMRequest}
	parsed := map[string]resource.Quantity{}
	for flag, v := range quantities {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return cfg, fmt.Errorf("%s %q: %w", flag, v, err)
		}
		parsed[flag] = q
	}
	cfg.Sidecar.Resources = corev1.ResourceRequirements{
		Limits:   corev1.ResourceList{corev1.ResourceCPU: parsed["--sidecar-cpu-limit"], corev1.ResourceMemory: parsed["--sidecar-ram-limit"]},
		Requests: corev1.ResourceList{corev1.ResourceCPU: parsed["--sidecar-cpu-request"], corev1.ResourceMemory: parsed["--sidecar-ram-request"]},
	}
	cfg.Sidecar.Defaults = sidecar.Defaults{Port: c.SidecarPort, ManagementPort: c.SidecarManagementPort, SocketPath: c.SidecarSocketPath,
		Evaluator: c.SidecarEvaluator, DefaultSyncProvider: c.SidecarSyncProvider, EnvVarPrefix: c.SidecarEnvVarPrefix,
		LogFormat: c.SidecarLogFormat, ProbesEnabled: c.SidecarProbesEnabled, OfrepPort: 8016}
	cfg.InProcess = sidecar.InProcessDefaults{Port: c.InProcessPort, SocketPath: c.InProcessSocketPath, Host: c.InProcessHost,
		TLS: c.InProcessTLS, OfflineFlagSourcePath: c.InProcessOfflinePath, Selector: c.InProcessSelector, Cache: c.InProcessCache,
		CacheMaxSize: c.InProcessCacheMaxSize, EnvVarPrefix: c.InProcessEnvVarPrefix}
	cfg.Sidecar.CrossNamespace = sidecar.CrossNamespace(c.CrossNamespace)
	return cfg, cfg.Validate()
}

// Run serves the webhooks until ctx ends.
func (c *WebhookCmd) Run(ctx context.Context, log zerolog.Logger) error {
	return c.Serve(ctx, log, nil)
}

// WebhookAddresses are the bound addresses of a running webhook server (tests).
type WebhookAddresses struct {
	Webhook, Management string
}

// Serve runs the webhook server, reports the bound addresses on started (if not
// nil), and shuts down gracefully when ctx ends.
func (c *WebhookCmd) Serve(ctx context.Context, log zerolog.Logger, started func(WebhookAddresses)) error {
	injector, err := c.injectorConfig()
	if err != nil {
		return err
	}
	routeKlog(log)
	restCfg, err := kube.Config(kube.Options{Kubeconfig: c.Kubeconfig, QPS: c.KubeQPS, Burst: c.KubeBurst, UserAgent: "flagpole-webhook"})
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	cluster, err := sidecar.NewCluster(restCfg, log)
	if err != nil {
		return err
	}
	tlsSource, err := certs.New(certs.Options{CertDir: c.CertDir, Config: restCfg, Namespace: c.Namespace, SecretName: c.TLSSecret,
		ServiceName: c.ServiceName, ClusterDomain: c.ClusterDomain, Hosts: c.CertHosts,
		MutatingWebhookConfigurations: []string{c.MutatingName}, ValidatingWebhookConfigurations: []string{c.ValidatingName}, Log: log})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := webhook.NewMetrics(reg)
	if err != nil {
		return err
	}
	if err := tlsSource.RegisterMetrics(reg); err != nil {
		return err
	}
	inj := &webhook.Injector{Config: injector, Objects: cluster}
	handlers := map[string]http.Handler{
		webhook.PathMutatePod: &webhook.Handler{Name: "mutate-pods", Admit: inj.Admit, Effects: cluster, Log: log, Metrics: metrics},
	}
	paths := []string{webhook.PathMutatePod}
	if c.Validation {
		opts := webhook.ValidationOptions{CrossNamespace: injector.Sidecar.CrossNamespace, DefaultSyncProvider: injector.Sidecar.Defaults.DefaultSyncProvider}
		for _, v := range webhook.ValidatingWebhooks(opts) {
			handlers[v.Path] = &webhook.Handler{Name: "validate-" + strings.ToLower(v.Kind), Admit: v.Admit, Log: log, Metrics: metrics}
			paths = append(paths, v.Path)
		}
	}
	tlsConf := tlsSource.TLSConfig()
	hookCfg := server.ListenConfig{Name: "webhook", Address: net.JoinHostPort(c.BindAddress, strconv.Itoa(int(c.Port))), TLS: tlsConf,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20}
	ready := func() bool { return cluster.Synced() && tlsSource.Ready() }
	notReady := func() any {
		body := map[string]string{"reason": "not ready"}
		if !cluster.Synced() {
			body["caches"] = "informer caches not synced yet"
		}
		if err := tlsSource.Healthy(); err != nil {
			body["certificate"] = err.Error()
		}
		return body
	}
	mgmt := management.New(management.Options{Ready: ready, NotReady: notReady, Gatherer: reg, Log: log})
	mgmtCfg := server.ListenConfig{Name: "management", Address: c.HealthAddr, ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}

	hookLn, err := server.Listen(hookCfg)
	if err != nil {
		return err
	}
	mgmtLn, err := server.Listen(mgmtCfg)
	if err != nil {
		_ = hookLn.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	var errs []error
	var mu gosync.Mutex
	goRun := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				cancel()
			}
		})
	}
	goRun("caches", func() error { cluster.Run(ctx); return nil })
	goRun("certificates", func() error { return tlsSource.Run(ctx) })
	goRun("webhook", func() error { return server.Serve(ctx, hookLn, hookCfg, webhook.Mux(handlers), log, nil) })
	goRun("management", func() error { return server.Serve(ctx, mgmtLn, mgmtCfg, mgmt.Handler(), log, mgmt.ShuttingDown) })
	if started != nil {
		started(WebhookAddresses{Webhook: hookLn.Addr().String(), Management: mgmtLn.Addr().String()})
	}
	log.Info().Str("sidecar_image", injector.Sidecar.Image).Str("cross_namespace", c.CrossNamespace).
		Strs("paths", paths).Msg("webhook mode started")
	wg.Wait()
	return errors.Join(errs...)
}
