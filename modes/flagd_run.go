package modes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	gosync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/flagpole-dev/flagpole/flagd/service"
	"github.com/flagpole-dev/flagpole/flagd/service/evaluation"
	"github.com/flagpole-dev/flagpole/flagd/service/metrics"
	"github.com/flagpole-dev/flagpole/flagd/service/ofrep"
	"github.com/flagpole-dev/flagpole/flagd/service/syncserver"
	"github.com/flagpole-dev/flagpole/flagd/service/tracing"
	"github.com/flagpole-dev/flagpole/flagd/store"
	"github.com/flagpole-dev/flagpole/server"
	"github.com/flagpole-dev/flagpole/server/management"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	"github.com/flagpole-dev/flagpole/sync/file"
	grpcsource "github.com/flagpole-dev/flagpole/sync/grpc"
	httpsource "github.com/flagpole-dev/flagpole/sync/http"
	kubesource "github.com/flagpole-dev/flagpole/sync/kubernetes"
	"github.com/flagpole-dev/flagpole/telemetry"
)

// Addresses are the bound addresses of a running flagd, for tests and logs.
type Addresses struct {
	Evaluation, Management, Sync, OFREP string
}

// Run starts flagd mode and blocks until ctx ends.
func (c *FlagdStartCmd) Run(ctx context.Context, log zerolog.Logger, build BuildInfo) error {
	return c.Serve(ctx, log, build, nil)
}

