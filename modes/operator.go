package modes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/controller"
	"github.com/flagpole-dev/flagpole/controller/leader"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
	"github.com/flagpole-dev/flagpole/webhook/certs"
)

// The operator's commands share these flag groups. They keep the OpenFeature
// Operator's names and environment variables where they mean the same
// (ofo-compat §5.1, §5.2; docs/compatibility.md lists the rest).

// KubeFlags say how to reach the cluster and where the operator lives.
type KubeFlags struct {
	Namespace  string  `name:"namespace" help:"The operator's namespace (its TLS Secret, its webhook Service)." env:"POD_NAMESPACE" default:"flagpole-system"`
	Kubeconfig string  `name:"kubeconfig" help:"Kubeconfig file; empty: KUBECONFIG, in-cluster, ~/.kube/config." type:"path"`
	KubeQPS    float32 `name:"kube-api-qps" help:"Requests per second to the API server." default:"50"`
	KubeBurst  int     `name:"kube-api-burst" help:"Burst of requests to the API server." default:"100"`
	HealthAddr string  `name:"health-probe-bind-address" help:"Management listener: /healthz, /readyz, /metrics, gRPC health." default:":8081"`
	// MetricsAddr keeps OFO's flag: its manifests scrape a port of their own.
	MetricsAddr string `name:"metrics-bind-address" help:"Also serve /metrics (only) on this address, as OFO's manifests expect (:8080); empty or 0: /metrics on the management listener only." default:""`
}

// SidecarFlags configure the flagd the operator renders: the injected sidecar and
// the standalone Flagd Deployments.
type SidecarFlags struct {
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

	FlagdProxyFlags
}

// WebhookFlags configure the admission server.
type WebhookFlags struct {
	BindAddress string `name:"webhook-bind-address" help:"Address the HTTPS admission server listens on." default:""`
	Port        uint16 `name:"webhook-port" help:"Port of the HTTPS admission server (OFO: 9443)." default:"9443"`

	CertDir        string   `name:"cert-dir" help:"Serve tls.crt/tls.key from this directory (a mounted Secret, e.g. cert-manager's), reloaded on rotation, instead of the self-managed certificate. OFO: --webhook-cert-path." aliases:"webhook-cert-path" type:"path"`
	TLSSecret      string   `name:"tls-secret" help:"Self-managed mode: the Secret (in --namespace) holding the webhook's CA and serving certificate." default:"flagpole-webhook-tls"`
	ServiceName    string   `name:"service-name" help:"The webhook's Service: the serving certificate is for <service>.<namespace>.svc[.<cluster domain>]." default:"flagpole-webhook"`
	ClusterDomain  string   `name:"cluster-domain" help:"The cluster's DNS domain." env:"FLAGD_CLUSTER_DOMAIN" default:"cluster.local"`
	CertHosts      []string `name:"cert-extra-hosts" help:"More DNS names or IP addresses for the serving certificate (a webhook registered by URL)." sep:","`
	MutatingName   string   `name:"mutating-webhook-configuration" help:"The MutatingWebhookConfiguration whose caBundle the operator keeps current." default:"flagpole-mutating-webhook"`
	ValidatingName string   `name:"validating-webhook-configuration" help:"The ValidatingWebhookConfiguration whose caBundle the operator keeps current." default:"flagpole-validating-webhook"`
	Validation     bool     `name:"flags-validation" help:"Serve the validating webhooks of the four kinds (OFO: FLAGS_VALIDATION_ENABLED)." env:"FLAGS_VALIDATION_ENABLED" default:"true" negatable:""`

	// ClientCA and ClientNames authenticate the caller (docs/webhook.md, "Caller
	// authentication"): off by default, since the API server presents a client
	// certificate to a webhook only when its AdmissionConfiguration names one.
	ClientCA    string   `name:"webhook-client-ca" help:"Require a client certificate signed by a CA of this PEM file on the admission server (the API server's, from its AdmissionConfiguration kubeConfigFile); re-read when it changes. Empty: callers are not authenticated." env:"FLAGPOLE_WEBHOOK_CLIENT_CA" type:"path"`
	ClientNames []string `name:"webhook-client-names" help:"With --webhook-client-ca: accept only client certificates whose common name, DNS name or URI is one of these." env:"FLAGPOLE_WEBHOOK_CLIENT_NAMES" sep:","`
}

