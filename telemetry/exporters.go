package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// errorLogEvery is how often export errors of one signal are logged at most; the
// errors in between are counted and reported with the next log line.
const errorLogEvery = time.Minute

// exportLog logs the outcome of exports of one signal (traces or metrics): the
// first failure at once, later ones at most every errorLogEvery with the number
// left out, and the first success after failures. Export errors are never
// returned to the SDK, whose handler is process-global (otel.Handle) and would
// log them again, unthrottled, through the standard library logger.
type exportLog struct {
	signal  string
	failure string // the message of a failure
	log     zerolog.Logger
	every   time.Duration
	now     func() time.Time

	mu         sync.Mutex
	failing    bool
	last       time.Time // of the last log line about a failure
	suppressed int
}

func newExportLog(signal string, log zerolog.Logger) *exportLog {
	return &exportLog{signal: signal, log: log, every: errorLogEvery, now: time.Now,
		failure: "otel: export to the collector failed; the data is dropped and serving goes on"}
}

// report records the outcome of one export.
func (l *exportLog) report(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		if l.failing {
			l.failing = false
			l.log.Info().Str("signal", l.signal).Int("failures_not_logged", l.suppressed).Msg("otel: export to the collector works again")
			l.suppressed = 0
		}
		return
	}
	now := l.now()
	if l.failing && now.Sub(l.last) < l.every {
		l.suppressed++
		return
	}
	l.failing = true
	l.log.Warn().Str("signal", l.signal).Err(err).Int("failures_not_logged", l.suppressed).
		Dur("next_log_after", l.every).Msg(l.failure)
	l.last, l.suppressed = now, 0
}

// spanExporter reports the outcome of every export to its log.
type spanExporter struct {
	sdktrace.SpanExporter
	log *exportLog
}

func (e spanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.log.report(e.SpanExporter.ExportSpans(ctx, spans))
	return nil
}

// metricExporter reports the outcome of every export to its log.
type metricExporter struct {
	sdkmetric.Exporter
	log *exportLog
}

func (e metricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	e.log.report(e.Exporter.Export(ctx, rm))
	return nil
}

// ErrorHandler routes the errors the OpenTelemetry SDK reports outside of exports
// (a collector's partial success, a collection cut short at shutdown) to log,
// rate-limited like export errors; a cancelled context (shutdown) is logged at
// debug level only. The SDK's handler is process-global, so install it once, in
// main: otel.SetErrorHandler(telemetry.ErrorHandler(log)). Without it the SDK
// prints them unformatted through the standard library logger.
func ErrorHandler(log zerolog.Logger) otel.ErrorHandler {
	l := newExportLog("sdk", log)
	l.failure = "otel: the SDK reported an error"
	return otel.ErrorHandlerFunc(func(err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			log.Debug().Err(err).Msg("otel: SDK operation cut short")
			return
		}
		l.report(err)
	})
}
