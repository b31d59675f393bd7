package webhook

import (
	"net/url"
	"slices"
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/eval"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/sidecar"
	flagsync "github.com/flagpole-dev/flagpole/sync"
	grpcsource "github.com/flagpole-dev/flagpole/sync/grpc"
	httpsource "github.com/flagpole-dev/flagpole/sync/http"
)

// ValidateFeatureFlagSource returns the AdmitFunc of FeatureFlagSources. Denied:
// what would make the injected sidecar fail or the pod be refused — unknown
// providers (gcs, azblob and s3 included: flagpole does not implement them), a
// source without any provider, sources that do not parse for their provider
// ([namespace/]name for kubernetes, file and flagd-proxy; an http(s) URL; a grpc
// target), the same source twice, what the sidecar's sync package refuses (each
// source is rendered into its --sources entry and run through sync/http.Check or
// sync/grpc.Check), ports out of range or shared with another listener (the sync
// port 8015 included), invalid environment variable names, context values, header
// mappings and CORS origins a command line cannot carry, an unparsable
// otelCollectorUri, requests above limits. Warned: plain-text credentials
// (httpSyncBearerToken, user info in a URL, envVars that look like secrets),
// plaintext http:// to a remote host, references into other namespaces (unless
// opts.CrossNamespace is allow), fields the source's provider ignores,
// syncProviderArgs (flagd removed them), an evaluator other than json, CORS entries
// that can never match.
func ValidateFeatureFlagSource(opts ValidationOptions) AdmitFunc {
	return validator[v1beta1.FeatureFlagSource](KindFeatureFlagSource, true,
		func(r *report, ffs *v1beta1.FeatureFlagSource, namespace string, _ []byte) {
			checkFeatureFlagSource(r, &ffs.Spec, namespace, opts)
		})
}

// ffsOperatorEnv are the variables the operator sets from a FeatureFlagSource (OFO's
// ToEnvVars), by suffix after the prefix.
var ffsOperatorEnv = map[string]string{
	"MANAGEMENT_PORT": "from spec.managementPort", "PORT": "from spec.port", "EVALUATOR": "from spec.evaluator",
	"LOG_FORMAT": "from spec.logFormat", "RESOLVER": "rpc", "SOCKET_PATH": "from spec.socketPath",
}

// provider facts: which are flagpole's, which OFO knows but flagpole does not run.
var (
	knownProviders = []string{v1beta1.SyncProviderKubernetes, v1beta1.SyncProviderFile, v1beta1.SyncProviderHTTP, v1beta1.SyncProviderGRPC, v1beta1.SyncProviderFlagdProxy}
	blobProviders  = map[string]bool{"gcs": true, "azblob": true, "s3": true}
)

// checkProvider records a problem for a provider flagpole cannot run and reports
// whether it can.
func checkProvider(r *report, path, provider, whose string) bool {
	if slices.Contains(knownProviders, provider) {
		return true
	}
	if blobProviders[provider] {
		r.problemf(path, "%sprovider %q: flagpole's sidecar does not implement the cloud blob providers (gcs, azblob, s3); serve the document over https (an http source) or put it in a FeatureFlag (kubernetes, file or flagd-proxy)", whose, provider)
	} else {
		r.problemf(path, "%sunknown provider %q: one of %s", whose, provider, strings.Join(knownProviders, ", "))
	}
	return false
}

