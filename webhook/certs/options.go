package certs

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
)

// Defaults of Options.
const (
	// DefaultSecretName is the Secret holding the CA and serving certificate.
	DefaultSecretName = "flagpole-webhook-tls"
	// DefaultClusterDomain is the cluster's DNS domain (OFO's FLAGD_CLUSTER_DOMAIN).
	DefaultClusterDomain = "cluster.local"
	// DefaultCALifetime is one year: the CA is renewed after eight months, and the
	// old CA stays trusted for the four months left, which is also how long a
	// stopped operator can come back without a disruptive CA replacement. A CA
	// change rewrites every webhook configuration's caBundle (a diff in GitOps
	// tools), so it should be rare.
	DefaultCALifetime = 365 * 24 * time.Hour
	// DefaultServingLifetime is 30 days: renewed after 20, so an operator that
	// cannot renew (stopped, or its API access broken) still serves a valid
	// certificate for 10 more days, with /readyz and the expiry metric to alert on.
	// Shorter would protect little: whoever can read the serving key can usually
	// read the Secret, and with it the CA key.
	DefaultServingLifetime = 30 * 24 * time.Hour
	// DefaultRecheck is how often the Secret and the webhook configurations are
	// checked besides their watch events and the timed renewals (see Options.Recheck).
	DefaultRecheck = time.Minute
)

// Options configure a Source. In mounted mode (CertDir set) only CertDir, Log and
// Recheck are used.
type Options struct {
	// CertDir, when set, selects the mounted mode: tls.crt and tls.key are read
	// from this directory (a mounted kubernetes.io/tls Secret, e.g. from
	// cert-manager) and reloaded when they change. caBundle injection is then the
	// issuer's business (cert-manager's cainjector). Empty: self-managed mode.
	CertDir string

	// Config reaches the API server (self-managed mode).
	Config *rest.Config
	// Namespace is the operator's namespace, where the Secret lives; usually
	// POD_NAMESPACE from the downward API.
	Namespace string
	// SecretName is the Secret holding ca.crt, ca.key, tls.crt and tls.key;
	// default DefaultSecretName.
	SecretName string
	// ServiceName is the webhook's Service: the serving certificate holds
	// <service>.<namespace>.svc and <service>.<namespace>.svc.<cluster domain>.
	ServiceName string
	// ClusterDomain defaults to DefaultClusterDomain.
	ClusterDomain string
	// Hosts are further DNS names and IP addresses for the serving certificate (a
	// webhook registered by URL, e.g. https://127.0.0.1:9443/...).
	Hosts []string
	// MutatingWebhookConfigurations and ValidatingWebhookConfigurations name the
	// configurations whose every webhook gets the CA bundle as caBundle. One that
	// does not exist is patched when it appears.
	MutatingWebhookConfigurations   []string
	ValidatingWebhookConfigurations []string
	// CALifetime and ServingLifetime default to DefaultCALifetime and
	// DefaultServingLifetime; each certificate is renewed at 2/3 of its lifetime.
	// ServingLifetime may be at most a third of CALifetime, so that a CA outlives
	// every serving certificate it signed while it is still trusted.
	CALifetime, ServingLifetime time.Duration
	// Recheck, default DefaultRecheck, is how often everything is checked again
	// from the watch caches. Renewals are timed exactly and changes arrive by
	// watch, so this only bounds the effect of a clock jump (a suspended machine)
	// and retries whatever failed; reading caches costs no API request. In
	// mounted mode it is how often the files are read (besides on handshakes, at
	// most once a second); there its default is 10 seconds.
	Recheck time.Duration
	// Propagation is how long a new CA must have been in every caBundle (with no
	// webhook configurations: in the Secret, for CABundle's readers) before it
	// signs the serving certificate; default 30 s, at most ServingLifetime/30.
	// Clients that read the bundle from a mounted ConfigMap need minutes.
	Propagation time.Duration
	// OnCABundle, when set, is called from Run's goroutine whenever
	// Source.CABundle changes (self-managed mode): the first time the Secret is
	// read, and when a CA is added or dropped.
	OnCABundle func()
	// Purpose names the certificate in errors ("<purpose> certificates: ...");
	// default "webhook".
	Purpose string
	// Log receives what happens: certificates issued and loaded, caBundles set,
	// and errors naming what to fix.
	Log zerolog.Logger
}

