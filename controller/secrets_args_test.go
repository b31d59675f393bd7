package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/proxy"
)

// Marker values of the credentials a Flagd and the flagd-proxy can use: none may
// appear in a rendered container's command, args or plain env values, nor in any
// object the controllers write, except the Secret made for an http token.
const (
	markerFlagdToken    = "MARKER-flagd-token-a91e"    // spec.auth.tokenSecretRef's Secret
	markerFlagdTLSKey   = "MARKER-flagd-tls-key-06bd"  // spec.auth.tls.secretName's tls.key
	markerFlagdClientCA = "MARKER-flagd-client-ca-3f7" // spec.auth.tls.clientCASecretRef's Secret
	markerEnvSecret     = "MARKER-env-secret-d42c"     // a Secret a FeatureFlagSource envVar references
	markerHTTPToken     = "MARKER-http-token-8b55"     // a FeatureFlagSource's httpSyncBearerToken
	markerProxySAToken  = "MARKER-proxy-sa-token-1c09" // a token Secret of the proxy's ServiceAccount
)

// liveSecret puts a Secret holding data in the fixture's API server, so that a
// controller that read it would get the markers.
func liveSecret(f *fixture, ns, name string, typ corev1.SecretType, data map[string]string) {
	s := &corev1.Secret{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}, ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type: typ, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	f.api.mu.Lock()
	defer f.api.mu.Unlock()
	f.api.live["/api/v1/namespaces/"+ns+"/secrets/"+name] = s
}

// containerPlainValues are the command, args and plain env values of a
// container, labelled with where they are.
func containerPlainValues(c corev1.Container) map[string]string {
	out := map[string]string{}
	for i, s := range c.Command {
		out[fmt.Sprintf("%s.command[%d]", c.Name, i)] = s
	}
	for i, s := range c.Args {
		out[fmt.Sprintf("%s.args[%d]", c.Name, i)] = s
	}
	for _, e := range c.Env {
		out[fmt.Sprintf("%s.env[%s].value", c.Name, e.Name)] = e.Value
	}
	return out
}

// checkNoCredentials fails when a request read a Secret, when a marker is in the
// plain values of the Deployment's containers, or when a marker is in the body of
// any request other than the creation of a Secret (the only place a credential
// may be written to). It returns the bodies of the Secrets created.
func checkNoCredentials(t *testing.T, actions []action, deployment string, markers ...string) []string {
	t.Helper()
	var created []string
	var found bool
	for _, a := range actions {
		if strings.Contains(a.Path, "/secrets") {
			if a.Verb != http.MethodPost {
				t.Errorf("the controller touched a Secret: %s %s (it may create Secrets, never read them)", a.Verb, a.Path)
				continue
			}
			data, err := json.Marshal(a.Body)
			if err != nil {
				t.Fatal(err)
			}
			created = append(created, string(data))
			continue
		}
		data, err := json.Marshal(a.Body)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markers {
			if strings.Contains(string(data), m) {
				t.Errorf("credential %s written by %s %s: %s", m, a.Verb, a.Path, data)
			}
		}
		if a.Verb != http.MethodPatch || a.Path != deployment {
			continue
		}
		found = true
		var d appsv1.Deployment
		decodeInto(t, a.Body.(map[string]any), &d)
		spec := d.Spec.Template.Spec
		for _, c := range append(append([]corev1.Container(nil), spec.InitContainers...), spec.Containers...) {
			for where, v := range containerPlainValues(c) {
				for _, m := range markers {
					if strings.Contains(v, m) {
						t.Errorf("credential %s in %s: %q", m, where, v)
					}
				}
			}
		}
	}
	if !found {
		t.Fatalf("no Deployment applied at %s", deployment)
	}
	return created
}

