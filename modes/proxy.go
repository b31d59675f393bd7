package modes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/flagpole-dev/flagpole/controller"
	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/proxy"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
	"github.com/flagpole-dev/flagpole/webhook/certs"
)

// FlagdProxyCmd groups the flagd-proxy commands.
type FlagdProxyCmd struct {
	Start FlagdProxyStartCmd `cmd:"" help:"Serve FeatureFlags to flagd sidecars over flagd.sync.v1 (selector core.openfeature.dev/<namespace>/<name>), checking each caller's ServiceAccount token and grant."`
}

// FlagdProxyStartCmd is `flagpole flagd-proxy start`: the options are the proxy's
// argument contract, proxy.Config, which the operator renders into the proxy's
// Deployment.
type FlagdProxyStartCmd struct {
	proxy.Config
}

// ProxyAddresses are the bound addresses of a running proxy (tests).
type ProxyAddresses struct {
	Sync, Management string
}

// Run serves until ctx ends.
func (c *FlagdProxyStartCmd) Run(ctx context.Context, log zerolog.Logger, build BuildInfo) error {
	return c.Serve(ctx, log, build, nil)
}

// proxyReadHeaderTimeout bounds the arrival of a management request's headers.
const proxyReadHeaderTimeout = 3 * time.Second

// proxyGCPercent is the proxy's GC target unless GOGC is set.
const proxyGCPercent = 50

// Serve wires the proxy: the FeatureFlag informer, the caller checks (unless
// --auth=none), the sync listener and the management listener; it reports the
// bound addresses on started (if not nil) and shuts everything down when ctx ends.
func (c *FlagdProxyStartCmd) Serve(ctx context.Context, log zerolog.Logger, build BuildInfo, started func(ProxyAddresses)) error {
	if c.Debug {
		log = log.Level(zerolog.DebugLevel)
	}
	if os.Getenv("GOGC") == "" {
		// The proxy's live memory is mostly per-connection state that lives as long
		// as the sidecars: a GC target of 50% instead of 100% keeps RSS close to it
		// (measured with 1,000 streams: 106 → 96 MiB) for a few % more GC CPU.
		debug.SetGCPercent(proxyGCPercent)
	}
	restCfg, reg, err := instrumentedKube(log, kube.Options{Kubeconfig: c.Kubeconfig, QPS: c.KubeQPS, Burst: c.KubeBurst, UserAgent: "flagpole-flagd-proxy/" + build.Version})
	if err != nil {
		return err
	}
	m, err := proxy.NewMetrics(reg)
	if err != nil {
		return err
	}
	flagsClient, err := kube.RESTClient(restCfg, v1beta1.SchemeGroupVersion, v1beta1.AddToScheme)
	if err != nil {
		return err
	}
	flags, err := proxy.NewFlags(flagsClient, log, m)
	if err != nil {
		return err
	}
	var auth *proxy.Authorizer
	if c.Auth == proxy.AuthServiceAccount {
		reviewer, err := proxy.NewReviewer(restCfg)
		if err != nil {
			return err
		}
		auth = proxy.NewAuthorizer(reviewer, proxy.AuthOptions{Audience: c.TokenAudience, TokenTTL: c.TokenCacheTTL,
			AccessTTL: c.AccessCacheTTL, DeniedTTL: c.DeniedCacheTTL, MaxEntries: c.AuthCacheSize}, m)
	}
	var serverTLS *tls.Config
	if c.ServerCertPath != "" {
		reloader, err := server.NewCertReloader(c.ServerCertPath, c.ServerKeyPath)
		if err != nil {
			return err
		}
		serverTLS = reloader.TLSConfig()
	}
	svc := proxy.NewService(proxy.Options{Flags: flags, Auth: auth, Log: log, Metrics: m, MaxStreams: c.MaxStreams})

	dataMax, mgmtMax := server.DefaultConnLimits(server.FileLimit())
	dataConns, mgmtConns := server.NewConnLimit(dataMax, log), server.NewConnLimit(mgmtMax, log)
	syncCfg := server.ListenConfig{Name: "sync", Address: net.JoinHostPort(c.BindAddress, strconv.Itoa(int(c.Port)))}
	mgmtCfg := server.ListenConfig{Name: "management", Address: net.JoinHostPort(c.BindAddress, strconv.Itoa(int(c.ManagementPort))),
		ReadHeaderTimeout: proxyReadHeaderTimeout, ReadTimeout: requestReadTimeout, Conns: mgmtConns}
	syncLn, err := server.Listen(syncCfg)
	if err != nil {
		return err
	}
	mgmtLn, err := server.Listen(mgmtCfg)
	if err != nil {
		_ = syncLn.Close()
		return err
	}
	mgmt := management.New(management.Options{Gatherer: reg, Log: log, Ready: flags.Synced,
		NotReady: func() any {
			return map[string]any{"reason": "the FeatureFlags are not listed yet (see the log for the API server's answer)"}
		}})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg gosync.WaitGroup
	var mu gosync.Mutex
	var errs []error
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
	goRun("featureflags", func() error { flags.Run(ctx); return nil })
	goRun("sync", func() error {
		return svc.Serve(ctx, dataConns.Listener(syncLn, "sync", nil), syncserver.Options{Log: log, TLS: serverTLS,
			KeepAliveMinTime: 30 * time.Second, KeepAlivePermitWithoutStream: true, IdleTimeout: 2 * time.Minute, RequestTimeout: requestReadTimeout})
	})
	goRun("management", func() error { return server.Serve(ctx, mgmtLn, mgmtCfg, mgmt.Handler(), log, mgmt.ShuttingDown) })
	goRun("memory", func() error {
		server.ReclaimAfterBursts(ctx, server.ReclaimEvery, server.ReclaimMinDrop)
		return nil
	})
	if started != nil {
		started(ProxyAddresses{Sync: syncLn.Addr().String(), Management: mgmtLn.Addr().String()})
	}
	level, msg := zerolog.InfoLevel, "flagd-proxy started"
	if auth == nil {
		level, msg = zerolog.WarnLevel, "flagd-proxy started with --auth=none: every caller that reaches it reads every FeatureFlag"
	}
	log.WithLevel(level).Str("auth", c.Auth).Str("token_audience", c.TokenAudience).Bool("tls", serverTLS != nil).Int("max_streams", c.MaxStreams).Msg(msg)
	wg.Wait()
	return errors.Join(errs...)
}

