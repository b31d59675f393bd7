package webhook

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// flagd is a Flagd manifest in namespace team-a with the given spec (YAML,
// indented by 2).
func flagd(spec string) string {
	return "apiVersion: core.openfeature.dev/v1beta1\nkind: Flagd\nmetadata:\n  name: flagd\n  namespace: team-a\nspec:\n" + spec
}

func TestValidateFlagd(t *testing.T) {
	tests := []struct {
		name, spec string
		want       Decision
	}{
		{name: "minimal", spec: `
  featureFlagSource: src`, want: allowed()},
		{name: "everything valid", spec: `
  featureFlagSource: src
  replicas: 0
  serviceType: LoadBalancer
  serviceAccountName: flagd
  ingress:
    enabled: true
    hosts: ["", flags.example.com, "*.example.com"]
    tls: [{hosts: [flags.example.com], secretName: flags-tls}]
    ingressClassName: nginx
    pathType: ImplementationSpecific
    flagdPath: /flagd(/|$)(.*)
    ofrepPath: /ofrep(/|$)(.*)
    syncPath: /sync(/|$)(.*)
    annotations: {nginx.ingress.kubernetes.io/rewrite-target: /$2}
  gatewayApiRoutes:
    enabled: true
    hosts: [flags.example.com, "*.example.com"]
    parentRefs: [{name: gw, sectionName: https, port: 443}]`, want: allowed()},
		{name: "featureFlagSource", spec: `
  featureFlagSource: team-b/src`,
			want: denied(nil, `spec.featureFlagSource: "team-b/src": a Flagd uses a FeatureFlagSource of its own namespace; give the name alone, without namespace/`)},
		{name: "featureFlagSource missing", spec: `
  replicas: 1`, want: denied(nil, "spec.featureFlagSource: is required: the name of a FeatureFlagSource in this namespace")},
		{name: "names and types", spec: `
  featureFlagSource: My_Source
  replicas: -1
  serviceType: ExternalName
  serviceAccountName: "flagd sa"`,
			want: denied(nil,
				`spec.featureFlagSource: "My_Source": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				"spec.replicas: must not be negative, got -1",
				"spec.serviceType: an ExternalName Service cannot route to the flagd pods: use ClusterIP, NodePort or LoadBalancer",
				`spec.serviceAccountName: "flagd sa": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`)},
		{name: "ingress", spec: `
  featureFlagSource: src
  ingress:
    enabled: true
    hosts: [Flags.Example.com, 10.0.0.1, flags.example.com, flags.example.com]
    pathType: Prefix
    flagdPath: flagd
    ofrepPath: /ofrep//x
    syncPath: /ofrep//x
    tls: [{hosts: ["*"], secretName: Bad_Secret}]
    ingressClassName: "Nginx Class"
    annotations: {"bad key!": x}`,
			want: denied([]string{"spec.ingress.hosts[3]: repeats spec.ingress.hosts[2]"},
				`spec.ingress.hosts[0]: "Flags.Example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.ingress.hosts[1]: "10.0.0.1": must be a DNS name, not an IP address (Ingress)`,
				`spec.ingress.flagdPath: "flagd": must start with /`,
				`spec.ingress.ofrepPath: "/ofrep//x": a Prefix path must not contain "//" (the Ingress would be refused; pathType ImplementationSpecific allows it)`,
				`spec.ingress.syncPath: "/ofrep//x": a Prefix path must not contain "//" (the Ingress would be refused; pathType ImplementationSpecific allows it)`,
				`spec.ingress.syncPath: "/ofrep//x" is also spec.ingress.ofrepPath: each service needs its own path`,
				`spec.ingress.tls[0].hosts[0]: "*": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.ingress.tls[0].secretName: "Bad_Secret": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.ingress.ingressClassName: "Nginx Class": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.ingress.annotations["bad key!"]: not a valid annotation key: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`)},
		{name: "ingress without hosts, a path equal to a default, an unknown pathType", spec: `
  featureFlagSource: src
  ingress:
    pathType: Regex
    syncPath: /ofrep`,
			want: denied(nil,
				`spec.ingress.hosts: is required: one rule per host ("" for any host)`,
				`spec.ingress.pathType: must be Exact, Prefix or ImplementationSpecific, got "Regex"`,
				`spec.ingress.syncPath: "/ofrep" is also spec.ingress.ofrepPath: each service needs its own path`)},
		{name: "gateway routes", spec: `
  featureFlagSource: src
  gatewayApiRoutes:
    hosts: ["", 10.0.0.1, "Flags.example.com", "flags.example.com:443"]
    parentRefs:
      - {namespace: gateway-system, port: 0}
      - {name: gw, namespace: Gateway_System, kind: "9Gateway", sectionName: "Https Listener"}
      - {name: shared, namespace: gateway-system}`,
			want: denied([]string{
				`spec.gatewayApiRoutes.parentRefs[2].namespace: the parent gateway-system/shared is in another namespace: it accepts this HTTPRoute only if its listeners' allowedRoutes admit routes from namespace "team-a" (the Gateway API default admits the Gateway's own namespace only)`,
			},
				"spec.gatewayApiRoutes.hosts[0]: must not be empty (leave hosts out to match every host)",
				`spec.gatewayApiRoutes.hosts[1]: "10.0.0.1": must be a DNS name, not an IP address (Gateway API)`,
				`spec.gatewayApiRoutes.hosts[2]: "Flags.example.com" is not a Gateway API hostname: a lowercase DNS name, optionally starting with *.`,
				`spec.gatewayApiRoutes.hosts[3]: "flags.example.com:443" is not a Gateway API hostname: a lowercase DNS name, optionally starting with *.`,
				"spec.gatewayApiRoutes.parentRefs[0].name: is required",
				"spec.gatewayApiRoutes.parentRefs[0].port: must be from 1 to 65535, got 0",
				`spec.gatewayApiRoutes.parentRefs[1].kind: "9Gateway" is not a kind name`,
				`spec.gatewayApiRoutes.parentRefs[1].sectionName: "Https Listener": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
				`spec.gatewayApiRoutes.parentRefs[1].namespace: "Gateway_System": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`)},
		{name: "gateway routes without parents", spec: `
  featureFlagSource: src
  gatewayApiRoutes: {enabled: true}`,
			want: denied(nil, "spec.gatewayApiRoutes.parentRefs: is required: the Gateways the HTTPRoute attaches to")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := run(ValidateFlagd(), create("Flagd", object(t, flagd(tc.spec))))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
