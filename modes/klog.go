package modes

import (
	"fmt"

	"github.com/go-logr/logr"
	"github.com/rs/zerolog"
	"k8s.io/klog/v2"
)

// routeKlog sends client-go's log lines (klog) through the process logger, so the
// log stays one JSON stream. client-go's informational lines (watch restarts and the
// like) go to debug level and its errors to warn: the sources report what matters
// to the user themselves.
func routeKlog(log zerolog.Logger) {
	klog.SetLogger(logr.New(klogSink{log: log.With().Str("component", "client-go").Logger()}))
}

// klogSink is a logr.LogSink writing to zerolog.
type klogSink struct {
	log zerolog.Logger
}

func (klogSink) Init(logr.RuntimeInfo) {}

func (s klogSink) Enabled(int) bool { return s.log.GetLevel() <= zerolog.DebugLevel }

func (s klogSink) Info(_ int, msg string, keysAndValues ...any) {
	withFields(s.log.Debug(), keysAndValues).Msg(msg)
}

func (s klogSink) Error(err error, msg string, keysAndValues ...any) {
	withFields(s.log.Warn().Err(err), keysAndValues).Msg(msg)
}

func (s klogSink) WithValues(keysAndValues ...any) logr.LogSink {
	ctx := s.log.With()
	for i := 0; i+1 < len(keysAndValues); i += 2 {
		ctx = ctx.Interface(fmt.Sprint(keysAndValues[i]), keysAndValues[i+1])
	}
	return klogSink{log: ctx.Logger()}
}

func (s klogSink) WithName(name string) logr.LogSink {
	return klogSink{log: s.log.With().Str("logger", name).Logger()}
}

func withFields(e *zerolog.Event, keysAndValues []any) *zerolog.Event {
	for i := 0; i+1 < len(keysAndValues); i += 2 {
		e = e.Interface(fmt.Sprint(keysAndValues[i]), keysAndValues[i+1])
	}
	return e
}