// TestNoSecretValueInFlagdArgsOrEnv reconciles a Flagd using every credential it
// can be given — spec.auth's token Secret, TLS Secret and client CA Secret, and
// a FeatureFlagSource with an http source's bearer token and an envVar from a
// Secret — with those Secrets holding marker values on the API server. The
// controller reads no Secret; no marker is in the Deployment's command, args or
// env values, nor in anything it writes but the Secret it creates for the http
// token, which the container reads through secretKeyRef; the auth Secrets are
// mounted and named to flagd by path.
func TestNoSecretValueInFlagdArgsOrEnv(t *testing.T) {
	f := newFlagdFixture(t)
	liveSecret(f.fixture, "ns", "flagd-tokens", corev1.SecretTypeOpaque, map[string]string{"apps": markerFlagdToken + "\n"})
	liveSecret(f.fixture, "ns", "flagd-tls", corev1.SecretTypeTLS, map[string]string{"tls.crt": "cert", "tls.key": markerFlagdTLSKey})
	liveSecret(f.fixture, "ns", "clients", corev1.SecretTypeOpaque, map[string]string{"ca.pem": markerFlagdClientCA})
	liveSecret(f.fixture, "ns", "vendor", corev1.SecretTypeOpaque, map[string]string{"api-key": markerEnvSecret})
	ffs := fixtureSource()
	ffs.Spec.EnvVars = []corev1.EnvVar{{Name: "VENDOR_KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: "vendor"}, Key: "api-key"}}}}
	ffs.Spec.Sources = append(ffs.Spec.Sources,
		v1beta1.Source{Source: "https://flags.example.com/flags.json", Provider: "http", HTTPSyncBearerToken: markerHTTPToken},
		v1beta1.Source{Source: "search", Provider: "file"})
	f.seed(f.cluster.Sources, ffs)
	f.seed(f.cluster.FeatureFlags, fixtureFlag(), &v1beta1.FeatureFlag{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "search", UID: "search-uid"}})
	f.seed(f.cluster.ServiceAccounts, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "shared"}})
	f.seed(f.r.flagds, fixtureFlagd(func(fd *v1beta1.Flagd) {
		fd.Spec.Auth = &v1beta1.FlagdAuth{TokenSecretRef: &v1beta1.SecretKeyRef{Name: "flagd-tokens", Key: "apps"},
			TLS: &v1beta1.FlagdTLS{SecretName: "flagd-tls", ClientCASecretRef: &v1beta1.SecretKeyRef{Name: "clients", Key: "ca.pem"}}}
	}))
	if err := f.sync(); err != nil {
		t.Fatal(err)
	}
	const deployment = "/apis/apps/v1/namespaces/ns/deployments/shared"
	d := appsv1.Deployment{}
	decodeInto(t, f.api.body(http.MethodPatch, deployment), &d)
	created := checkNoCredentials(t, f.api.take(), deployment,
		markerFlagdToken, markerFlagdTLSKey, markerFlagdClientCA, markerEnvSecret, markerHTTPToken)
	for len(f.rec.Events) > 0 {
		e := <-f.rec.Events
		for _, m := range []string{markerFlagdToken, markerFlagdTLSKey, markerFlagdClientCA, markerEnvSecret, markerHTTPToken} {
			if strings.Contains(e, m) {
				t.Errorf("credential %s in event %q", m, e)
			}
		}
	}

	// The http token went into exactly one Secret the controller created, which the
	// container reads through the variable the source names.
	if len(created) != 1 || !strings.Contains(created[0], "Bearer "+markerHTTPToken) {
		t.Fatalf("Secrets created: %v, want one holding the http token", created)
	}
	c := d.Spec.Template.Spec.Containers[0]
	cfg, err := startconfig.Parse(c.Args)
	if err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	refs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	var httpEnv string
	for _, s := range cfg.Sources {
		if s.AuthHeader != "" || s.OAuth != nil || len(s.Headers) > 0 {
			t.Errorf("source %s carries a credential in the args", s.URI)
		}
		if s.Provider == "http" {
			httpEnv = s.AuthHeaderEnv
		}
	}
	var secretName struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(created[0]), &secretName); err != nil {
		t.Fatal(err)
	}
	if httpEnv == "" || refs[httpEnv] != secretName.Metadata.Name+"/authorization" {
		t.Errorf("the http source reads %q, env secretKeyRefs %v, Secret created %s", httpEnv, refs, secretName.Metadata.Name)
	}
	if refs["FLAGD_VENDOR_KEY"] != "vendor/api-key" {
		t.Errorf("envVar from a Secret: env secretKeyRefs %v, want FLAGD_VENDOR_KEY=vendor/api-key", refs)
	}

	// spec.auth's Secrets are volumes, and flagd is given their paths.
	mounted := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			mounted[v.Secret.SecretName] = v.Name
		}
	}
	if len(mounted) != 3 || mounted["flagd-tokens"] == "" || mounted["flagd-tls"] == "" || mounted["clients"] == "" {
		t.Errorf("secret volumes %v", mounted)
	}
	if cfg.AuthTokenFile == "" || cfg.ServerKeyPath == "" || cfg.ClientCAPath == "" {
		t.Errorf("flagd is not given the mounted files: token %q, key %q, client CA %q", cfg.AuthTokenFile, cfg.ServerKeyPath, cfg.ClientCAPath)
	}
}

// TestNoSecretValueInFlagdProxyArgsOrEnv reconciles the flagd-proxy with a token
// Secret of its ServiceAccount on the API server: the proxy's only credential is
// its ServiceAccount's token, which the kubelet mounts. The controller reads no
// Secret, writes no marker, and the proxy's container has no plain env value and
// no credential option in its args.
func TestNoSecretValueInFlagdProxyArgsOrEnv(t *testing.T) {
	f := newFixture(t)
	liveSecret(f, "ops", "flagd-proxy-token", corev1.SecretTypeServiceAccountToken, map[string]string{"token": markerProxySAToken, "ca.crt": "ca"})
	r := newProxyController(t, f, FlagdProxyOptions{Namespace: "ops", Image: "flagpole:test", Replicas: 2, Port: 8015, ManagementPort: 8016,
		Auth: proxy.AuthServiceAccount, Audience: "flagpole-flagd-proxy", ImagePullSecrets: []string{"regcred"}})
	f.seed(f.cluster.Sources, proxySource("proxied", v1beta1.Source{Source: "flags", Provider: "flagd-proxy"}))
	if err := r.sync(context.Background(), r.key); err != nil {
		t.Fatal(err)
	}
	actions := f.api.take()
	const deployment = "/apis/apps/v1/namespaces/ops/deployments/flagd-proxy"
	if created := checkNoCredentials(t, actions, deployment, markerProxySAToken); len(created) != 0 {
		t.Errorf("the proxy's reconcile created Secrets: %v", created)
	}
	var d appsv1.Deployment
	for _, a := range actions {
		if a.Path == deployment {
			decodeInto(t, a.Body.(map[string]any), &d)
		}
	}
	c := d.Spec.Template.Spec.Containers[0]
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("env %s: want only downward-API values (GOMEMLIMIT), got %+v", e.Name, e)
		}
	}
	cfg, err := proxy.Parse(c.Args)
	if err != nil {
		t.Fatalf("args %q: %v", c.Args, err)
	}
	if cfg.Kubeconfig != "" || cfg.ServerKeyPath != "" || cfg.Auth != proxy.AuthServiceAccount {
		t.Errorf("proxy configuration %+v", cfg)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			t.Errorf("the proxy mounts Secret %s", v.Secret.SecretName)
		}
	}
}