// withDefaults fills in defaults and checks the self-managed options.
func (o Options) withDefaults() (Options, hosts, error) {
	if o.SecretName == "" {
		o.SecretName = DefaultSecretName
	}
	if o.Purpose == "" {
		o.Purpose = "webhook"
	}
	if o.ClusterDomain == "" {
		o.ClusterDomain = DefaultClusterDomain
	}
	if o.CALifetime == 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.ServingLifetime == 0 {
		o.ServingLifetime = DefaultServingLifetime
	}
	if o.Recheck == 0 {
		o.Recheck = DefaultRecheck
	}
	if o.Propagation == 0 {
		o.Propagation = min(30*time.Second, o.ServingLifetime/30)
	}
	var errs []error
	if o.Namespace == "" {
		errs = append(errs, errors.New("no namespace: set POD_NAMESPACE (from the downward API's metadata.namespace)"))
	} else if e := validation.IsDNS1123Label(o.Namespace); len(e) > 0 {
		errs = append(errs, fmt.Errorf("namespace %q: %s", o.Namespace, strings.Join(e, "; ")))
	}
	if e := validation.IsDNS1123Subdomain(o.SecretName); len(e) > 0 {
		errs = append(errs, fmt.Errorf("secret name %q: %s", o.SecretName, strings.Join(e, "; ")))
	}
	if o.ServiceName == "" {
		errs = append(errs, errors.New("no service name (the webhook's Service, for the certificate's DNS names)"))
	} else if e := validation.IsDNS1035Label(o.ServiceName); len(e) > 0 {
		errs = append(errs, fmt.Errorf("service name %q: %s", o.ServiceName, strings.Join(e, "; ")))
	}
	if e := validation.IsDNS1123Subdomain(o.ClusterDomain); len(e) > 0 {
		errs = append(errs, fmt.Errorf("cluster domain %q: %s", o.ClusterDomain, strings.Join(e, "; ")))
	}
	for _, n := range slices.Concat(o.MutatingWebhookConfigurations, o.ValidatingWebhookConfigurations) {
		if e := validation.IsDNS1123Subdomain(n); len(e) > 0 {
			errs = append(errs, fmt.Errorf("webhook configuration name %q: %s", n, strings.Join(e, "; ")))
		}
	}
	switch {
	case o.CALifetime < 0 || o.ServingLifetime < 0 || o.Recheck < 0 || o.Propagation < 0:
		errs = append(errs, errors.New("lifetimes and the recheck interval must be positive"))
	case o.ServingLifetime*3 > o.CALifetime:
		errs = append(errs, fmt.Errorf("serving certificate lifetime %s is more than a third of the CA lifetime %s", o.ServingLifetime, o.CALifetime))
	}
	svc := o.ServiceName + "." + o.Namespace + ".svc"
	h := hosts{dns: []string{svc, svc + "." + o.ClusterDomain}}
	for _, s := range o.Hosts {
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(h.ips, ip.Equal) {
				h.ips = append(h.ips, ip)
			}
			continue
		}
		s = strings.TrimSuffix(s, ".")
		if e := validation.IsDNS1123Subdomain(s); len(e) > 0 {
			errs = append(errs, fmt.Errorf("host %q is neither an IP address nor a DNS name: %s", s, strings.Join(e, "; ")))
			continue
		}
		if !slices.Contains(h.dns, s) {
			h.dns = append(h.dns, s)
		}
	}
	o.MutatingWebhookConfigurations = dedupe(o.MutatingWebhookConfigurations)
	o.ValidatingWebhookConfigurations = dedupe(o.ValidatingWebhookConfigurations)
	if err := errors.Join(errs...); err != nil {
		return o, hosts{}, fmt.Errorf("%s certificates: %w", o.Purpose, err)
	}
	return o, h, nil
}

// dedupe returns names without repeats, in order.
func dedupe(names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}
