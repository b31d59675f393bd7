package sync

import (
	"encoding/json"
	"fmt"
	"regexp"
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
}

// Name is the source string flags are tagged with (flagd-compat §4.1): the path for
// file sources, ns/name for kubernetes, host:port for grpc, the URI otherwise.
func (c SourceConfig) Name() string { return c.URI }

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

// Validate checks source entries: uri and a known provider are required, and the
// interval is at most a day.
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
	}
	return nil
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