// ControllerFlags configure the reconcilers and leader election.
type ControllerFlags struct {
	LeaderElect      bool          `name:"leader-elect" help:"Elect one leader among the replicas with a Lease; only the leader reconciles (the webhook serves on every replica)." default:"true" negatable:""`
	LeaderElectionID string        `name:"leader-election-id" help:"Name of the Lease (in --namespace)." default:"flagpole.openfeature.dev"`
	LeaseDuration    time.Duration `name:"leader-election-lease-duration" help:"How long a lease that is not renewed keeps other replicas away." default:"15s"`
	RenewDeadline    time.Duration `name:"leader-election-renew-deadline" help:"How long the leader keeps trying to renew before it stops leading." default:"10s"`
	RetryPeriod      time.Duration `name:"leader-election-retry-period" help:"How often replicas try, and the leader renews." default:"2s"`
	Workers          int           `name:"workers" help:"Workers per reconciler." default:"2"`
	GrantGrace       time.Duration `name:"grant-grace" help:"How long a ServiceAccount or FeatureFlag must have been gone before the RBAC grant the webhook made for it is removed (a delete and re-create within it keeps the grant)." default:"1m"`
	ImagePullSecrets []string      `name:"image-pull-secrets" help:"Image pull secrets of the Flagd Deployments (OFO's --image-pull-secrets)." sep:","`
	Labels           string        `name:"labels" help:"Labels added to the Flagd Deployments and their pods, k1:v1,k2:v2 (OFO's format)."`
	Annotations      string        `name:"annotations" help:"Annotations added to the Flagd Deployments and their pods, k1:v1,k2:v2 (OFO's format)."`
}

// parsePairs reads OFO's "k1:v1,k2:v2".
func parsePairs(flag, s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), ":")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want key:value pairs separated by commas", flag, s)
		}
		out[k] = v
	}
	return out, nil
}

