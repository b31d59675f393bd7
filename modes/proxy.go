package modes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/kube"
	"github.com/flagpole-dev/flagpole/proxy"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
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

// Serve wires the proxy: the FeatureFlag informer, the caller checks (unless
// --auth=none), the sync listener and the management listener; it reports the
// bound addresses on started (if not nil) and shuts everything down when ctx ends.
func (c *FlagdProxyStartCmd) Serve(ctx context.Context, log zerolog.Logger, build BuildInfo, started func(ProxyAddresses)) error {
	if c.Debug {
		log = log.Level(zerolog.DebugLevel)
	}
	routeKlog(log)
	restCfg, err := kube.Config(kube.Options{Kubeconfig: c.Kubeconfig, QPS: c.KubeQPS, Burst: c.KubeBurst, UserAgent: "flagpole-flagd-proxy/" + build.Version})
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests, err := kube.NewRequestMetrics(reg)
	if err != nil {
		return err
	}
	requests.Instrument(restCfg)
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
		NotReady: func() any { return map[string]any{"reason": "the FeatureFlags are not listed yet (see the log for the API server's answer)"} }})

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
	ev, msg := log.Info(), "flagd-proxy started"
	if auth == nil {
		ev, msg = log.Warn(), "flagd-proxy started with --auth=none: every caller that reaches it reads every FeatureFlag"
	}
	ev.Str("auth", c.Auth).Str("token_audience", c.TokenAudience).Bool("tls", serverTLS != nil).Int("max_streams", c.MaxStreams).Msg(msg)
	wg.Wait()
	return errors.Join(errs...)
}
