package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValidateInProcessConfiguration(t *testing.T) {
	ipc := func(spec string) string {
		return "apiVersion: core.openfeature.dev/v1beta1\nkind: InProcessConfiguration\nmetadata:\n  name: ipc\n  namespace: team-a\n" + spec
	}
	tests := []struct {
		name, manifest string
		want           Decision
	}{
		{name: "no spec: every default", manifest: ipc(""), want: allowed()},
		{name: "everything valid", manifest: ipc(`spec:
  port: 8015
  host: flagd.team-a.svc.cluster.local
  tls: true
  socketPath: /var/run/flagd-sync.sock
  offlineFlagSourcePath: /etc/flags/flags.json
  selector: flagSetId=web
  cache: disabled
  cacheMaxSize: 10
  envVars: [{name: DEADLINE_MS, value: "500"}]`), want: allowed()},
		{name: "hosts", manifest: ipc(`spec:
  host: "::1"`), want: allowed()},
		{name: "a host with a port", manifest: ipc(`spec:
  host: "flagd:8015"`), want: denied(nil, `spec.host: "flagd:8015": give the host alone, without a port`)},
		{name: "not a host", manifest: ipc(`spec:
  host: "flagd_sync"`),
			want: denied(nil, `spec.host: "flagd_sync" is neither a DNS name nor an IP address: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`)},
		{name: "upper-case host names are host names", manifest: ipc(`spec:
  host: Flagd.Example.COM.`), want: allowed()},
		{name: "ports, cache, selector", manifest: ipc(`spec:
  port: 65536
  cache: fifo
  cacheMaxSize: -5
  selector: "flagset=web"`),
			want: denied(nil,
				"spec.port: must be from 1 to 65535, got 65536",
				`spec.cache: must be lru or disabled, got "fifo"`,
				"spec.cacheMaxSize: must be at least 1, got -5 (cache: disabled turns the cache off)",
				`spec.selector: flagd's sync service refuses it: invalid selector key "flagset", valid keys: "flagSetId", "source"`)},
		{name: "a bare selector selects a source (OFO's e2e)", manifest: ipc(`spec:
  selector: core.openfeature.dev/default/end-to-end-test`), want: allowed()},
		{name: "OFO's e2e: relative offline path, custom prefix", manifest: ipc(`spec:
  tls: true
  offlineFlagSourcePath: my-path
  cacheMaxSize: 11
  envVarPrefix: my-prefix
  envVars: [{name: name1, value: val1}, {name: name2, value: val2}]`),
			want: allowed(
				`spec.offlineFlagSourcePath: "my-path" is relative: the provider resolves it against the application's working directory; use an absolute path`,
				`spec.envVarPrefix: OpenFeature's flagd providers read FLAGD_* variables only: with prefix "my-prefix", applications must pass the my-prefix_* values to their provider themselves`)},
		// "9LIVES" is valid: the variable is FLAGD_9LIVES.
		{name: "environment variables", manifest: ipc(`spec:
  envVars:
    - {name: HOST, value: other}
    - {name: "A=B", value: x}
    - {name: "9LIVES", value: x}
    - {name: API_KEY, value: abc}
    - {name: AWS_SECRET_ACCESS_KEY, valueFrom: {secretKeyRef: {name: aws, key: secret}}}`),
			want: denied([]string{
				"spec.envVars[0].name: the operator sets FLAGD_HOST itself (from spec.host)",
				"spec.envVars[3].value: API_KEY looks like a credential stored in plain text: anyone who can read this InProcessConfiguration or the pods can read it; prefer a Secret (valueFrom.secretKeyRef)",
			}, `spec.envVars[1].name: "A=B" (set as "FLAGD_A=B") is not a valid environment variable name: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(ValidateInProcessConfiguration(), create("InProcessConfiguration", object(t, tc.manifest)))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