func checkFeatureFlagSource(r *report, spec *v1beta1.FeatureFlagSourceSpec, namespace string, opts ValidationOptions) {
	ports := []namedPort{
		{"spec.port", port(r, "spec.port", spec.Port, v1beta1.DefaultPort)},
		{"spec.managementPort", port(r, "spec.managementPort", spec.ManagementPort, v1beta1.DefaultManagementPort)},
		{"spec.ofrepPort", port(r, "spec.ofrepPort", spec.OfrepPort, v1beta1.DefaultOfrepPort)},
	}
	syncPort := int32(startconfig.Default().SyncPort)
	distinctPorts(r, ports, map[int32]string{syncPort: "the sidecar's sync port (flagd.sync.v1, for in-process providers)"})

	prefix := envVarPrefix(r, "spec.envVarPrefix", spec.EnvVarPrefix)
	if spec.Evaluator != "" && spec.Evaluator != "json" {
		r.warnf("spec.evaluator", "%q is not an evaluator: json (JsonLogic) is the only one; the value only reaches %s, which nothing reads", spec.Evaluator, envVarKey(prefix, "EVALUATOR", false))
	}
	switch spec.LogFormat {
	case "", "json", "console":
	default:
		r.problemf("spec.logFormat", "must be json or console, got %q", spec.LogFormat)
	}
	if strings.ContainsRune(spec.SocketPath, 0) || len(spec.SocketPath) > 107 {
		r.problemf("spec.socketPath", "must be a unix socket path: at most 107 bytes, no NUL")
	}
	defaultOK := spec.DefaultSyncProvider == "" || checkProvider(r, "spec.defaultSyncProvider", spec.DefaultSyncProvider, "")

	sources := checkSources(r, spec, namespace, opts, defaultOK)

	envVars(r, "spec.envVars", prefix, spec.EnvVars, true, ffsOperatorEnv, KindFeatureFlagSource)
	if len(spec.SyncProviderArgs) > 0 {
		r.warnf("spec.syncProviderArgs", "flagd removed --sync-provider-args (flagd #1075) and flagpole's sidecar has no such option: these are not passed on")
	}
	if spec.OtelCollectorURI != "" {
		otelCollectorURI(r, "spec.otelCollectorUri", spec.OtelCollectorURI)
	}
	commandLineMap(r, "spec.contextValues", "--context-value", spec.ContextValues, func(k, _ string) {
		if k == "" {
			r.problemf(eval.Key("spec.contextValues", k), "an empty key cannot be passed to the sidecar (--context-value key=value)")
		}
	})
	commandLineMap(r, "spec.headerToContextMappings", "--context-from-header", spec.HeaderToContextMappings, func(k, v string) {
		p := eval.Key("spec.headerToContextMappings", k)
		if errs := validation.IsHTTPHeaderName(k); len(errs) > 0 {
			r.problemf(p, "%q is not a valid HTTP header name", k)
		}
		if v == "" {
			r.problemf(p, "the evaluation context key is empty")
		}
	})
	cors(r, "spec.cors", spec.Cors)
	resources(r, "spec.resources", spec.Resources)

	if len(r.problems) > 0 {
		return
	}
	// What the sidecar's command line would be: its own checks (ports, OTel) and
	// rendering (what a command line cannot carry) must pass, so that no admitted
	// FeatureFlagSource gives a sidecar that refuses to start.
	cfg := startconfig.Default()
	//nolint:gosec // G115: port() returns 0 or a port from 1 to 65535, and any other value is a problem that returned above
	cfg.Port, cfg.ManagementPort, cfg.OfrepPort = uint16(ports[0].value), uint16(ports[1].value), uint16(ports[2].value)
	cfg.Sources = sources
	cfg.Debug = spec.DebugLogging != nil && *spec.DebugLogging
	if spec.OtelCollectorURI != "" {
		cfg.MetricsExporter, cfg.OtelCollectorURI = "otel", spec.OtelCollectorURI
	}
	cfg.ContextValue, cfg.ContextFromHeader, cfg.CORSOrigin = spec.ContextValues, spec.HeaderToContextMappings, spec.Cors
	err := cfg.Validate()
	if err == nil {
		_, err = cfg.Args()
	}
	if err == nil {
		_, err = flagsync.Combine(nil, sources)
	}
	if err != nil {
		r.problemf("spec", "the sidecar would refuse this configuration: %s", redactSources(err.Error(), sources))
	}
}

// redactSources replaces every source URI in msg with its shown form.
func redactSources(msg string, sources []flagsync.SourceConfig) string {
	for _, s := range sources {
		if display := shown(s.URI); display != s.URI {
			msg = strings.ReplaceAll(msg, s.URI, display)
		}
	}
	return msg
}

