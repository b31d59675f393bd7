// Package proxy is flagpole's flagd-proxy: one process serves FeatureFlags to many
// flagd sidecars over flagd.sync.v1 (FlagSyncService), instead of every sidecar
// watching the API server. A request's selector "core.openfeature.dev/<namespace>/<name>"
// names a FeatureFlag (the OpenFeature Operator's wire contract, ofo-compat §2.7).
//
// Flags follows every FeatureFlag through one shared informer, which keeps each as
// its encoded flag document (encoded once per change, when it arrives); the
// document of a FeatureFlag that streams follow is handed to every one of them as
// the same string (the newest document wins for a stream that has not sent the
// previous one yet). A deleted FeatureFlag keeps its streams open with its last
// flags, as the kubernetes source does.
//
// Authorizer checks who is asking: the caller presents its pod's projected
// ServiceAccount token (audience of the proxy's choosing) as "authorization: Bearer"
// metadata; TokenReview verifies it and SubjectAccessReview asks whether that
// ServiceAccount may get the FeatureFlag it names (the per-namespace grants the pod
// webhook writes). Both decisions are cached briefly in bounded caches, open streams
// are re-checked, and a caller without a valid token or without the grant gets
// PermissionDenied and nothing else.
//
// Service is the FlagSyncService; it serves through flagd/service/syncserver's
// listener (limits, TLS, graceful shutdown).
package proxy
