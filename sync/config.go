package sync

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Providers flagd knows. flagpole implements file, kubernetes, http and grpc; the
// cloud blob providers are recognised so that the error can say so.
const (
	ProviderFile       = "file"
	ProviderFsnotify   = "fsnotify" // flagd's explicit file watcher; same as file here
	ProviderFileinfo   = "fileinfo" // flagd's polling file watcher; same as file here
	ProviderKubernetes = "kubernetes"
	ProviderHTTP       = "http"
	ProviderGRPC       = "grpc"
	ProviderGCS        = "gcs"
	ProviderAzblob     = "azblob"
	ProviderS3         = "s3"
)

var knownProviders = map[string]bool{
	ProviderFile: true, ProviderFsnotify: true, ProviderFileinfo: true, ProviderKubernetes: true,
	ProviderHTTP: true, ProviderGRPC: true, ProviderGCS: true, ProviderAzblob: true, ProviderS3: true,
}

// OAuth is the client-credentials configuration of an http source.
type OAuth struct {
	ClientID     string `json:"clientID,omitempty"`
	ClientSecret string `json:"clientSecret,omitempty"`
	TokenURL     string `json:"tokenUrl,omitempty"`
	Folder       string `json:"folder,omitempty"`
	ReloadDelayS int    `json:"reloadDelayS,omitempty"`
}

// SourceConfig is one entry of flagd's --sources JSON (field names as flagd's).
type SourceConfig struct {
	URI                string            `json:"uri"`
	Provider           string            `json:"provider"`
	AuthHeader         string            `json:"authHeader,omitempty"`
	CertPath           string            `json:"certPath,omitempty"`
	TLS                bool              `json:"tls,omitempty"`
	ProviderID         string            `json:"providerID,omitempty"`
	Selector           string            `json:"selector,omitempty"`
	Interval           uint32            `json:"interval,omitempty"`
	IntervalSeed       string            `json:"intervalSeed,omitempty"`
	MaxMsgSize         int               `json:"maxMsgSize,omitempty"`
	TimeoutS           int               `json:"timeoutS,omitempty"`
	IncrementalUpdates bool              `json:"incrementalUpdates,omitempty"`
	Headers            map[string]string `json:"headers,omitempty"`
	OAuth              *OAuth            `json:"oauth,omitempty"`

	// flagpole additions (flagd rejects them as unknown fields).

	// AuthHeaderEnv names an environment variable holding the whole Authorization
	// header value (e.g. "Bearer abc"), for http and grpc sources: unlike authHeader,
	// the value does not appear in pod specs or process arguments.
	AuthHeaderEnv string `json:"authHeaderEnv,omitempty"`
	// AuthHeaderFile names a file holding the whole Authorization header value (e.g.
	// a mounted Secret); it is re-read before every request, so rotation needs no
	// restart. Surrounding whitespace and the trailing newline are ignored.
	AuthHeaderFile string `json:"authHeaderFile,omitempty"`
	// BearerTokenFile names a file holding a bare bearer token — a projected
	// ServiceAccount token, as the webhook mounts for flagd-proxy sources — sent as
	// "Authorization: Bearer <token>". It is re-read before every request or stream,
	// so the kubelet's rotation needs no restart.
	BearerTokenFile string `json:"bearerTokenFile,omitempty"`
	// AllowInsecure permits plaintext to a host that is not loopback: http:// URLs
	// (and their OAuth token URLs), and credentials over plaintext grpc://. Without
	// it such sources are refused.
	AllowInsecure bool `json:"allowInsecure,omitempty"`
}

// Name is the source string flags are tagged with (flagd-compat §4.1): the path for
// file sources, ns/name for kubernetes, host:port for grpc, the URI otherwise. A
// grpc source with a selector is "<uri> <selector>": several selections of one sync
// server (flagd-proxy sources: one FeatureFlag each, all from the same proxy) are
// distinct sources, where flagd would let them overwrite each other's flags.
func (c SourceConfig) Name() string {
	if c.Provider == ProviderGRPC && c.Selector != "" {
		return c.URI + " " + c.Selector
	}
	return c.URI
}

var uriPrefixes = []struct {
	re       *regexp.Regexp
	provider string
	strip    string
	tls      bool
}{
	{regexp.MustCompile(`^file:`), ProviderFile, "file:", false},
	{regexp.MustCompile(`^core\.openfeature\.dev/`), ProviderKubernetes, "core.openfeature.dev/", false},
	{regexp.MustCompile(`^https?://`), ProviderHTTP, "", false},
	{regexp.MustCompile(`^grpc://`), ProviderGRPC, "grpc://", false},
	{regexp.MustCompile(`^grpcs://`), ProviderGRPC, "grpcs://", true},
	{regexp.MustCompile(`^(envoy|dns|uds|xds)`), ProviderGRPC, "", false},
	{regexp.MustCompile(`^gs://.+?/`), ProviderGCS, "", false},
	{regexp.MustCompile(`^azblob://.+?/`), ProviderAzblob, "", false},
	{regexp.MustCompile(`^s3://.+?/`), ProviderS3, "", false},
}

