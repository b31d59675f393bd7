// Package certs gives the admission webhook its TLS certificate without
// cert-manager (DESIGN.md decision 4), or serves one that is mounted. The operator
// runs a second self-managed Source, with no webhook configuration, for the
// flagd-proxy's certificate: its CA bundle (Source.CABundle, Options.OnCABundle)
// goes to the sidecars through ConfigMaps, and a new CA signs only after
// Options.Propagation.
//
// A Source serves the current certificate through tls.Config.GetCertificate,
// reports through Healthy whether that certificate is usable (for /readyz), and
// exports its expiry as flagpole_webhook_certificate_expiry_timestamp_seconds.
// Certificates change while the server runs; nothing restarts.
//
// Self-managed mode (the default): the CA and the serving certificate live in one
// Secret in the operator's namespace (keys ca.crt, ca.key, tls.crt, tls.key; type
// kubernetes.io/tls), shared by every replica:
//
//   - On start the Secret is created, or adopted as it is when it is valid: a CA
//     with its key, and a serving certificate that chains to it and holds every
//     wanted name. Replicas starting together race on the create; the losers read
//     the winner's Secret and adopt it. Every write carries the resourceVersion it
//     was computed from; a lost race is read again and decided again.
//   - Unusable contents are replaced and logged as a warning: an unusable CA (not
//     PEM, not a CA, expired, a key that does not match) replaces everything; an
//     unusable serving certificate (bad pair, another CA, expired, a name missing)
//     is re-issued by the Secret's CA. Other keys of the Secret are kept.
//   - Keys are ECDSA P-256. The serving certificate holds
//     <service>.<namespace>.svc, <service>.<namespace>.svc.<cluster domain> and the
//     extra hosts (DNS names or IP addresses).
//   - Each certificate is renewed at 2/3 of its lifetime. A renewed CA goes into
//     ca.crt in front of the old one, which stays until it expires; ca.crt is the
//     caBundle. The new CA signs serving certificates only after it has been seen
//     in every webhook configuration's caBundle for a moment, so an API server
//     never meets a certificate from a CA it does not trust yet (or, if the
//     caBundles cannot be written, at 5/6 of the old certificate's lifetime).
//   - Every replica watches the Secret (an informer on that one object) and serves
//     what it holds: one replica writes, all follow.
//   - The caBundle of every webhook in the named Mutating- and
//     ValidatingWebhookConfigurations is kept equal to ca.crt; the configurations
//     are watched, so a kubectl apply or a GitOps sync that resets caBundle is
//     repaired at once. A configuration that does not exist yet is patched when it
//     appears.
//   - Besides watch events and the exact renewal times, everything is checked
//     again every Options.Recheck (a minute) from the caches, at no API cost.
//
// Mounted mode (Options.CertDir): tls.crt and tls.key are read from a directory,
// typically a Secret issued by cert-manager, and reloaded when their contents
// change (the kubelet's `..data` symlink swap included). The caBundle is then the
// issuer's business.
//
// The package uses REST clients whose scheme holds only core/v1 and
// admissionregistration/v1, never client-go's clientset (docs/architecture.md,
// "One lean binary"). Errors name the object and, when forbidden, the verbs and
// resource the service account needs; docs/webhook.md lists the RBAC.
package certs