// checkSources checks each source for its provider and returns the --sources
// entries the sidecar would get (flagd-proxy sources left out: the operator points
// them at its flagd-proxy).
func checkSources(r *report, spec *v1beta1.FeatureFlagSourceSpec, namespace string, opts ValidationOptions, defaultOK bool) []flagsync.SourceConfig {
	if len(spec.Sources) == 0 {
		r.problemf("spec.sources", "needs at least one source")
		return nil
	}
	var out []flagsync.SourceConfig
	seen := map[string]string{} // what identifies a source -> its path
	for i, src := range spec.Sources {
		p := eval.Index("spec.sources", i)
		provider := src.Provider
		switch {
		case provider != "":
			if !checkProvider(r, p+".provider", provider, "") {
				continue
			}
		case spec.DefaultSyncProvider != "":
			if !defaultOK {
				continue // reported at spec.defaultSyncProvider
			}
			provider = spec.DefaultSyncProvider
		case opts.DefaultSyncProvider != "":
			provider = opts.DefaultSyncProvider
			if !checkProvider(r, p+".provider", provider, "no provider, and the operator's default: ") {
				continue
			}
		default:
			r.problemf(p+".provider", "is required: this FeatureFlagSource has no defaultSyncProvider and the operator no default sync provider")
			continue
		}
		if src.Source == "" {
			r.problemf(p+".source", "is required")
			continue
		}
		if src.Interval < 0 {
			r.problemf(p+".interval", "must not be negative, got %d", src.Interval)
			continue
		}
		before := len(r.problems)
		cfg, id := checkSource(r, p, src, provider, namespace, opts)
		if len(r.problems) > before || id == "" {
			continue
		}
		if other, dup := seen[id]; dup {
			r.problemf(p+".source", "is the same source as %s: the sidecar tells sources apart by their name, so it refuses one given twice", other)
			continue
		}
		seen[id] = p
		if cfg != nil {
			out = append(out, *cfg)
		}
	}
	return out
}

// checkSource checks one source whose provider is known and returns its --sources
// entry (nil for flagd-proxy) and what identifies it among the others.
func checkSource(r *report, p string, src v1beta1.Source, provider, namespace string, opts ValidationOptions) (*flagsync.SourceConfig, string) {
	unused := func(field string, set bool, usedBy string) {
		if set {
			r.warnf(p+"."+field, "only %s sources use it: ignored for a %s source", usedBy, provider)
		}
	}
	switch provider {
	case v1beta1.SyncProviderKubernetes, v1beta1.SyncProviderFile, v1beta1.SyncProviderFlagdProxy:
		if src.HTTPSyncBearerToken != "" {
			r.warnf(p+".httpSyncBearerToken", "only http sources use it: ignored for a %s source, yet stored in plain text where anyone who can read this FeatureFlagSource can read it; remove it", provider)
		}
		unused("tls", src.TLS, "grpc")
		unused("certPath", src.CertPath != "", "grpc")
		unused("providerID", src.ProviderID != "", "grpc")
		unused("selector", src.Selector != "", "grpc")
		unused("interval", src.Interval != 0, "http")
		ref, ok := featureFlagRef(r, p+".source", src.Source, provider, namespace)
		if !ok {
			return nil, ""
		}
		if ref.Namespace != namespace && opts.CrossNamespace != sidecar.CrossNamespaceAllow {
			r.warnf(p+".source", "FeatureFlag %s is in another namespace than this FeatureFlagSource: the pod webhook refuses cross-namespace references unless namespace %q opts in or the operator runs with --cross-namespace=allow", ref, ref.Namespace)
		}
		switch provider {
		case v1beta1.SyncProviderKubernetes:
			return &flagsync.SourceConfig{URI: ref.String(), Provider: flagsync.ProviderKubernetes}, "kubernetes " + ref.String()
		case v1beta1.SyncProviderFile:
			dir := ref.Namespace + "_" + ref.Name
			return &flagsync.SourceConfig{URI: "/etc/flagd/" + dir + "/" + dir + ".flagd.json", Provider: flagsync.ProviderFile}, "file " + ref.String()
		}
		return nil, "flagd-proxy " + ref.String()
	case v1beta1.SyncProviderHTTP:
		unused("tls", src.TLS, "grpc")
		unused("certPath", src.CertPath != "", "grpc")
		unused("providerID", src.ProviderID != "", "grpc")
		unused("selector", src.Selector != "", "grpc")
		cfg, ok := httpSource(r, p, src)
		if !ok {
			return nil, ""
		}
		return cfg, cfg.Name()
	case v1beta1.SyncProviderGRPC:
		if src.HTTPSyncBearerToken != "" {
			r.warnf(p+".httpSyncBearerToken", "only http sources use it: ignored for a grpc source (nothing is sent), yet stored in plain text where anyone who can read this FeatureFlagSource can read it; remove it")
		}
		unused("interval", src.Interval != 0, "http")
		if src.Selector != "" {
			selector(r, p+".selector", src.Selector)
		}
		cfg := flagsync.SourceConfig{URI: src.Source, Provider: flagsync.ProviderGRPC, TLS: src.TLS, CertPath: src.CertPath,
			ProviderID: src.ProviderID, Selector: src.Selector}
		lower := strings.ToLower(src.Source)
		if src.CertPath != "" && !src.TLS && !strings.HasPrefix(lower, "grpcs://") {
			r.problemf(p+".certPath", "needs TLS: set tls: true (or use a grpcs:// source); the sidecar, as flagd, refuses a CA file for a plaintext connection")
			return nil, ""
		}
		if err := grpcsource.Check(cfg); err != nil {
			syncProblem(r, p, src.Source, err)
			return nil, ""
		}
		return &cfg, cfg.Name()
	}
	return nil, ""
}