// ParseURI maps one --uri value to a source by its prefix, as flagd does.
func ParseURI(uri string) (SourceConfig, error) {
	for _, p := range uriPrefixes {
		if p.re.MatchString(uri) {
			return SourceConfig{URI: strings.TrimPrefix(uri, p.strip), Provider: p.provider, TLS: p.tls}, nil
		}
	}
	return SourceConfig{}, fmt.Errorf("invalid sync uri argument: %s, must start with 'file:', 'http(s)://', 'grpc(s)://', 'gs://', 'azblob://', 's3://' or 'core.openfeature.dev'", uri)
}

// ParseSources parses the --sources JSON array and validates each entry.
func ParseSources(raw string) ([]SourceConfig, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil, nil
	}
	var out []SourceConfig
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("--sources: must be a JSON array of {\"uri\": ..., \"provider\": ...}: %w", err)
	}
	if err := Validate(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Validate checks source entries: uri and a known provider are required, the
// interval is at most a day, numeric limits are not negative, at most one way of
// giving credentials is used, flagpole's own fields appear only on the providers
// that use them, and headers are well formed. Provider-specific checks that need
// the URI parsed (schemes, certificates, files) happen when the source is built.
func Validate(sources []SourceConfig) error {
	for i, s := range sources {
		where := fmt.Sprintf("sources[%d]", i)
		switch {
		case s.URI == "":
			return fmt.Errorf("%s.uri: is required", where)
		case s.Provider == "":
			return fmt.Errorf("%s.provider: is required (one of file, kubernetes, http, grpc)", where)
		case !knownProviders[s.Provider]:
			return fmt.Errorf("%s.provider: unknown provider %q (one of file, kubernetes, http, grpc)", where, s.Provider)
		case s.Interval > 86400:
			return fmt.Errorf("%s.interval: %d seconds is more than a day (86400)", where, s.Interval)
		}
		if s.Provider == ProviderKubernetes && strings.Count(s.URI, "/") != 1 {
			return fmt.Errorf("%s.uri: a kubernetes source is <namespace>/<name>, got %q", where, s.URI)
		}
		if err := s.validateAdditions(); err != nil {
			return fmt.Errorf("%s.%w", where, err)
		}
	}
	return nil
}

// envName is what a portable environment variable name looks like.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validateAdditions checks the fields the http and grpc sources use. Errors start
// with the field name.
func (c SourceConfig) validateAdditions() error {
	remote := c.Provider == ProviderHTTP || c.Provider == ProviderGRPC
	switch {
	case c.TimeoutS < 0:
		return fmt.Errorf("timeoutS: must not be negative, got %d", c.TimeoutS)
	case c.MaxMsgSize < 0:
		return fmt.Errorf("maxMsgSize: must not be negative, got %d", c.MaxMsgSize)
	case c.AuthHeaderEnv != "" && !remote:
		return fmt.Errorf("authHeaderEnv: only http and grpc sources use it, not %s", c.Provider)
	case c.AuthHeaderFile != "" && !remote:
		return fmt.Errorf("authHeaderFile: only http and grpc sources use it, not %s", c.Provider)
	case c.BearerTokenFile != "" && !remote:
		return fmt.Errorf("bearerTokenFile: only http and grpc sources use it, not %s", c.Provider)
	case c.AllowInsecure && !remote:
		return fmt.Errorf("allowInsecure: only http and grpc sources use it, not %s", c.Provider)
	case c.AuthHeaderEnv != "" && !envName.MatchString(c.AuthHeaderEnv):
		return fmt.Errorf("authHeaderEnv: %q is not an environment variable name", c.AuthHeaderEnv)
	}
	var auth []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"authHeader", c.AuthHeader != ""}, {"authHeaderEnv", c.AuthHeaderEnv != ""}, {"authHeaderFile", c.AuthHeaderFile != ""},
		{"bearerTokenFile", c.BearerTokenFile != ""}, {"oauth", c.OAuth != nil}} {
		if f.set {
			auth = append(auth, f.name)
		}
	}
	if len(auth) > 1 {
		return fmt.Errorf("%s: give one of authHeader, authHeaderEnv, authHeaderFile, bearerTokenFile or oauth, not %s", auth[0], strings.Join(auth, " and "))
	}
	for _, k := range sortedKeys(c.Headers) {
		if !validHeaderName(k) {
			return fmt.Errorf("headers: %q is not a valid header name", k)
		}
		if strings.ContainsAny(c.Headers[k], "\r\n\x00") {
			return fmt.Errorf("headers.%s: the value contains a line break or NUL", k)
		}
		if strings.EqualFold(k, "Authorization") && len(auth) > 0 {
			return fmt.Errorf("headers.%s: conflicts with %s; give the credentials once", k, auth[0])
		}
	}
	if o := c.OAuth; o != nil {
		switch {
		case c.Provider != ProviderHTTP:
			return fmt.Errorf("oauth: only http sources use it, not %s", c.Provider)
		case o.TokenURL == "":
			return errors.New("oauth.tokenUrl: is required")
		case o.ReloadDelayS < 0:
			return fmt.Errorf("oauth.reloadDelayS: must not be negative, got %d", o.ReloadDelayS)
		case o.Folder != "" && (o.ClientID != "" || o.ClientSecret != ""):
			return errors.New("oauth.folder: give either folder (with client-id and client-secret files) or clientID and clientSecret, not both")
		case o.Folder == "" && (o.ClientID == "" || o.ClientSecret == ""):
			return errors.New("oauth.clientID: clientID and clientSecret are required unless folder is given")
		}
	}
	return nil
}

