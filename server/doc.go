// Package server is the listener plumbing every mode shares: opening a TCP or unix
// socket listener, serving HTTP/1.1 and HTTP/2 (h2c without TLS) with limits and
// timeouts configured per listener (header and body deadlines, an idle timeout, a
// connection cap shared by the listeners that pass the same ConnLimit), graceful
// shutdown through a context, TLS certificates reloaded from files, one CORS policy
// for every listener that answers browsers, a throttle for warnings clients can
// trigger at will, and returning memory to the OS after bursts of connections. The
// flagd listeners, the admission webhook and the operator's management port all use
// it; management endpoints (/healthz, /readyz, /metrics, gRPC health) are in
// server/management, and the bounded protobuf codecs of every listener and client in
// server/protolimit.
package server