// FlagdProxyFlags configure the flagd-proxy the operator deploys and points
// flagd-proxy sources at (OFO's FLAGD_PROXY_* variables, §5.2; OFO's
// FLAGD_PROXY_IMAGE and FLAGD_PROXY_TAG are not read: they name flagd-proxy's own
// image, which does not run flagpole's arguments).
type FlagdProxyFlags struct {
	FlagdProxyImage          string   `name:"flagd-proxy-image" help:"Image of the flagd-proxy Deployment; default: the sidecar image (the operator's own)." env:"FLAGPOLE_FLAGD_PROXY_IMAGE"`
	FlagdProxyReplicas       int32    `name:"flagd-proxy-replicas" help:"Replicas of the flagd-proxy Deployment." env:"FLAGD_PROXY_REPLICA_COUNT" default:"1"`
	FlagdProxyPort           int32    `name:"flagd-proxy-port" help:"Port of the flagd-proxy Service and listener." env:"FLAGD_PROXY_PORT" default:"8015"`
	FlagdProxyManagementPort int32    `name:"flagd-proxy-management-port" help:"Management port of the flagd-proxy (probes, metrics)." env:"FLAGD_PROXY_MANAGEMENT_PORT" default:"8016"`
	FlagdProxyDebug          bool     `name:"flagd-proxy-debug" help:"Debug logging in the flagd-proxy." env:"FLAGD_PROXY_DEBUG_LOGGING"`
	FlagdProxyAuth           string   `name:"flagd-proxy-auth" help:"Caller authentication of the flagd-proxy: serviceaccount (sidecars present their pod's ServiceAccount token; each FeatureFlag needs a grant) or none (OFO's behaviour: whoever reaches the proxy reads any FeatureFlag; for pods injected by the OpenFeature Operator, until they are re-created)." env:"FLAGPOLE_FLAGD_PROXY_AUTH" default:"serviceaccount" enum:"serviceaccount,none"`
	FlagdProxyAudience       string   `name:"flagd-proxy-token-audience" help:"Audience of the projected ServiceAccount tokens sidecars present to the flagd-proxy." default:"flagpole-flagd-proxy"`
	FlagdProxyClusterDomain  string   `name:"flagd-proxy-cluster-domain" help:"The cluster's DNS domain, in the address sidecars reach the flagd-proxy at (flagd-proxy-svc.<namespace>.svc.<domain>)." env:"FLAGD_CLUSTER_DOMAIN" default:"cluster.local"`
	FlagdProxyTLS            bool     `name:"flagd-proxy-tls" help:"TLS between sidecars and the flagd-proxy: the operator issues the proxy's certificate (Secret flagd-proxy-tls, its own CA, renewed) and puts the CA bundle into a ConfigMap flagpole-flagd-proxy-ca in each namespace whose pods use the proxy; sidecars trust it. --no-flagd-proxy-tls: plaintext, as OFO." env:"FLAGPOLE_FLAGD_PROXY_TLS" default:"true" negatable:""`
	FlagdProxyCertHosts      []string `name:"flagd-proxy-cert-extra-hosts" help:"More DNS names or IP addresses for the flagd-proxy's serving certificate (besides flagd-proxy-svc.<namespace>.svc[.<domain>])." sep:","`
}

// flagdProxyCAPropagation is how long a new CA of the proxy is in the CA
// ConfigMaps before it signs the proxy's certificate: the controller patches them
// at once, and the kubelet updates a projected ConfigMap within its sync period
// plus its ConfigMap cache's TTL (a minute each by default).
const flagdProxyCAPropagation = 10 * time.Minute

