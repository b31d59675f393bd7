package sidecar

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
)

// TestPortsOutOfRange: a FeatureFlagSource that bypassed the schema (an OFO CRD)
// with a port a TCP port cannot be is refused naming the field, never wrapped
// around into another port.
func TestPortsOutOfRange(t *testing.T) {
	spec := &v1beta1.FeatureFlagSourceSpec{Port: 70000, ManagementPort: 8014, OfrepPort: -1}
	_, err := sidecarContract(spec, nil, false)
	want := "port 70000: want a TCP port, 1-65535\nofrepPort -1: want a TCP port, 1-65535"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	spec.Port, spec.OfrepPort = 8013, 8016
	c, err := sidecarContract(spec, nil, false)
	if err != nil || c.Port != 8013 || c.ManagementPort != 8014 || c.OfrepPort != 8016 {
		t.Errorf("valid ports: %+v, %v", c, err)
	}
}

// TestArgsNotExpandedByKubelet: the kubelet expands $(VAR) in a container's args
// with the container's environment variables (and turns $$ into $). A
// FeatureFlagSource value that lands in the args, such as a context value
// "$(FLAGD_DB_PASSWORD)" next to an envVars entry reading a Secret, would make
// flagd start with the Secret's value in its command line and serve it to every
// caller as a static context value. The rendered args escape every $, so that what
// flagd receives after the kubelet's expansion is exactly what was validated.
func TestArgsNotExpandedByKubelet(t *testing.T) {
	spec := &v1beta1.FeatureFlagSourceSpec{Port: 8013, ManagementPort: 8014, OfrepPort: 8016, EnvVarPrefix: "FLAGD",
		ContextValues: map[string]string{"leak": "$(FLAGD_DB_PASSWORD)", "price": "$$5 $(UNSET) $"},
		SocketPath:    "/tmp/$(DB_PASSWORD).sock",
		EnvVars:       []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "s3cr3t"}}}
	r := &Renderer{Config: Config{Image: "flagpole:test"}}
	c, err := r.container(Workload{Namespace: "ns"}, spec, &sidecarPlan{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = kubeletExpand(a, env)
	}
	cfg, err := startconfig.Parse(args)
	if err != nil {
		t.Fatalf("the expanded args %q: %v", args, err)
	}
	if diff := cmp.Diff(spec.ContextValues, cfg.ContextValue); diff != "" {
		t.Errorf("context values after the kubelet's expansion (-want +got):\n%s", diff)
	}
	// The provider settings the app containers get are literal too (an app
	// container's own DB_PASSWORD must not become its socket path).
	for _, e := range appEnv(spec) {
		if e.Name == "FLAGD_SOCKET_PATH" && kubeletExpand(e.Value, map[string]string{"DB_PASSWORD": "s3cr3t"}) != spec.SocketPath {
			t.Errorf("app env %s=%q expands to something else than %q", e.Name, e.Value, spec.SocketPath)
		}
	}
}

// kubeletExpand is Kubernetes' expansion of container args and env values
// (k8s.io/kubernetes/third_party/forked/golang/expansion): $$ is $, $(NAME) is the
// variable's value when it is defined and stays as written otherwise.
func kubeletExpand(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := env[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// TestInProcessEnvNotExpandedByKubelet: in-process mode writes an
// InProcessConfiguration's values into the app containers, whose environment
// holds the app's own secrets. With the kubelet's $(VAR) expansion, a
// configuration (possibly another namespace's, opted in with
// allowed-namespaces) naming "$(DB_PASSWORD)" as its selector or in an envVars
// value, next to a host of its author's, would make the app's flagd provider
// send the app's secret there. Every value is written literally.
func TestInProcessEnvNotExpandedByKubelet(t *testing.T) {
	spec := &v1beta1.InProcessConfigurationSpec{Host: "flags.$(DB_PASSWORD).example", Selector: "$(DB_PASSWORD)", SocketPath: "/tmp/$(DB_PASSWORD)",
		OfflineFlagSourcePath: "/x/$(DB_PASSWORD)", Cache: "$(DB_PASSWORD)", EnvVarPrefix: "FLAGD",
		EnvVars: []corev1.EnvVar{{Name: "EXTRA", Value: "$(DB_PASSWORD)"}, {Name: "FROM_SECRET", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "own"}, Key: "k"}}}}}
	app := map[string]string{"DB_PASSWORD": "s3cr3t"}
	env := InProcessEnv(InProcessDefaults{EnvVarPrefix: "FLAGD"}, []*v1beta1.InProcessConfigurationSpec{spec})
	if len(env) < 8 {
		t.Fatalf("env %v", env)
	}
	for _, e := range env {
		if got := kubeletExpand(e.Value, app); strings.Contains(got, "s3cr3t") {
			t.Errorf("%s=%q expands to %q in the app container", e.Name, e.Value, got)
		}
		if e.Name == "FLAGD_FROM_SECRET" && e.ValueFrom == nil {
			t.Errorf("%s lost its valueFrom", e.Name)
		}
	}
}
