// Package server is the listener plumbing every mode shares: opening a TCP or unix
// socket listener, serving HTTP/1.1 and HTTP/2 (h2c without TLS) with limits and
// timeouts, graceful shutdown through a context, TLS certificates reloaded from
// files, and one CORS policy for every listener that answers browsers. The flagd
// listeners, the admission webhook and the operator's management port all use it;
// management endpoints (/healthz, /readyz, /metrics, gRPC health) are in
// server/management.
package server
