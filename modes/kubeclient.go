package modes

import (
	"fmt"

	"github.com/flagpole-dev/flagpole/kube"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"
	"k8s.io/client-go/rest"
)

// instrumentedKube is the client configuration of an operator-side process
// (operator, controller, webhook, flagd-proxy) with klog routed to log, and a
// registry holding the Go and process collectors and the API request metrics,
// which count every request made with the configuration.
func instrumentedKube(log zerolog.Logger, o kube.Options) (*rest.Config, *prometheus.Registry, error) {
	routeKlog(log)
	restCfg, err := kube.Config(o)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	requests, err := kube.NewRequestMetrics(reg)
	if err != nil {
		return nil, nil, err
	}
	requests.Instrument(restCfg)
	return restCfg, reg, nil
}
