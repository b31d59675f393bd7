package webhook

import (
	"strings"
	"testing"

	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/google/go-cmp/cmp"
)

// ffs is a FeatureFlagSource manifest in namespace team-a with the given spec
// (YAML, indented by 2).
func ffs(spec string) string {
	return "apiVersion: core.openfeature.dev/v1beta1\nkind: FeatureFlagSource\nmetadata:\n  name: src\n  namespace: team-a\nspec:\n" + spec
}

const (
	warnBearer    = "spec.sources[0].httpSyncBearerToken: the token is stored in plain text: anyone who can read this FeatureFlagSource can read it; prefer a Secret"
	warnProxyArgs = "spec.syncProviderArgs: flagd removed --sync-provider-args (flagd #1075) and flagpole's sidecar has no such option: these are not passed on"
)

func TestValidateFeatureFlagSource(t *testing.T) {
	tests := []struct {
		name string
		spec string
		opts ValidationOptions
		want Decision
	}{
		{name: "one kubernetes source", spec: `
  sources: [{source: flags, provider: kubernetes}]`, want: allowed()},
		{name: "every provider", spec: `
  sources:
    - {source: flags, provider: kubernetes}
    - {source: team-a/other, provider: file}
    - {source: shared, provider: flagd-proxy}
    - {source: "https://flags.example.com/f.json", provider: http, interval: 30}
    - {source: "http://localhost:8080/f.json", provider: http}
    - {source: "flagd.platform.svc:8015", provider: grpc, tls: true, certPath: /etc/ca.crt, providerID: me, selector: flagSetId=web}
    - {source: "grpcs://flagd.platform.svc:8016", provider: grpc, certPath: /etc/ca.crt}
    - {source: "unix:///var/run/flagd.sock", provider: grpc}`, want: allowed()},

		// Providers.
		{name: "cloud blob providers are not implemented", spec: `
  sources:
    - {source: "gs://bucket/f.json", provider: gcs}
    - {source: "s3://bucket/f.json", provider: s3}
    - {source: "azblob://c/f.json", provider: azblob}`,
			want: denied(nil,
				`spec.sources[0].provider: provider "gcs": flagpole's sidecar does not implement the cloud blob providers (gcs, azblob, s3); serve the document over https (an http source) or put it in a FeatureFlag (kubernetes, file or flagd-proxy)`,
				`spec.sources[1].provider: provider "s3": flagpole's sidecar does not implement the cloud blob providers (gcs, azblob, s3); serve the document over https (an http source) or put it in a FeatureFlag (kubernetes, file or flagd-proxy)`,
				`spec.sources[2].provider: provider "azblob": flagpole's sidecar does not implement the cloud blob providers (gcs, azblob, s3); serve the document over https (an http source) or put it in a FeatureFlag (kubernetes, file or flagd-proxy)`)},
		{name: "unknown provider, and as default", spec: `
  defaultSyncProvider: filepath
  sources: [{source: flags, provider: Kubernetes}, {source: other}]`,
			want: denied(nil,
				`spec.defaultSyncProvider: unknown provider "filepath": one of kubernetes, file, http, grpc, flagd-proxy`,
				`spec.sources[0].provider: unknown provider "Kubernetes": one of kubernetes, file, http, grpc, flagd-proxy`)},
		{name: "no provider anywhere", spec: `
  sources: [{source: flags}]`,
			want: denied(nil, "spec.sources[0].provider: is required: this FeatureFlagSource has no defaultSyncProvider and the operator no default sync provider")},
		{name: "the operator's default provider", spec: `
  sources: [{source: flags}]`, opts: ValidationOptions{DefaultSyncProvider: "kubernetes"}, want: allowed()},
		{name: "defaultSyncProvider wins over the operator's", spec: `
  defaultSyncProvider: http
  sources: [{source: flags}]`, opts: ValidationOptions{DefaultSyncProvider: "kubernetes"},
			want: denied(nil, `spec.sources[0].source: an http source must be an absolute http:// or https:// URL, not "flags"`)},
		{name: "an operator default flagpole cannot run", spec: `
  sources: [{source: "gs://b/f.json"}]`, opts: ValidationOptions{DefaultSyncProvider: "gcs"},
			want: denied(nil, `spec.sources[0].provider: no provider, and the operator's default: provider "gcs": flagpole's sidecar does not implement the cloud blob providers (gcs, azblob, s3); serve the document over https (an http source) or put it in a FeatureFlag (kubernetes, file or flagd-proxy)`)},

		// Sources per provider.
		{name: "FeatureFlag names", spec: `
  sources:
    - {source: "team-b/flags/extra", provider: kubernetes}
    - {source: "My_Flags", provider: kubernetes}
    - {source: "core.openfeature.dev/team-a/flags", provider: kubernetes}
    - {source: "https://flags.example.com/f.json", provider: flagd-proxy}
    - {source: "", provider: kubernetes}`,
			want: denied(nil,
				`spec.sources[0].source: a kubernetes source is a FeatureFlag name, [namespace/]name: "team-b/flags/extra": want name or namespace/name`,
				`spec.sources[1].source: a kubernetes source is a FeatureFlag name, [namespace/]name: "My_Flags": name "My_Flags": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.sources[2].source: a kubernetes source is a FeatureFlag name, [namespace/]name: drop the core.openfeature.dev/ prefix of "core.openfeature.dev/team-a/flags"`,
				`spec.sources[3].source: a flagd-proxy source is a FeatureFlag name, [namespace/]name, not a URL ("https://flags.example.com/f.json"): use provider http or grpc for a URL`,
				`spec.sources[4].source: is required`)},
		{name: "file sources are names, not paths", spec: `
  sources:
    - {source: /etc/passwd, provider: file}
    - {source: "../../etc/flags", provider: file}
    - {source: "file:flags.json", provider: file}
    - {source: 'flags\..\x', provider: file}`,
			want: denied(nil,
				`spec.sources[0].source: a file source is a FeatureFlag name, [namespace/]name, not a path ("/etc/passwd"): the operator writes that FeatureFlag into a ConfigMap and mounts it in the sidecar`,
				`spec.sources[1].source: a file source is a FeatureFlag name, [namespace/]name, not a path ("../../etc/flags"): the operator writes that FeatureFlag into a ConfigMap and mounts it in the sidecar`,
				`spec.sources[2].source: a file source is a FeatureFlag name, [namespace/]name, not a path ("file:flags.json"): the operator writes that FeatureFlag into a ConfigMap and mounts it in the sidecar`,
				`spec.sources[3].source: a file source is a FeatureFlag name, [namespace/]name, not a path ("flags\\..\\x"): the operator writes that FeatureFlag into a ConfigMap and mounts it in the sidecar`)},
		{name: "cross-namespace references warn unless allowed", spec: `
  sources:
    - {source: team-b/flags, provider: kubernetes}
    - {source: team-a/flags, provider: file}
    - {source: platform/shared, provider: flagd-proxy}`,
			want: allowed(
				`spec.sources[0].source: FeatureFlag team-b/flags is in another namespace than this FeatureFlagSource: the pod webhook refuses cross-namespace references unless namespace "team-b" opts in or the operator runs with --cross-namespace=allow`,
				`spec.sources[2].source: FeatureFlag platform/shared is in another namespace than this FeatureFlagSource: the pod webhook refuses cross-namespace references unless namespace "platform" opts in or the operator runs with --cross-namespace=allow`)},
		{name: "cross-namespace references with --cross-namespace=allow", spec: `
  sources: [{source: team-b/flags, provider: kubernetes}]`, opts: ValidationOptions{CrossNamespace: sidecar.CrossNamespaceAllow}, want: allowed()},
		{name: "http URLs", spec: `
  sources:
    - {source: "flags.example.com/f.json", provider: http}
    - {source: "ftp://flags.example.com/f.json", provider: http}
    - {source: "https://user:secret@flags.example.com/f.json?token=abc", provider: http}
    - {source: "http://flags.example.com/f.json", provider: http}
    - {source: "https://flags.example.com/f.json", provider: http, interval: 86401}
    - {source: "https://flags.example.com/g.json", provider: http, interval: -1}`,
			want: denied([]string{
				`spec.sources[2].source: the URL holds credentials (user info) in plain text: anyone who can read this FeatureFlagSource or the pods can read them; prefer a Secret`,
				`spec.sources[3].source: plain http:// to flags.example.com: flags (and any token) travel unencrypted; the injected sidecar allows it (allowInsecure, as flagd and OFO do), but use https://`,
			},
				`spec.sources[0].source: an http source must be an absolute http:// or https:// URL, not "flags.example.com/f.json"`,
				`spec.sources[1].source: an http source must be an absolute http:// or https:// URL, not "ftp://flags.example.com/f.json"`,
				`spec.sources[4].interval: the sidecar would refuse it: 86401 seconds is more than a day (86400)`,
				`spec.sources[5].interval: must not be negative, got -1`)},
		{name: "bearer tokens", spec: `
  sources:
    - {source: "https://flags.example.com/a.json", provider: http, httpSyncBearerToken: s3cr3t-t0ken}
    - {source: "https://flags.example.com/b.json", provider: http, httpSyncBearerToken: "Bearer s3cr3t"}
    - {source: "https://flags.example.com/c.json", provider: http, httpSyncBearerToken: "s3cr3t\r\nX-Injected: 1"}`,
			want: denied([]string{warnBearer},
				`spec.sources[1].httpSyncBearerToken: give the token alone, without "Bearer ": the sidecar sends "Authorization: Bearer <token>"`,
				`spec.sources[2].httpSyncBearerToken: contains white space or control characters: it cannot be sent in an Authorization header`)},
		{name: "grpc targets and TLS", spec: `
  sources:
    - {source: flagd, provider: grpc}
    - {source: "envoy://localhost:9211/flagd", provider: grpc}
    - {source: "flagd:8015", provider: grpc, certPath: /etc/ca.crt}
    - {source: "flagd:8016", provider: grpc, selector: "team=web"}`,
			want: denied(nil,
				`spec.sources[0].source: the sidecar would refuse it: want host:port, got "flagd"`,
				`spec.sources[1].source: the sidecar would refuse it: envoy targets are not supported by flagpole; give the sync server as grpc(s)://host:port or dns:///host:port`,
				`spec.sources[2].certPath: needs TLS: set tls: true (or use a grpcs:// source); the sidecar, as flagd, refuses a CA file for a plaintext connection`,
				`spec.sources[3].selector: flagd's sync service refuses it: invalid selector key "team", valid keys: "flagSetId", "source"`)},
		{name: "fields the provider ignores", spec: `
  sources:
    - {source: flags, provider: kubernetes, tls: true, certPath: /ca, providerID: p, selector: s, interval: 5, httpSyncBearerToken: t}
    - {source: "https://flags.example.com/f.json", provider: http, tls: true, selector: s}
    - {source: "flagd:8015", provider: grpc, interval: 5, httpSyncBearerToken: t}`,
			want: allowed(
				"spec.sources[0].httpSyncBearerToken: only http sources use it: ignored for a kubernetes source, yet stored in plain text where anyone who can read this FeatureFlagSource can read it; remove it",
				"spec.sources[0].tls: only grpc sources use it: ignored for a kubernetes source",
				"spec.sources[0].certPath: only grpc sources use it: ignored for a kubernetes source",
				"spec.sources[0].providerID: only grpc sources use it: ignored for a kubernetes source",
				"spec.sources[0].selector: only grpc sources use it: ignored for a kubernetes source",
				"spec.sources[0].interval: only http sources use it: ignored for a kubernetes source",
				"spec.sources[1].tls: only grpc sources use it: ignored for a http source",
				"spec.sources[1].selector: only grpc sources use it: ignored for a http source",
				"spec.sources[2].httpSyncBearerToken: only http sources use it: ignored for a grpc source (nothing is sent), yet stored in plain text where anyone who can read this FeatureFlagSource can read it; remove it",
				"spec.sources[2].interval: only http sources use it: ignored for a grpc source")},
		{name: "the same source twice", spec: `
  sources:
    - {source: flags, provider: kubernetes}
    - {source: team-a/flags, provider: kubernetes}
    - {source: flags, provider: file}
    - {source: "https://flags.example.com/f.json", provider: http}
    - {source: "https://flags.example.com/f.json", provider: http, interval: 60}
    - {source: "flagd:8015", provider: grpc, selector: flagSetId=a}
    - {source: "flagd:8015", provider: grpc, selector: flagSetId=a}
    - {source: "flagd:8015", provider: grpc, selector: flagSetId=b}`,
			want: denied(nil,
				"spec.sources[1].source: is the same source as spec.sources[0]: the sidecar tells sources apart by their name, so it refuses one given twice",
				"spec.sources[4].source: is the same source as spec.sources[3]: the sidecar tells sources apart by their name, so it refuses one given twice",
				"spec.sources[6].source: is the same source as spec.sources[5]: the sidecar tells sources apart by their name, so it refuses one given twice")},
		{name: "no sources", spec: `
  sources: []`, want: denied(nil, "spec.sources: needs at least one source")},
		{name: "sources missing", spec: `
  port: 8013`, want: denied(nil, "spec.sources: needs at least one source")},

		// Ports.
		{name: "ports out of range, clashing, on the sync port", spec: `
  port: 70000
  managementPort: 8016
  sources: [{source: flags, provider: kubernetes}]`,
			want: denied(nil,
				"spec.port: must be from 1 to 65535, got 70000",
				"spec.ofrepPort: 8016 is also spec.managementPort: each listener of the sidecar needs its own port")},
		{name: "a port clashing with a default", spec: `
  port: 8014
  sources: [{source: flags, provider: kubernetes}]`,
			want: denied(nil, "spec.managementPort: 8014 is also spec.port: each listener of the sidecar needs its own port")},
		{name: "the sync port", spec: `
  ofrepPort: 8015
  sources: [{source: flags, provider: kubernetes}]`,
			want: denied(nil, "spec.ofrepPort: 8015 is the sidecar's sync port (flagd.sync.v1, for in-process providers): each listener of the sidecar needs its own port")},
		{name: "custom ports (OFO's e2e)", spec: `
  port: 8888
  managementPort: 9999
  sources: [{source: flags, provider: kubernetes}]`, want: allowed()},

		// Environment.
		{name: "environment variables", spec: `
  envVarPrefix: MY_APP
  sources: [{source: flags, provider: kubernetes}]
  envVars:
    - {name: "1ST", value: a}
    - {name: "has space", value: a}
    - {name: "", value: a}
    - {name: OK, value: a}
    - {name: OK, value: b}
    - {name: PORT, value: "9000"}
    - {name: GITHUB_TOKEN, value: ghp_x}
    - {name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}
    - {name: AWS_REGION, value: eu-west-1}
    - {name: BOTH, value: a, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: NONE, valueFrom: {}}
    - {name: TWO, valueFrom: {fieldRef: {fieldPath: metadata.name}, secretKeyRef: {name: s, key: k}}}
    - {name: NOKEY, valueFrom: {secretKeyRef: {name: s}}}`,
			want: denied([]string{
				`spec.envVarPrefix: OpenFeature's flagd providers read FLAGD_* variables only: with prefix "MY_APP", applications must pass the MY_APP_* values to their provider themselves`,
				"spec.envVars[4].name: MY_APP_OK is also set by spec.envVars[3]: the last one wins",
				"spec.envVars[5].name: the operator sets MY_APP_PORT itself (from spec.port)",
				"spec.envVars[6].value: GITHUB_TOKEN looks like a credential stored in plain text: anyone who can read this FeatureFlagSource or the pods can read it; prefer a Secret (valueFrom.secretKeyRef)",
				"spec.envVars[9]: value and valueFrom are both set: value is used",
			},
				`spec.envVars[1].name: "has space" (set as "MY_APP_has space") is not a valid environment variable name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`,
				"spec.envVars[2].name: is required",
				"spec.envVars[10].valueFrom: must set exactly one of configMapKeyRef, fieldRef, fileKeyRef, resourceFieldRef and secretKeyRef, got 0: the pod would be refused",
				"spec.envVars[11].valueFrom: must set exactly one of configMapKeyRef, fieldRef, fileKeyRef, resourceFieldRef and secretKeyRef, got 2: the pod would be refused",
				"spec.envVars[12].valueFrom.secretKeyRef.key: is required")},
		{name: "an invalid prefix", spec: `
  envVarPrefix: "MY PREFIX"
  sources: [{source: flags, provider: kubernetes}]`,
			want: denied(nil, `spec.envVarPrefix: "MY PREFIX" is not a valid environment variable name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`)},

		// Command line.
		{name: "context values and header mappings a command line can carry", spec: `
  sources: [{source: flags, provider: kubernetes}]
  contextValues: {region: "eu-west-1", "a=b": c, list: 'x\,y', "": empty, "with,comma": fine}
  headerToContextMappings: {X-Tenant: tenant, "Bad Header": k, X-Empty: "", X-Slash: 'a\,b'}`,
			want: denied(nil,
				`spec.contextValues[""]: an empty key cannot be passed to the sidecar (--context-value key=value)`,
				`spec.contextValues.a=b: a key with "=" cannot be passed to the sidecar (--context-value key=value)`,
				`spec.contextValues.list: a backslash before a comma cannot be passed to the sidecar (--context-value splits its values on commas)`,
				`spec.headerToContextMappings["Bad Header"]: "Bad Header" is not a valid HTTP header name`,
				`spec.headerToContextMappings.X-Empty: the evaluation context key is empty`,
				`spec.headerToContextMappings.X-Slash: a backslash before a comma cannot be passed to the sidecar (--context-from-header splits its values on commas)`)},
		{name: "CORS origins", spec: `
  sources: [{source: flags, provider: kubernetes}]
  cors: ["https://shop.example.com", "https://*.example.com", "*", "", "https://shop.example.com/", "shop.example.com", "https://*.*.example.com", 'https://a\,b']`,
			want: denied([]string{
				"spec.cors[2]: allows every origin: any web page a user's browser opens may read flag values from the sidecar",
				"spec.cors[3]: empty: ignored",
				`spec.cors[4]: "https://shop.example.com/" is not an origin (scheme://host[:port], no path): it never matches a browser's Origin header`,
				`spec.cors[5]: "shop.example.com" is not an origin (scheme://host[:port], no path): it never matches a browser's Origin header`,
				`spec.cors[6]: "https://*.*.example.com": only the first * is a wildcard, the others must match literally, so it never matches`,
			},
				`spec.cors[7]: a backslash before a comma cannot be passed to the sidecar (--cors-origin splits its values on commas)`)},
		{name: "otelCollectorUri", spec: `
  sources: [{source: flags, provider: kubernetes}]
  otelCollectorUri: "https://user:pw@collector:4317"`,
			want: denied(nil, "spec.otelCollectorUri: credentials in the URI are not supported (they would be readable in the pod spec)")},
		{name: "otelCollectorUri forms", spec: `
  sources: [{source: flags, provider: kubernetes}]
  otelCollectorUri: "collector"`,
			want: denied(nil, `spec.otelCollectorUri: "collector": want host:port, http://host:port or https://host:port`)},
		{name: "otelCollectorUri with a path", spec: `
  sources: [{source: flags, provider: kubernetes}]
  otelCollectorUri: "http://collector:4318/v1/traces?key=abc"`,
			want: denied(nil, `spec.otelCollectorUri: "http://collector:4318/v1/traces?redacted": OTLP/gRPC has no path, query or fragment: want http://host:port`)},

		// The rest.
		{name: "syncProviderArgs, evaluator", spec: `
  evaluator: yaml
  syncProviderArgs: [key=value]
  sources: [{source: flags, provider: kubernetes}]`,
			want: allowed(
				`spec.evaluator: "yaml" is not an evaluator: json (JsonLogic) is the only one; the value only reaches FLAGD_EVALUATOR, which nothing reads`,
				warnProxyArgs)},
		{name: "logFormat, socketPath, resources", spec: `
  logFormat: text
  socketPath: "/tmp/` + strings.Repeat("s", 110) + `"
  sources: [{source: flags, provider: kubernetes}]
  resources:
    requests: {cpu: 500m, memory: -1Mi}
    limits: {cpu: 200m}`,
			want: denied(nil,
				`spec.logFormat: must be json or console, got "text"`,
				"spec.socketPath: must be a unix socket path: at most 107 bytes, no NUL",
				"spec.resources.requests.memory: must not be negative, got -1Mi",
				"spec.resources.requests.cpu: 500m is more than the limit 200m: the pod would be refused")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(ValidateFeatureFlagSource(tc.opts), create("FeatureFlagSource", object(t, ffs(tc.spec))))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestCredentialsNeverEchoed: answers name the field holding a credential, never the
// credential: bearer tokens in every bad form, user info and queries in URLs, OTel
// collector URIs with credentials.
func TestCredentialsNeverEchoed(t *testing.T) {
	spec := `
  otelCollectorUri: "https://otel:Sup3rS3cret@collector:4317"
  sources:
    - {source: flags, provider: kubernetes, httpSyncBearerToken: Sup3rS3cret}
    - {source: "flagd:8015", provider: grpc, httpSyncBearerToken: Sup3rS3cret}
    - {source: "https://flags.example.com/a.json", provider: http, httpSyncBearerToken: Sup3rS3cret}
    - {source: "https://flags.example.com/b.json", provider: http, httpSyncBearerToken: "Bearer Sup3rS3cret"}
    - {source: "https://flags.example.com/c.json", provider: http, httpSyncBearerToken: "Sup3rS3cret\n"}
    - {source: "http://u:Sup3rS3cret@flags.example.com/d.json?token=Sup3rS3cret", provider: http, httpSyncBearerToken: Sup3rS3cret}
    - {source: "flags.example.com/e.json?token=Sup3rS3cret", provider: http}
    - {source: "https://u:Sup3rS3cret@flags.example.com/e.json", provider: kubernetes}
    - {source: "https://flags.example.com/f.json?token=Sup3rS3cret", provider: http, interval: 100000}
    - {source: "u:Sup3rS3cret@flagd:8015", provider: grpc}
    - {source: "u:Sup3rS3cret@flags/x", provider: file}
  cors: ["https://u:Sup3rS3cret@shop.example.com", "https://*.*.example.com?Sup3rS3cret"]`
	d := run(ValidateFeatureFlagSource(ValidationOptions{}), create("FeatureFlagSource", object(t, ffs(spec))))
	if d.Allowed || strings.Count(d.Message, "\n") < 4 || len(d.Warnings) < 4 {
		t.Fatalf("expected problems and warnings about every source: %+v", d)
	}
	for _, line := range append(strings.Split(d.Message, "\n"), d.Warnings...) {
		if strings.Contains(line, "Sup3rS3cret") {
			t.Errorf("the answer echoes a credential: %s", line)
		}
	}
}
