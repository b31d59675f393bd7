package telemetry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// endpoint is where the OTLP/gRPC exporters connect: a host:port target, the
// scheme given ("" for host:port, "http" or "https") and whether the flags ask for
// TLS (https://, or TLS files).
type endpoint struct {
	target string
	scheme string
	tls    bool
}

// parseEndpoint reads --otel-collector-uri: "host:port" (TLS when tlsFiles, that is
// when --otel-ca-path or --otel-cert-path is given; plaintext otherwise),
// "http://host:port" (plaintext) or "https://host:port" (TLS). The port is
// required: OTLP/gRPC has no port to default to that every collector uses.
func parseEndpoint(uri string, tlsFiles bool) (endpoint, error) {
	if uri == "" {
		return endpoint{}, errors.New("--otel-collector-uri is empty")
	}
	if !strings.Contains(uri, "://") {
		host, port, err := net.SplitHostPort(uri)
		if err != nil || host == "" {
			return endpoint{}, fmt.Errorf("--otel-collector-uri %q: want host:port, http://host:port or https://host:port", uri)
		}
		if err := checkPort(uri, port); err != nil {
			return endpoint{}, err
		}
		return endpoint{target: net.JoinHostPort(host, port), tls: tlsFiles}, nil
	}
	u, err := url.Parse(uri)
	if err != nil {
		return endpoint{}, fmt.Errorf("--otel-collector-uri: not a URL (want host:port, http://host:port or https://host:port): %w", err)
	}
	if u.User != nil {
		// never echo the URI: it holds credentials
		return endpoint{}, errors.New("--otel-collector-uri: credentials in the URI are not supported (use OTEL_EXPORTER_OTLP_HEADERS)")
	}
	var useTLS bool
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "http":
		if tlsFiles {
			return endpoint{}, fmt.Errorf("--otel-collector-uri %q is plaintext (http://), but --otel-ca-path or --otel-cert-path is set: use https:// or host:port", uri)
		}
	case "https":
		useTLS = true
	default:
		return endpoint{}, fmt.Errorf("--otel-collector-uri %q: scheme %q is not supported (OTLP over gRPC: host:port, http://host:port or https://host:port)", uri, u.Scheme)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("--otel-collector-uri %q: OTLP/gRPC has no path, query or fragment: want %s://host:port", uri, scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return endpoint{}, fmt.Errorf("--otel-collector-uri %q: want %s://host:port (the port is required)", uri, scheme)
	}
	if err := checkPort(uri, port); err != nil {
		return endpoint{}, err
	}
	return endpoint{target: net.JoinHostPort(host, port), scheme: scheme, tls: useTLS}, nil
}

func checkPort(uri, port string) error {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("--otel-collector-uri %q: port %q is not a number from 1 to 65535", uri, port)
	}
	return nil
}

// signals are the infixes of the OTLP exporters' variables: OTEL_EXPORTER_OTLP_X,
// OTEL_EXPORTER_OTLP_TRACES_X and OTEL_EXPORTER_OTLP_METRICS_X.
func signals() [3]string { return [3]string{"", "TRACES_", "METRICS_"} }

// envTLS reports whether an OTEL_EXPORTER_OTLP_*CERTIFICATE variable is set: the
// exporters then connect to host:port with TLS (their own environment handling).
func envTLS(getenv func(string) string) bool {
	for _, sig := range signals() {
		for _, name := range []string{"CERTIFICATE", "CLIENT_CERTIFICATE"} {
			if getenv("OTEL_EXPORTER_OTLP_"+sig+name) != "" {
				return true
			}
		}
	}
	return false
}

// checkEnvInsecure refuses OTEL_EXPORTER_OTLP_*INSECURE=true with https://: the
// exporters would otherwise connect in plaintext to a URI that says TLS.
func checkEnvInsecure(uri string, getenv func(string) string) error {
	for _, sig := range signals() {
		k := "OTEL_EXPORTER_OTLP_" + sig + "INSECURE"
		if strings.EqualFold(strings.TrimSpace(getenv(k)), "true") {
			return fmt.Errorf("--otel-collector-uri %q asks for TLS, but %s=true asks for plaintext", uri, k)
		}
	}
	return nil
}