// injectorConfig builds the injection settings from the flags.
func (c *SidecarFlags) injectorConfig() (webhook.InjectorConfig, error) {
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

// OperatorAddresses are the bound addresses of a running operator (tests).
type OperatorAddresses struct {
	Webhook, Management, Metrics string
}

// operatorParts says which parts of the operator a command runs.
type operatorParts struct {
	kube       KubeFlags
	sidecar    SidecarFlags
	webhook    *WebhookFlags    // nil: no admission server
	controller *ControllerFlags // nil: no reconcilers
}

// runOperator wires the parts: one set of informer caches, the admission server
// (every replica), the reconcilers (on the elected leader), and the management
// listener; everything stops when ctx ends.
func runOperator(ctx context.Context, log zerolog.Logger, build BuildInfo, p operatorParts, started func(OperatorAddresses)) error {
	injector, err := p.sidecar.injectorConfig()
	if err != nil {
		return err
	}
	restCfg, reg, err := instrumentedKube(log, kube.Options{Kubeconfig: p.kube.Kubeconfig, QPS: p.kube.KubeQPS, Burst: p.kube.KubeBurst,
		UserAgent: "flagpole/" + build.Version})
	if err != nil {
		return err
	}
	cluster, err := sidecar.NewCluster(restCfg, log)
	if err != nil {
		return err
	}
	if injector.Sidecar.FlagdProxy, err = p.sidecar.flagdProxy(p.kube.Namespace); err != nil {
		return err
	}
	proxyStatus, err := newFlagdProxyStatus(restCfg, p.kube.Namespace)
	if err != nil {
		return err
	}
	injector.Sidecar.FlagdProxy.Ready = proxyStatus.ready
	o := &operatorRun{log: log, ready: []func() (bool, string){
		func() (bool, string) { return cluster.Synced(), "informer caches not synced yet" },
		func() (bool, string) {
			return proxyStatus.informer.HasSynced(), "flagd-proxy Deployment cache not synced yet"
		},
	}}
	o.ctx, o.cancel = context.WithCancel(ctx)
	defer o.cancel()
	if injector.Sidecar.FlagdProxy.TLS {
		proxyCerts, err := p.sidecar.flagdProxyCerts(restCfg, p.kube.Namespace, log, o.proxyCA.changed)
		if err != nil {
			return err
		}
		injector.Sidecar.FlagdProxy.CABundle = proxyCerts.CABundle
		o.serve = append(o.serve, func() {
			o.goRun("flagd-proxy certificates", func() error { return proxyCerts.Run(o.ctx) })
		})
	}
	if w := p.webhook; w != nil {
		if err := o.addWebhook(restCfg, reg, cluster, injector, p.kube, *w); err != nil {
			o.closeAll()
			return err
		}
	}
	if c := p.controller; c != nil {
		proxyOpts, err := p.sidecar.controllerOptions(p.kube.Namespace, injector, c, build)
		if err != nil {
			o.closeAll()
			return err
		}
		stop, err := o.addControllers(restCfg, reg, cluster, injector, p.kube.Namespace, *c, proxyOpts)
		if err != nil {
			o.closeAll()
			return err
		}
		defer stop()
	}
	serveManagement, err := o.addManagement(reg, p.kube)
	if err != nil {
		o.closeAll()
		return err
	}
	o.goRun("caches", func() error { cluster.Run(o.ctx); return nil })
	o.goRun("flagd-proxy status", func() error { proxyStatus.informer.RunWithContext(o.ctx); return nil })
	for _, s := range o.serve {
		s()
	}
	serveManagement()
	if started != nil {
		started(o.addrs)
	}
	o.wg.Wait()
	return errors.Join(o.errs...)
}

// operatorRun collects the parts of a running operator: its listeners, what
// starts serving once all are bound, the readiness checks, and the goroutines,
// the first failure of which stops them all.
type operatorRun struct {
	ctx       context.Context
	cancel    context.CancelFunc
	log       zerolog.Logger
	wg        gosync.WaitGroup
	mu        gosync.Mutex
	errs      []error
	listeners []net.Listener
	serve     []func()
	ready     []func() (bool, string)
	addrs     OperatorAddresses
	// proxyCA tells the flagd-proxy controller when the proxy's CA bundle changes.
	proxyCA caNotifier
}

// goRun runs fn; an error is kept and stops everything.
func (o *operatorRun) goRun(name string, fn func() error) {
	o.wg.Go(func() {
		if err := fn(); err != nil {
			o.mu.Lock()
			o.errs = append(o.errs, fmt.Errorf("%s: %w", name, err))
			o.mu.Unlock()
			o.cancel()
		}
	})
}

// listen binds a listener, closed by closeAll if the start fails later.
func (o *operatorRun) listen(cfg server.ListenConfig) (net.Listener, error) {
	ln, err := server.Listen(cfg)
	if err == nil {
		o.listeners = append(o.listeners, ln)
	}
	return ln, err
}

func (o *operatorRun) closeAll() {
	for _, ln := range o.listeners {
		_ = ln.Close()
	}
}

// addWebhook binds the admission server; its certificates and serving start with
// the rest.
func (o *operatorRun) addWebhook(restCfg *rest.Config, reg *prometheus.Registry, cluster *sidecar.Cluster, injector webhook.InjectorConfig, k KubeFlags, w WebhookFlags) error {
	hook, err := webhookServer(restCfg, o.log, reg, cluster, injector, k, w)
	if err != nil {
		return err
	}
	ln, err := o.listen(hook.cfg)
	if err != nil {
		return err
	}
	o.addrs.Webhook = ln.Addr().String()
	o.ready = append(o.ready, func() (bool, string) {
		if err := hook.certs.Healthy(); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	o.serve = append(o.serve, func() {
		o.goRun("certificates", func() error { return hook.certs.Run(o.ctx) })
		o.goRun("webhook", func() error { return server.Serve(o.ctx, ln, hook.cfg, hook.handler, o.log, nil) })
	})
	o.log.Info().Str("sidecar_image", injector.Sidecar.Image).Str("cross_namespace", string(injector.Sidecar.CrossNamespace)).
		Bool("client_certificates_required", w.ClientCA != "").Strs("paths", hook.paths).Msg("admission webhooks configured")
	return nil
}

// addControllers builds the reconcilers; once serving, their caches run on every
// replica and the reconcilers on the leader. stop stops the Event recorder.
func (o *operatorRun) addControllers(restCfg *rest.Config, reg *prometheus.Registry, cluster *sidecar.Cluster, injector webhook.InjectorConfig,
	namespace string, c ControllerFlags, proxyOpts controller.FlagdProxyOptions) (stop func(), err error) {
	ctrl, err := newControllers(restCfg, o.log, reg, cluster, injector, c, proxyOpts)
	if err != nil {
		return nil, err
	}
	elector, err := c.elector(restCfg, namespace, o.log)
	if err != nil {
		ctrl.stop()
		return nil, err
	}
	changed := ctrl.flagdProxy.CABundleChanged
	o.proxyCA.fn.Store(&changed)
	lead := func(ctx context.Context) {
		if !cache.WaitForCacheSync(ctx.Done(), append([]cache.InformerSynced{cluster.Synced}, synced(ctrl.informers)...)...) {
			return
		}
		var workers gosync.WaitGroup
		for _, r := range ctrl.reconcilers {
			workers.Go(func() { r.Run(ctx, c.Workers) })
		}
		workers.Wait()
	}
	o.serve = append(o.serve, func() {
		for _, inf := range ctrl.informers {
			o.goRun("informers", func() error { inf.RunWithContext(o.ctx); return nil })
		}
		if elector == nil {
			o.goRun("controllers", func() error { lead(o.ctx); return nil })
			return
		}
		o.goRun("leader election", func() error { elector.Run(o.ctx, lead); return nil })
	})
	return ctrl.stop, nil
}

// addManagement binds the management listener (probes naming what is not ready,
// /metrics) and OFO's --metrics-bind-address; serve starts them.
func (o *operatorRun) addManagement(reg *prometheus.Registry, k KubeFlags) (serve func(), err error) {
	mgmt := management.New(management.Options{Gatherer: reg, Log: o.log,
		Ready: func() bool {
			for _, r := range o.ready {
				if ok, _ := r(); !ok {
					return false
				}
			}
			return true
		},
		NotReady: func() any {
			var why []string
			for _, r := range o.ready {
				if ok, reason := r(); !ok {
					why = append(why, reason)
				}
			}
			return map[string]any{"reason": "not ready", "checks": why}
		}})
	mgmtCfg := server.ListenConfig{Name: "management", Address: k.HealthAddr, ReadHeaderTimeout: 3 * time.Second, ReadTimeout: 5 * time.Second}
	mgmtLn, err := o.listen(mgmtCfg)
	if err != nil {
		return nil, err
	}
	o.addrs.Management = mgmtLn.Addr().String()
	var metricsLn net.Listener
	metricsCfg := mgmtCfg
	if a := k.MetricsAddr; a != "" && a != "0" {
		metricsCfg.Name, metricsCfg.Address = "metrics", a
		if metricsLn, err = o.listen(metricsCfg); err != nil {
			return nil, err
		}
		o.addrs.Metrics = metricsLn.Addr().String()
	}
	return func() {
		o.goRun("management", func() error { return server.Serve(o.ctx, mgmtLn, mgmtCfg, mgmt.Handler(), o.log, mgmt.ShuttingDown) })
		if metricsLn != nil {
			metricsOnly := http.NewServeMux()
			metricsOnly.Handle("GET /metrics", mgmt.Handler())
			o.goRun("metrics", func() error { return server.Serve(o.ctx, metricsLn, metricsCfg, metricsOnly, o.log, nil) })
		}
	}, nil
}

func synced(infs []cache.SharedIndexInformer) []cache.InformerSynced {
	out := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		out[i] = inf.HasSynced
	}
	return out
}

// admissionServer is the configured admission server.
type admissionServer struct {
	cfg     server.ListenConfig
	handler http.Handler
	certs   *certs.Source
	paths   []string
}

// webhookServer builds the admission server: the pod webhook, the validating
// webhooks, and its TLS (self-managed, or mounted with --cert-dir).
func webhookServer(restCfg *rest.Config, log zerolog.Logger, reg *prometheus.Registry, cluster *sidecar.Cluster, injector webhook.InjectorConfig, k KubeFlags, w WebhookFlags) (*admissionServer, error) {
	if len(w.ClientNames) > 0 && w.ClientCA == "" {
		return nil, errors.New("--webhook-client-names needs --webhook-client-ca (the names are checked on client certificates)")
	}
	tlsSource, err := certs.New(certs.Options{CertDir: w.CertDir, Config: restCfg, Namespace: k.Namespace, SecretName: w.TLSSecret,
		ServiceName: w.ServiceName, ClusterDomain: w.ClusterDomain, Hosts: w.CertHosts,
		MutatingWebhookConfigurations: []string{w.MutatingName}, ValidatingWebhookConfigurations: []string{w.ValidatingName}, Log: log})
	if err != nil {
		return nil, err
	}
	metrics, err := webhook.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	if err := tlsSource.RegisterMetrics(reg); err != nil {
		return nil, err
	}
	inj := &webhook.Injector{Config: injector, Objects: cluster}
	handlers := map[string]http.Handler{
		webhook.PathMutatePod: &webhook.Handler{Name: "mutate-pods", Admit: inj.Admit, Effects: cluster, Log: log, Metrics: metrics},
	}
	paths := []string{webhook.PathMutatePod}
	if w.Validation {
		opts := webhook.ValidationOptions{CrossNamespace: injector.Sidecar.CrossNamespace, DefaultSyncProvider: injector.Sidecar.Defaults.DefaultSyncProvider}
		for _, v := range webhook.ValidatingWebhooks(opts) {
			handlers[v.Path] = &webhook.Handler{Name: "validate-" + strings.ToLower(v.Kind), Admit: v.Admit, Log: log, Metrics: metrics}
			paths = append(paths, v.Path)
		}
	}
	tlsConf := tlsSource.TLSConfig()
	tlsConf.MinVersion = tls.VersionTLS12
	if w.ClientCA != "" {
		clients, err := server.NewClientCerts(server.ClientCertOptions{CAFile: w.ClientCA, Flag: "--webhook-client-ca", Names: w.ClientNames,
			Listener: "webhook", Log: log})
		if err != nil {
			return nil, err
		}
		if err := clients.CountFailures(reg); err != nil {
			return nil, err
		}
		clients.Apply(tlsConf)
	}
	cfg := server.ListenConfig{Name: "webhook", Address: net.JoinHostPort(w.BindAddress, strconv.Itoa(int(w.Port))), TLS: tlsConf,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20}
	return &admissionServer{cfg: cfg, handler: webhook.Mux(handlers), certs: tlsSource, paths: paths}, nil
}

// controllers are the reconcilers and the informers they own.
type controllers struct {
	flagdProxy  *controller.FlagdProxy
	reconcilers []*controller.Controller
	informers   []cache.SharedIndexInformer
	stop        func() // stops the Event recorder
}

// newControllers builds the reconcilers.
func newControllers(restCfg *rest.Config, log zerolog.Logger, reg *prometheus.Registry, cluster *sidecar.Cluster, injector webhook.InjectorConfig, c ControllerFlags, proxyOpts controller.FlagdProxyOptions) (*controllers, error) {
	clients, err := controller.NewClients(restCfg)
	if err != nil {
		return nil, err
	}
	metrics, err := controller.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	labels, err := parsePairs("--labels", c.Labels)
	if err != nil {
		return nil, err
	}
	annotations, err := parsePairs("--annotations", c.Annotations)
	if err != nil {
		return nil, err
	}
	recorder, stopRecorder := controller.NewRecorder(clients.Core)
	renderer := &sidecar.Renderer{Config: injector.Sidecar, Objects: cluster}
	flagd, err := controller.NewFlagd(renderer, cluster, clients, controller.FlagdOptions{Labels: labels, Annotations: annotations,
		ImagePullSecrets: c.ImagePullSecrets}, recorder, metrics, log)
	var flags *controller.FeatureFlag
	if err == nil {
		flags, err = controller.NewFeatureFlag(renderer, cluster, clients, recorder, metrics, log)
	}
	var sources *controller.FeatureFlagSource
	if err == nil {
		sources, err = controller.NewFeatureFlagSource(renderer, cluster, clients, recorder, metrics, log)
	}
	var grants *controller.Grants
	if err == nil {
		grants, err = controller.NewGrants(cluster, clients, c.GrantGrace, recorder, metrics, log)
	}
	var flagdProxy *controller.FlagdProxy
	if err == nil {
		flagdProxy, err = controller.NewFlagdProxy(restCfg, cluster, clients, injector.Sidecar.UsesFlagdProxy, proxyOpts, metrics, log)
	}
	if err != nil {
		stopRecorder()
		return nil, err
	}
	return &controllers{
		flagdProxy:  flagdProxy,
		reconcilers: []*controller.Controller{flagd.Controller, flags.Controller, sources.Controller, grants.Controller, flagdProxy.Controller},
		informers:   slices.Concat(flagd.Informers(), flags.Informers(), sources.Informers(), grants.Informers(), flagdProxy.Informers()),
		stop:        stopRecorder,
	}, nil
}

// elector returns the leader elector, or nil when leader election is off.
func (c ControllerFlags) elector(restCfg *rest.Config, namespace string, log zerolog.Logger) (*leader.Elector, error) {
	if !c.LeaderElect {
		return nil, nil
	}
	identity := os.Getenv("POD_NAME")
	if identity == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("leader election: no POD_NAME and no hostname: %w", err)
		}
		identity = host
	}
	identity += "_" + strconv.Itoa(os.Getpid())
	return leader.NewREST(leader.Config{Namespace: namespace, Name: c.LeaderElectionID, Identity: identity,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod, Log: log}, restCfg)
}
