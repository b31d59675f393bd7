// Package service holds what the flagd listeners share beyond the generic plumbing
// of package server: building the evaluation context from the request, the static
// --context-value entries and the --context-from-header mappings, and flagd mode's
// readiness report for the management port. The listeners themselves live in the
// sub-packages evaluation, ofrep and syncserver.
package service
