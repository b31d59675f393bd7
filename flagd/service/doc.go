// Package service holds what every flagd listener shares: listening on TCP or a unix
// socket with optional TLS (reloaded when the files change), graceful shutdown, and
// building the evaluation context from the request, the static --context-value
// entries and the --context-from-header mappings. The listeners themselves live in
// the sub-packages evaluation, ofrep, syncserver and management.
package service