// featureFlagRef parses the [namespace/]name source of a kubernetes, file or
// flagd-proxy provider, with a clearer message for paths and flagd URIs.
func featureFlagRef(r *report, path, source, provider, namespace string) (sidecar.Ref, bool) {
	ref, err := sidecar.ParseRef(source, namespace)
	if err == nil {
		return ref, true
	}
	display := shown(source)
	switch {
	case strings.HasPrefix(source, "core.openfeature.dev/"):
		r.problemf(path, "a %s source is a FeatureFlag name, [namespace/]name: drop the core.openfeature.dev/ prefix of %q", provider, display)
	case provider == v1beta1.SyncProviderFile && (strings.HasPrefix(source, "/") || strings.HasPrefix(source, "file:") || strings.Contains(source, "..") || strings.ContainsRune(source, '\\')):
		r.problemf(path, "a file source is a FeatureFlag name, [namespace/]name, not a path (%q): the operator writes that FeatureFlag into a ConfigMap and mounts it in the sidecar", display)
	case strings.Contains(source, "://"):
		r.problemf(path, "a %s source is a FeatureFlag name, [namespace/]name, not a URL (%q): use provider http or grpc for a URL", provider, display)
	case display != source:
		r.problemf(path, "a %s source is a FeatureFlag name, [namespace/]name, not %q", provider, display)
	default:
		r.problemf(path, "a %s source is a FeatureFlag name, [namespace/]name: %v", provider, err)
	}
	return sidecar.Ref{}, false
}

// httpSource checks an http source and renders it. Plaintext to a remote host is a
// warning: flagd and OFO accept it, and the pod webhook renders such a source with
// allowInsecure, so it works, unencrypted.
func httpSource(r *report, p string, src v1beta1.Source) (*flagsync.SourceConfig, bool) {
	u, err := url.Parse(src.Source)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.problemf(p+".source", "an http source must be an absolute http:// or https:// URL, not %q", shown(src.Source))
		return nil, false
	}
	if u.User != nil {
		r.warnf(p+".source", "the URL holds credentials (user info) in plain text: anyone who can read this FeatureFlagSource or the pods can read them; prefer a Secret")
	}
	if u.Scheme == "http" && !flagsync.IsLoopbackHost(u.Hostname()) {
		r.warnf(p+".source", "plain http:// to %s: flags (and any token) travel unencrypted; the injected sidecar allows it (allowInsecure, as flagd and OFO do), but use https://", u.Hostname())
	}
	//nolint:gosec // G115: the caller refuses a negative interval before it checks the source
	cfg := flagsync.SourceConfig{URI: src.Source, Provider: flagsync.ProviderHTTP, Interval: uint32(src.Interval), AllowInsecure: true}
	if tok := src.HTTPSyncBearerToken; tok != "" {
		tp := p + ".httpSyncBearerToken"
		switch {
		case len(tok) > 7 && strings.EqualFold(tok[:7], "bearer "):
			r.problemf(tp, "give the token alone, without \"Bearer \": the sidecar sends \"Authorization: Bearer <token>\"")
			return nil, false
		case strings.IndexFunc(tok, func(c rune) bool { return unicode.IsSpace(c) || unicode.IsControl(c) }) >= 0:
			r.problemf(tp, "contains white space or control characters: it cannot be sent in an Authorization header")
			return nil, false
		}
		r.warnf(tp, "the token is stored in plain text: anyone who can read this FeatureFlagSource can read it; prefer a Secret")
		cfg.AuthHeader = "Bearer " + tok
	}
	if err := httpsource.Check(cfg); err != nil {
		syncProblem(r, p, src.Source, err)
		return nil, false
	}
	return &cfg, true
}