// flagdProxyCerts is the proxy's self-managed certificate (webhook/certs with no
// webhook configuration): every replica keeps the Secret current, the proxy's pods
// mount its key pair, and CABundle feeds the CA ConfigMaps.
func (f FlagdProxyFlags) flagdProxyCerts(restCfg *rest.Config, namespace string, log zerolog.Logger, onBundle func()) (*certs.Source, error) {
	return certs.New(certs.Options{Config: restCfg, Namespace: namespace, SecretName: sidecar.FlagdProxyTLSSecret,
		ServiceName: sidecar.FlagdProxyService, ClusterDomain: f.FlagdProxyClusterDomain, Hosts: f.FlagdProxyCertHosts,
		Propagation: flagdProxyCAPropagation, OnCABundle: onBundle, Purpose: "flagd-proxy",
		Log: log.With().Str("certificate", "flagd-proxy").Logger()})
}

// caNotifier passes the proxy certificate's OnCABundle on to the flagd-proxy
// controller, which is built after the certificate source (nothing until then).
type caNotifier struct{ fn atomic.Pointer[func()] }

func (n *caNotifier) changed() {
	if fn := n.fn.Load(); fn != nil {
		(*fn)()
	}
}

// flagdProxy is the sidecar's view of the proxy: where it is and the token it wants.
func (f FlagdProxyFlags) flagdProxy(namespace string) (sidecar.FlagdProxy, error) {
	p := sidecar.DefaultFlagdProxy(namespace)
	p.Port, p.ClusterDomain, p.Audience, p.TLS = f.FlagdProxyPort, f.FlagdProxyClusterDomain, f.FlagdProxyAudience, f.FlagdProxyTLS
	switch {
	case f.FlagdProxyPort < 1 || f.FlagdProxyPort > 65535:
		return p, fmt.Errorf("--flagd-proxy-port %d: want 1..65535", f.FlagdProxyPort)
	case f.FlagdProxyManagementPort < 1 || f.FlagdProxyManagementPort > 65535 || f.FlagdProxyManagementPort == f.FlagdProxyPort:
		return p, fmt.Errorf("--flagd-proxy-management-port %d: want 1..65535, not the proxy's port", f.FlagdProxyManagementPort)
	case f.FlagdProxyReplicas < 0:
		return p, fmt.Errorf("--flagd-proxy-replicas %d: must not be negative", f.FlagdProxyReplicas)
	case f.FlagdProxyAudience == "":
		return p, errors.New("--flagd-proxy-token-audience must not be empty")
	case f.FlagdProxyClusterDomain == "":
		return p, errors.New("--flagd-proxy-cluster-domain must not be empty")
	}
	return p, nil
}

// controllerOptions are the proxy Deployment's settings for the controller.
func (f FlagdProxyFlags) controllerOptions(namespace string, injector webhook.InjectorConfig, c *ControllerFlags, build BuildInfo) (controller.FlagdProxyOptions, error) {
	opts := controller.FlagdProxyOptions{Namespace: namespace, Image: f.FlagdProxyImage, ImagePullPolicy: injector.Sidecar.ImagePullPolicy,
		Replicas: f.FlagdProxyReplicas, Port: f.FlagdProxyPort, ManagementPort: f.FlagdProxyManagementPort, Debug: f.FlagdProxyDebug,
		Auth: f.FlagdProxyAuth, Audience: f.FlagdProxyAudience, Version: build.Version,
		TLS: injector.Sidecar.FlagdProxy.TLS, CABundle: injector.Sidecar.FlagdProxy.CABundle}
	if opts.Image == "" {
		opts.Image = injector.Sidecar.Image
	}
	var err error
	if opts.Labels, err = parsePairs("--labels", c.Labels); err != nil {
		return opts, err
	}
	if opts.Annotations, err = parsePairs("--annotations", c.Annotations); err != nil {
		return opts, err
	}
	opts.ImagePullSecrets = c.ImagePullSecrets
	return opts, nil
}

// flagdProxyStatus follows the proxy's Deployment (only it: a field selector in
// the operator's namespace) so that admissions can tell whether it is ready.
type flagdProxyStatus struct {
	informer cache.SharedIndexInformer
	key      string
}

func newFlagdProxyStatus(restCfg *rest.Config, namespace string) (*flagdProxyStatus, error) {
	apps, err := kube.RESTClient(restCfg, appsv1.SchemeGroupVersion, appsv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	return &flagdProxyStatus{key: namespace + "/" + sidecar.FlagdProxyDeployment,
		informer: kube.NewInformer(apps, "deployments", &appsv1.Deployment{}, &appsv1.DeploymentList{},
			kube.InformerOptions{Namespace: namespace, FieldSelector: "metadata.name=" + sidecar.FlagdProxyDeployment})}, nil
}

// ready is sidecar.FlagdProxy.Ready.
func (s *flagdProxyStatus) ready() error {
	obj, ok, err := s.informer.GetIndexer().GetByKey(s.key)
	d, _ := obj.(*appsv1.Deployment)
	if err != nil || !ok {
		d = nil
	}
	return sidecar.FlagdProxyReadiness(d, time.Now())
}
