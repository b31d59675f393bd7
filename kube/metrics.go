package kube

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// RequestMetrics counts the requests a client sends to the API server:
// flagpole_kube_requests_total{verb,resource,code}, where verb is the HTTP method or
// WATCH and resource the plural resource (with its subresource). It shows what the
// operator costs the API server (the scale benchmark reads it: zero writes in a
// steady state).
type RequestMetrics struct {
	requests *prometheus.CounterVec
}

// NewRequestMetrics registers the counter with reg.
func NewRequestMetrics(reg prometheus.Registerer) (*RequestMetrics, error) {
	m := &RequestMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flagpole_kube_requests_total", Help: "Requests sent to the Kubernetes API server, by verb, resource and status code.",
	}, []string{"verb", "resource", "code"})}
	if err := reg.Register(m.requests); err != nil {
		return nil, err
	}
	return m, nil
}

// Instrument makes every client built from cfg count its requests.
func (m *RequestMetrics) Instrument(cfg *rest.Config) {
	if m == nil {
		return
	}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, m} })
}

type countingTransport struct {
	next http.RoundTripper
	m    *RequestMetrics
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	verb := r.Method
	if r.URL.Query().Get("watch") == "true" {
		verb = "WATCH"
	}
	t.m.requests.WithLabelValues(verb, resourceOf(r.URL.Path), code).Inc()
	return resp, err
}

// resourceOf reads the resource (and subresource) of an API path:
// /api/v1/namespaces/ns/pods/name/status → pods/status.
func resourceOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "other"
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if len(parts) == 2 {
			return "namespaces"
		}
		parts = parts[2:]
	}
	switch len(parts) {
	case 0:
		return "discovery"
	case 1, 2:
		return parts[0]
	}
	return parts[0] + "/" + parts[2]
}
