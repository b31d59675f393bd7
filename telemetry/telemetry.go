// Package telemetry exports flagd mode's traces and metrics to an OpenTelemetry
// collector over OTLP/gRPC, configured by flagd's flags (--otel-collector-uri,
// --metrics-exporter otel, --otel-ca-path, --otel-cert-path, --otel-key-path,
// --otel-reload-interval).
//
// New builds, from Options, a tracer provider whenever a collector URI is given
// (batch span processor, AlwaysSample as flagd, W3C TraceContext and Baggage
// propagation) and a metric export when OTLP metrics are asked for (periodic
// reader over the metrics a Producer hands it). Both carry the resource flagd sets: service.name=flagd (overridable with
// OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES), service.version, host, OS, Go
// runtime and SDK attributes. Nothing is installed globally: callers pass the
// tracer provider and the propagator to the listeners.
//
// The collector TLS files are re-read every reload interval, so certificates can
// rotate without a restart (flagd accepts these flags but ignores them). Export
// errors are logged, rate-limited, and never stop serving: spans and metric points
// that cannot be sent are dropped, and Shutdown gives up when its context ends.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flagpole-dev/flagpole/flagd/startconfig"
)

// ServiceName is the default service.name of the resource, as flagd's.
const ServiceName = "flagd"

// Options configure the export.
type Options struct {
	// CollectorURI is the OTLP/gRPC collector: host:port (plaintext, or TLS when CA,
	// Cert or Key is set), http://host:port (plaintext) or https://host:port (TLS).
	// Empty: nothing is exported.
	CollectorURI string
	// Metrics exports metrics too (--metrics-exporter otel): what MetricProducer
	// produces, at every collection (OTEL_METRIC_EXPORT_INTERVAL, 60 s by default).
	// Traces are exported whenever CollectorURI is set.
	Metrics        bool
	MetricProducer sdkmetric.Producer
	// CA is a PEM file of roots the collector's certificate must chain to (empty:
	// the system roots); Cert and Key a client certificate for mutual TLS.
	CA, Cert, Key string
	// ReloadInterval is how often CA, Cert and Key are re-read; 0 reads them once.
	ReloadInterval time.Duration
	// ServiceVersion is the service.version of the resource (the binary's version).
	ServiceVersion string
	// Log receives export errors (rate-limited) and reloads.
	Log zerolog.Logger
}

// FromConfig maps flagd's start options to Options.
func FromConfig(c startconfig.Config, version string, log zerolog.Logger) Options {
	return Options{
		CollectorURI:   c.OtelCollectorURI,
		Metrics:        strings.EqualFold(c.MetricsExporter, "otel"),
		CA:             c.OtelCAPath,
		Cert:           c.OtelCertPath,
		Key:            c.OtelKeyPath,
		ReloadInterval: c.OtelReloadInterval,
		ServiceVersion: version,
		Log:            log,
	}
}

// Telemetry holds the providers. The zero value and a nil *Telemetry export
// nothing.
type Telemetry struct {
	tracer *sdktrace.TracerProvider // nil: no traces
	meter  *sdkmetric.MeterProvider // nil: no OTLP metrics
	prop   propagation.TextMapPropagator
	stop   context.CancelFunc // ends the TLS reloading
	wg     sync.WaitGroup
}

// New builds the exporters and providers from opts. It connects lazily: a
// collector that is down or unreachable is no error here (exports are retried
// and then dropped, with a log line). Errors are bad options, named by their flag.
func New(ctx context.Context, opts Options) (*Telemetry, error) {
	if opts.CollectorURI == "" {
		if opts.Metrics {
			return nil, errors.New("--metrics-exporter otel needs --otel-collector-uri")
		}
		if opts.CA != "" || opts.Cert != "" || opts.Key != "" {
			return nil, errors.New("--otel-cert-path, --otel-key-path and --otel-ca-path need --otel-collector-uri")
		}
		return &Telemetry{}, nil
	}
	if (opts.Cert == "") != (opts.Key == "") {
		return nil, errors.New("--otel-cert-path and --otel-key-path must be given together")
	}
	if opts.ReloadInterval < 0 {
		return nil, fmt.Errorf("--otel-reload-interval %s must not be negative", opts.ReloadInterval)
	}
	files := tlsFiles{ca: opts.CA, cert: opts.Cert, key: opts.Key}
	ep, err := parseEndpoint(opts.CollectorURI, files != tlsFiles{})
	if err != nil {
		return nil, err
	}
	t := &Telemetry{prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	transport, err := t.transport(ep, files, opts)
	if err != nil {
		return nil, err
	}
	res := newResource(ctx, opts.ServiceVersion, opts.Log)

	spans, err := otlptracegrpc.New(ctx, append([]otlptracegrpc.Option{otlptracegrpc.WithEndpoint(ep.target)}, transport.trace...)...)
	if err != nil {
		t.stopReload()
		return nil, fmt.Errorf("--otel-collector-uri: trace exporter: %w", err)
	}
	t.tracer = sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sampler()),
		sdktrace.WithBatcher(spanExporter{SpanExporter: spans, log: newExportLog("traces", opts.Log)}),
		sdktrace.WithResource(res),
	)
	if opts.Metrics {
		points, err := otlpmetricgrpc.New(ctx, append([]otlpmetricgrpc.Option{otlpmetricgrpc.WithEndpoint(ep.target)}, transport.metric...)...)
		if err != nil {
			t.stopReload()
			_ = t.tracer.Shutdown(ctx)
			return nil, fmt.Errorf("--otel-collector-uri: metric exporter: %w", err)
		}
		var readerOpts []sdkmetric.PeriodicReaderOption
		if opts.MetricProducer != nil {
			readerOpts = append(readerOpts, sdkmetric.WithProducer(opts.MetricProducer))
		}
		reader := sdkmetric.NewPeriodicReader(metricExporter{Exporter: points, log: newExportLog("metrics", opts.Log)}, readerOpts...)
		t.meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	}
	useTLS := ep.tls || (ep.scheme == "" && envTLS(os.Getenv))
	opts.Log.Info().Str("collector", ep.target).Bool("tls", useTLS).Bool("client_certificate", opts.Cert != "").
		Bool("metrics", opts.Metrics).Msg("otel: exporting traces over OTLP/gRPC")
	return t, nil
}

