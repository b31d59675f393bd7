package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RPCs records the calls a grpc-go server answers on a listener whose other
// requests go through Middleware, under the same HTTP server metrics and labels:
// method POST and status 200 (gRPC reports its status in trailers, as connect-go's
// gRPC responses do), the route a procedure path from a bounded set, the response
// body size that of the gRPC messages with their 5-byte prefixes. The instruments
// of each route and scheme are looked up once. Create it with Metrics.RPCs; a nil
// *RPCs records nothing.
type RPCs struct {
	m       *Metrics
	service string
	routes  sync.Map // rpcKey -> *rpcInstruments
}

type rpcKey struct {
	route string
	tls   bool
}

type rpcInstruments struct {
	active         prometheus.Gauge
	duration, size prometheus.Observer
}

// RPCs returns the recorder of a listener's grpc-go calls (nil for nil Metrics).
func (m *Metrics) RPCs(service string) *RPCs {
	if m == nil {
		return nil
	}
	return &RPCs{m: m, service: service}
}

// RPC is one call in progress.
type RPC struct {
	in    *rpcInstruments
	start time.Time
}

// Start records the start of a call of route (a procedure path from a bounded
// set); tls says whether the connection is TLS (url_scheme https).
func (r *RPCs) Start(route string, tls bool) RPC {
	if r == nil {
		return RPC{}
	}
	k := rpcKey{route, tls}
	v, ok := r.routes.Load(k)
	if !ok {
		scheme := "http"
		if tls {
			scheme = "https"
		}
		const code = "200"
		v, _ = r.routes.LoadOrStore(k, &rpcInstruments{
			active:   r.m.active.WithLabelValues(r.service, route, http.MethodPost, scheme),
			duration: r.m.duration.WithLabelValues(r.service, route, http.MethodPost, code, scheme),
			size:     r.m.size.WithLabelValues(r.service, route, http.MethodPost, code, scheme),
		})
	}
	in := v.(*rpcInstruments)
	in.active.Inc()
	return RPC{in: in, start: time.Now()}
}

// End records the end of the call with the size of what it sent.
func (c RPC) End(bytes int) {
	if c.in == nil {
		return
	}
	c.in.active.Dec()
	c.in.duration.Observe(time.Since(c.start).Seconds())
	c.in.size.Observe(float64(bytes))
}