// syncFields maps the --sources fields in the sync package's errors to the fields of
// a FeatureFlagSource source.
var syncFields = map[string]string{
	"uri": "source", "authHeader": "httpSyncBearerToken", "certPath": "certPath", "tls": "tls",
	"selector": "selector", "providerID": "providerID", "interval": "interval",
}

// syncProblem records an error of sync/http.Check or sync/grpc.Check ("field: ...")
// at the source's field, with the source quoted as shown quotes it.
func syncProblem(r *report, p, source string, err error) {
	msg := err.Error()
	if display := shown(source); display != source {
		msg = strings.ReplaceAll(msg, source, display)
	}
	if field, rest, ok := strings.Cut(msg, ": "); ok {
		if f, known := syncFields[field]; known {
			r.problemf(p+"."+f, "the sidecar would refuse it: %s", rest)
			return
		}
	}
	r.problemf(p, "the sidecar would refuse it: %s", msg)
}

// commandLineMap checks a map the sidecar gets as repeated key=value flags: a key
// with "=" or a backslash before a comma cannot be carried (flagd/startconfig). each
// runs the map's own checks per entry.
func commandLineMap(r *report, path, flag string, m map[string]string, each func(k, v string)) {
	for _, k := range sortedKeys(m) {
		v := m[k]
		p := eval.Key(path, k)
		each(k, v)
		if strings.Contains(k, "=") {
			r.problemf(p, "a key with \"=\" cannot be passed to the sidecar (%s key=value)", flag)
		}
		if strings.Contains(k+"="+v, `\,`) {
			r.problemf(p, "a backslash before a comma cannot be passed to the sidecar (%s splits its values on commas)", flag)
		}
	}
}

// cors checks --cors-origin entries: representable on a command line (a problem),
// and able to match a browser's Origin (warnings otherwise).
func cors(r *report, path string, origins []string) {
	for i, o := range origins {
		p := eval.Index(path, i)
		t := strings.TrimSpace(o)
		switch {
		case strings.Contains(o, `\,`):
			r.problemf(p, "a backslash before a comma cannot be passed to the sidecar (--cors-origin splits its values on commas)")
		case t == "":
			r.warnf(p, "empty: ignored")
		case t == "*":
			r.warnf(p, "allows every origin: any web page a user's browser opens may read flag values from the sidecar")
		case strings.Count(t, "*") > 1:
			r.warnf(p, "%q: only the first * is a wildcard, the others must match literally, so it never matches", shown(t))
		case strings.Contains(t, ","):
			r.warnf(p, "%q holds a comma: one origin per entry", shown(t))
		default:
			if !looksLikeOrigin(t) {
				r.warnf(p, "%q is not an origin (scheme://host[:port], no path): it never matches a browser's Origin header", shown(t))
			}
		}
	}
}

// looksLikeOrigin reports whether o (possibly with one *) has an origin's shape.
func looksLikeOrigin(o string) bool {
	u, err := url.Parse(strings.Replace(o, "*", "wildcard", 1))
	return err == nil && u.Scheme != "" && u.Host != "" && u.User == nil && (u.Path == "") && u.RawQuery == "" && u.Fragment == ""
}