// transportOptions are the exporter options of one connection setup.
type transportOptions struct {
	trace  []otlptracegrpc.Option
	metric []otlpmetricgrpc.Option
}

// transport chooses how the exporters connect:
//   - http://: plaintext, always (explicit insecure credentials, which the
//     OTEL_EXPORTER_OTLP_*CERTIFICATE variables cannot turn into TLS);
//   - TLS files given (https:// or host:port): TLS from the files, re-read every
//     interval (started here, stopped by Shutdown);
//   - https:// without files: TLS with the roots and client certificate of the
//     OTEL_EXPORTER_OTLP_*CERTIFICATE variables if set, else the system roots;
//   - host:port without files: plaintext, or TLS when those variables are set (the
//     exporters' own environment handling, left intact).
func (t *Telemetry) transport(ep endpoint, files tlsFiles, opts Options) (transportOptions, error) {
	switch {
	case ep.scheme == "http":
		creds := insecure.NewCredentials()
		return transportOptions{
			trace:  []otlptracegrpc.Option{otlptracegrpc.WithTLSCredentials(creds)},
			metric: []otlpmetricgrpc.Option{otlpmetricgrpc.WithTLSCredentials(creds)},
		}, nil
	case files == tlsFiles{} && ep.scheme == "https":
		return transportOptions{}, checkEnvInsecure(opts.CollectorURI, os.Getenv)
	case files == tlsFiles{}:
		return transportOptions{
			trace:  []otlptracegrpc.Option{otlptracegrpc.WithInsecure()},
			metric: []otlpmetricgrpc.Option{otlpmetricgrpc.WithInsecure()},
		}, nil
	}
	creds, err := newReloadingCreds(files, opts.Log)
	if err != nil {
		return transportOptions{}, err
	}
	ctx, stop := context.WithCancel(context.Background())
	t.stop = stop
	t.wg.Go(func() {
		creds.run(ctx, opts.ReloadInterval)
	})
	dial := grpc.WithContextDialer(creds.dial)
	return transportOptions{
		trace:  []otlptracegrpc.Option{otlptracegrpc.WithTLSCredentials(creds), otlptracegrpc.WithDialOption(dial)},
		metric: []otlpmetricgrpc.Option{otlpmetricgrpc.WithTLSCredentials(creds), otlpmetricgrpc.WithDialOption(dial)},
	}, nil
}

// sampler is flagd's AlwaysSample (every span of every request is recorded and
// exported, whatever the caller's sampling decision), unless OTEL_TRACES_SAMPLER
// asks for another one: then the SDK's choice from the environment stands.
func sampler() sdktrace.Sampler {
	if os.Getenv("OTEL_TRACES_SAMPLER") != "" {
		return nil
	}
	return sdktrace.AlwaysSample()
}

// newResource is the resource flagd sets: OS, host, Go runtime, SDK,
// service.name and service.version, then OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME over them. A detector that fails leaves its attributes out
// (logged at debug level); that is not an error.
func newResource(ctx context.Context, version string, log zerolog.Logger) *resource.Resource {
	res, err := resource.New(ctx,
		resource.WithOS(),
		resource.WithHost(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithProcessRuntimeDescription(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.version", version),
		),
		resource.WithFromEnv(),
	)
	if err != nil {
		log.Debug().Err(err).Msg("otel: some resource attributes could not be detected")
	}
	if res == nil {
		res = resource.Empty()
	}
	return res
}

// TracerProvider returns the tracer provider, or nil when traces are not exported.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil || t.tracer == nil {
		return nil
	}
	return t.tracer
}

// Propagator returns the W3C TraceContext and Baggage propagator, or nil when
// traces are not exported.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil || t.tracer == nil {
		return nil
	}
	return t.prop
}

// Shutdown flushes what is buffered and stops the exporters and the TLS reloading.
// It returns when done or when ctx ends, whichever comes first (a collector that is
// down cannot hold it longer). It may be called more than once.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var errs []error
	if t.tracer != nil {
		if err := t.tracer.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("traces: %w", err))
		}
	}
	if t.meter != nil {
		if err := t.meter.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %w", err))
		}
	}
	t.stopReload()
	return errors.Join(errs...)
}

func (t *Telemetry) stopReload() {
	if t.stop != nil {
		t.stop()
		t.wg.Wait()
	}
}