// validHeaderName reports whether k is an HTTP header field name (an RFC 9110 token).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		if r >= 0x80 || !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// maxAuthHeaderFile bounds an authHeaderFile: a header value, not a document.
const maxAuthHeaderFile = 64 << 10

// AuthHeaderValue returns the Authorization header value set by authHeader,
// authHeaderEnv, authHeaderFile or bearerTokenFile ("Bearer " and the file's
// token), or "" when none is set (oauth is the http source's business). Files are
// read on every call. Errors name the field and the variable or file, never the
// value.
func (c SourceConfig) AuthHeaderValue() (string, error) {
	var v, field string
	switch {
	case c.AuthHeader != "":
		v, field = c.AuthHeader, "authHeader"
	case c.AuthHeaderEnv != "":
		field = "authHeaderEnv"
		env, ok := os.LookupEnv(c.AuthHeaderEnv)
		if !ok {
			return "", fmt.Errorf("authHeaderEnv: environment variable %s is not set", c.AuthHeaderEnv)
		}
		v = env
	case c.AuthHeaderFile != "":
		field = "authHeaderFile"
		data, err := readCredential(field, c.AuthHeaderFile)
		if err != nil {
			return "", err
		}
		v = data
	case c.BearerTokenFile != "":
		field = "bearerTokenFile"
		data, err := readCredential(field, c.BearerTokenFile)
		if err != nil {
			return "", err
		}
		if v = strings.TrimSpace(data); v != "" {
			if strings.ContainsAny(v, " \t") {
				return "", fmt.Errorf("bearerTokenFile %s: the token contains white space; the file must hold the bare token (authHeaderFile takes a whole header value)", c.BearerTokenFile)
			}
			v = "Bearer " + v
		}
	default:
		return "", nil
	}
	v = strings.TrimSpace(v)
	where := field
	switch field {
	case "authHeaderEnv":
		where += " " + c.AuthHeaderEnv
	case "authHeaderFile":
		where += " " + c.AuthHeaderFile
	case "bearerTokenFile":
		where += " " + c.BearerTokenFile
	}
	if v == "" {
		return "", fmt.Errorf("%s: the value is empty", where)
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "", fmt.Errorf("%s: the value contains a line break or NUL", where)
	}
	return v, nil
}

// readCredential reads a credential file of at most maxAuthHeaderFile bytes.
func readCredential(field, path string) (string, error) {
	data, err := readLimited(field, path, maxAuthHeaderFile, "; it must hold one header value")
	return string(data), err
}

// maxCertFile bounds a certPath: a bundle of a few CAs is a few kilobytes.
const maxCertFile = 1 << 20

// readLimited reads the file at path, refusing more than limit bytes; errors start
// with field, and tooLarge ends the one for a file over the limit.
func readLimited(field, path string, limit int, tooLarge string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", field, path, err)
	}
	if len(data) > limit {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes%s", field, path, limit, tooLarge)
	}
	return data, nil
}

// RootCAs returns the system roots plus the certificates of certPath (PEM), or nil
// (the system roots) when certPath is empty.
func (c SourceConfig) RootCAs() (*x509.CertPool, error) {
	if c.CertPath == "" {
		return nil, nil
	}
	_, pool, err := ReadCertPath(c.CertPath)
	return pool, err
}

// ReadCertPath reads a certPath (PEM, at most 1 MiB) and returns its content and a
// pool of the system roots plus its certificates; errors start with "certPath:".
func ReadCertPath(path string) ([]byte, *x509.CertPool, error) {
	data, err := readLimited("certPath", path, maxCertFile, "")
	if err != nil {
		return nil, nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(data) {
		return nil, nil, fmt.Errorf("certPath: %s holds no PEM certificate", path)
	}
	return data, pool, nil
}

// IsLoopbackHost reports whether host (a host name or IP, without port) is this
// machine: "localhost" (and names under it) or a loopback address.
func IsLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// Combine returns the --uri sources, then the --sources entries: later sources have
// higher priority. Two sources with the same name are rejected (flags are tagged by
// source name, so they would be indistinguishable).
func Combine(uris []string, sources []SourceConfig) ([]SourceConfig, error) {
	var out []SourceConfig
	for _, u := range uris {
		c, err := ParseURI(u)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	out = append(out, sources...)
	seen := map[string]bool{}
	for _, s := range out {
		if seen[s.Name()] {
			return nil, fmt.Errorf("source %q is configured twice", s.Name())
		}
		seen[s.Name()] = true
	}
	return out, nil
}