// Serve starts every listener and source, reports the bound addresses on started (if
// not nil), and shuts everything down gracefully when ctx ends. build.Version is
// the service.version of exported telemetry.
func (c *FlagdStartCmd) Serve(ctx context.Context, log zerolog.Logger, build BuildInfo, started func(Addresses)) error {
	if c.Debug {
		log = log.Level(zerolog.DebugLevel)
	}
	configs, err := c.SourceConfigs()
	if err != nil {
		return err
	}
	sources, err := buildSources(configs, log)
	if err != nil {
		return err
	}
	names := make([]string, len(sources))
	redacted := make([]string, len(sources))
	for i, s := range sources {
		names[i], redacted[i] = s.Name(), store.Redact(s.Name())
	}
	st, err := store.New(names, log)
	if err != nil {
		return err
	}

	// The sources start first: reading and compiling the flags (most of the time to
	// the first answer) overlaps with setting up the listeners. Until the store is
	// ready, evaluations answer as flagd does before its first sync.
	ctx, cancel := context.WithCancel(ctx)
	var wg gosync.WaitGroup
	defer wg.Wait() // on an early return too: the sources have stopped when Serve returns
	defer cancel()
	errs := make(chan error, 6)
	goRun := func(name string, fn func() error) {
		wg.Go(func() {
			if err := fn(); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		})
	}
	goRun("sources", func() error { flagsync.Feed(ctx, st, sources); return nil })
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := metrics.New(reg)
	if err != nil {
		return err
	}
	reg.MustRegister(metrics.NewSourceCollector(st.Status))
	telOpts := telemetry.FromConfig(c.Config, build.Version, log)
	telOpts.MetricProducer = m.OTelProducer()
	tel, err := telemetry.New(ctx, telOpts)
	if err != nil {
		return err
	}
	defer func() { // last: after every listener has stopped, so their last spans go too
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryFlushTimeout)
		defer cancel()
		if err := tel.Shutdown(flushCtx); err != nil {
			log.Warn().Err(err).Msg("otel: telemetry not flushed at shutdown")
		}
	}()
	trc := tracing.New(tel.TracerProvider(), tel.Propagator())
	enricher := &service.Enricher{Static: c.ContextValue, Headers: c.ContextFromHeader}
	var serverTLS *tls.Config
	if c.ServerCertPath != "" {
		reloader, err := server.NewCertReloader(c.ServerCertPath, c.ServerKeyPath)
		if err != nil {
			return err
		}
		serverTLS = reloader.TLSConfig()
		if c.ClientCAPath != "" {
			pool, err := loadCAs(c.ClientCAPath)
			if err != nil {
				return err
			}
			serverTLS.ClientCAs, serverTLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
	}
	var auth *server.Tokens
	if c.AuthTokenFile != "" {
		if auth, err = server.NewTokens(c.AuthTokenFile); err != nil {
			return fmt.Errorf("--auth-token-file: %w", err)
		}
		if err := auth.CountFailures(reg); err != nil {
			return err
		}
	}

	evalSvc := evaluation.New(evaluation.Options{Store: st, Enricher: enricher, Metrics: m, Tracing: trc, Log: log, Auth: auth,
		CORSOrigins: c.CORSOrigin, MaxRequestBody: c.MaxRequestBody, StreamDeadline: c.StreamDeadline})
	ofrepSvc := ofrep.New(ofrep.Options{Store: st, Enricher: enricher, Metrics: m, Tracing: trc, Log: log, Auth: auth,
		CORSOrigins: c.CORSOrigin, MaxRequestBody: c.MaxRequestBody})
	mgmt := management.New(management.Options{Ready: st.Ready, NotReady: service.ReadinessReport(st.Status),
		Degraded: service.DegradedReport(st.Status), Watch: st.Watch, Gatherer: reg, Log: log})
	syncSrv := syncserver.New(syncserver.Options{Store: st, Enricher: enricher, Metrics: m, Tracing: trc, Log: log, Auth: auth,
		DisableMetadata: c.DisableSyncMetadata, StreamDeadline: c.StreamDeadline, KeepAliveMinTime: c.KeepAliveMinTime,
		KeepAlivePermitWithoutStream: c.KeepAlivePermitWithoutStream, TLS: serverTLS,
		IdleTimeout: c.IdleTimeout, RequestTimeout: requestReadTimeout})

	// One connection cap for the data listeners, and one of its own for management,
	// so that probes and scrapes get in while the data listeners are full.
	dataMax, mgmtMax := server.DefaultConnLimits(server.FileLimit())
	if c.MaxConnections > 0 {
		dataMax = c.MaxConnections
	}
	dataConns, mgmtConns := server.NewConnLimit(dataMax, log), server.NewConnLimit(mgmtMax, log)
	httpListener := func(name string, port uint16, socket string, tlsConf *tls.Config, conns *server.ConnLimit) server.ListenConfig {
		return server.ListenConfig{Name: name, Address: net.JoinHostPort(c.BindAddress, strconv.Itoa(int(port))),
			SocketPath: socket, TLS: tlsConf, ReadHeaderTimeout: readHeaderTimeout, MaxHeaderBytes: c.MaxRequestHeader,
			ReadTimeout: requestReadTimeout, IdleTimeout: c.IdleTimeout, Conns: conns}
	}
	evalCfg := httpListener("evaluation", c.Port, c.SocketPath, serverTLS, dataConns)
	// gRPC connections are served by grpc-go, the others by net/http, on one port
	evalCfg.GRPC = evalSvc.GRPCServer(server.GRPCServerOptions(evalCfg)...)
	ofrepTLS := (*tls.Config)(nil)
	if c.OfrepTLS {
		ofrepTLS = serverTLS
	}
	ofrepCfg := httpListener("ofrep", c.OfrepPort, "", ofrepTLS, dataConns)
	mgmtCfg := httpListener("management", c.ManagementPort, "", nil, mgmtConns)
	if c.ManagementBind != "" {
		mgmtCfg.Address = net.JoinHostPort(c.ManagementBind, strconv.Itoa(int(c.ManagementPort)))
	}
	syncCfg := httpListener("sync", c.SyncPort, c.SyncSocketPath, nil, dataConns)

	// Open every listener first, so a port conflict fails before anything serves.
	var listeners []net.Listener
	closeAll := func() {
		for _, ln := range listeners {
			_ = ln.Close()
		}
	}
	open := func(cfg server.ListenConfig) (net.Listener, error) {
		ln, err := server.Listen(cfg)
		if err == nil {
			listeners = append(listeners, ln)
		}
		return ln, err
	}
	evalLn, err1 := open(evalCfg)
	mgmtLn, err2 := open(mgmtCfg)
	syncLn, err3 := open(syncCfg)
	ofrepLn, err4 := open(ofrepCfg)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		closeAll()
		return err
	}

	goRun("evaluation", func() error { return server.Serve(ctx, evalLn, evalCfg, evalSvc.Handler(), log, evalSvc.Shutdown) })
	goRun("ofrep", func() error { return server.Serve(ctx, ofrepLn, ofrepCfg, ofrepSvc.Handler(), log, nil) })
	goRun("management", func() error { return server.Serve(ctx, mgmtLn, mgmtCfg, mgmt.Handler(), log, mgmt.ShuttingDown) })
	goRun("sync", func() error { return syncSrv.Serve(ctx, dataConns.Listener(syncLn, "sync", nil)) })
	goRun("memory", func() error {
		server.ReclaimAfterBursts(ctx, server.ReclaimEvery, server.ReclaimMinDrop)
		return nil
	})
	if started != nil {
		started(Addresses{Evaluation: evalLn.Addr().String(), Management: mgmtLn.Addr().String(),
			Sync: syncLn.Addr().String(), OFREP: ofrepLn.Addr().String()})
	}
	log.Info().Strs("sources", redacted).Int("max_connections", dataMax).Int("max_management_connections", mgmtMax).
		Dur("idle_timeout", c.IdleTimeout).Msg("flagd mode started")
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// buildSources maps source configurations to sources. A Kubernetes client is
// created only when a kubernetes source is configured, and shared by all of them.
func buildSources(configs []flagsync.SourceConfig, log zerolog.Logger) ([]flagsync.Source, error) {
	out := make([]flagsync.Source, 0, len(configs))
	var kube kubesource.Client
	for i, c := range configs {
		var src flagsync.Source
		var err error
		switch c.Provider {
		case flagsync.ProviderFile, flagsync.ProviderFsnotify, flagsync.ProviderFileinfo:
			src = file.New(c.URI, file.WithLogger(log))
		case flagsync.ProviderHTTP:
			src, err = httpsource.New(c, log)
		case flagsync.ProviderGRPC:
			src, err = grpcsource.New(c, log)
		case flagsync.ProviderKubernetes:
			if kube == nil {
				routeKlog(log)
				if kube, err = kubesource.ClientFromEnvironment(); err != nil {
					break
				}
			}
			src, err = kubesource.New(c, log, kube)
		default:
			err = fmt.Errorf("provider %q is not supported by flagpole (file, http, grpc, kubernetes are)", c.Provider)
		}
		if err != nil {
			return nil, fmt.Errorf("source %d (%s): %w", i, store.Redact(c.URI), err)
		}
		out = append(out, src)
	}
	return out, nil
}

// Server timeouts as flagd's (flagd-compat §3.1): request headers must arrive within
// readHeaderTimeout, and whole requests (bodies, and a sync RPC's request message)
// within requestReadTimeout, on every listener. Responses may stream on afterwards
// (EventStream, SyncFlags): the read deadline ends with the request body.
const (
	readHeaderTimeout  = 3 * time.Second
	requestReadTimeout = 5 * time.Second
)

// telemetryFlushTimeout bounds the export of the last spans and metrics at
// shutdown: a collector that is down cannot hold the process longer.
const telemetryFlushTimeout = 5 * time.Second

// loadCAs reads a PEM bundle of CA certificates.
func loadCAs(path string) (*x509.CertPool, error) {
	pemData, err := os.ReadFile(path) //nolint:gosec // G304: the operator's own --client-ca-path
	if err != nil {
		return nil, fmt.Errorf("--client-ca-path: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("--client-ca-path %s: no PEM certificate in it", path)
	}
	return pool, nil
}
