package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	flagsync "github.com/flagpole-dev/flagpole/sync"
)

// The marker values of the credentials in these tests: none may appear in a
// container's command, args or plain env values, nor anywhere else in what is
// rendered into the pod spec.
const (
	markerHTTPToken   = "MARKER-http-token-4f1c"   // a FeatureFlagSource's httpSyncBearerToken
	markerHTTPToken2  = "MARKER-http-token-2-9d0e" // a second http source's
	markerAWSSecret   = "MARKER-aws-secret-77b2"   // a Secret an envVar references
	markerAPIKey      = "MARKER-api-key-c3a8"      // a Secret a prefixed envVar references
	markerInProcToken = "MARKER-inproc-token-5e61" // a Secret an InProcessConfiguration envVar references
)

// clusterSecrets are the Secrets of the test namespace the references point to,
// holding marker values: the renderer is never given them (the operator may not
// read Secrets), so a marker found in its output would have been copied from
// somewhere it must not come from.
var clusterSecrets = map[string]map[string]string{
	"aws":     {"secret-access-key": markerAWSSecret},
	"api":     {"key": markerAPIKey},
	"inproc":  {"token": markerInProcToken},
	"unknown": {"never-referenced": "MARKER-unreferenced-0000"},
}

// allMarkers are every marker value: the FeatureFlagSource's tokens and the
// Secrets'.
func allMarkers() []string {
	out := []string{markerHTTPToken, markerHTTPToken2}
	for _, keys := range clusterSecrets {
		for _, v := range keys {
			out = append(out, v)
		}
	}
	return out
}

// plainValues are the strings of a container that reach the process or anyone
// who can read the pod as they are: command, args and env values (valueFrom
// references excluded), each labelled with where it is.
func plainValues(c corev1.Container) map[string]string {
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

// findMarkers returns where each marker appears: in the plain values of the
// containers, or in the JSON of the containers and of anything else rendered into
// the pod spec (volumes, the app containers' env).
func findMarkers(markers []string, containers []corev1.Container, rest ...any) ([]string, error) {
	var found []string
	for _, c := range containers {
		for where, v := range plainValues(c) {
			for _, m := range markers {
				if strings.Contains(v, m) {
					found = append(found, fmt.Sprintf("credential %s in %s: %q", m, where, v))
				}
			}
		}
	}
	for _, obj := range append([]any{containers}, rest...) {
		data, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		for _, m := range markers {
			if strings.Contains(string(data), m) {
				found = append(found, fmt.Sprintf("credential %s in the rendered pod spec: %s", m, data))
			}
		}
	}
	return found, nil
}

// assertNoMarker fails for every marker findMarkers finds.
func assertNoMarker(t *testing.T, markers []string, containers []corev1.Container, rest ...any) {
	t.Helper()
	found, err := findMarkers(markers, containers, rest...)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Error(f)
	}
}

// secretRef is the secretKeyRef of env var name in env, or nil.
func secretRef(env []corev1.EnvVar, name string) *corev1.SecretKeySelector {
	for _, e := range env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

// credentialSources are FeatureFlagSources using every source type and every
// credential a FeatureFlagSource can carry: two http sources with bearer tokens
// (and one without), envVars from Secrets (an unprefixed AWS_* one and a
// prefixed one), a grpc source with TLS and a CA file, a flagd-proxy source (the
// projected token), kubernetes and file sources.
func credentialSources() []*v1beta1.FeatureFlagSource {
	ref := func(secret, key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}
	}
	return []*v1beta1.FeatureFlagSource{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "remote", UID: "remote-uid"}, Spec: v1beta1.FeatureFlagSourceSpec{
			EnvVars: []corev1.EnvVar{
				{Name: "AWS_SECRET_ACCESS_KEY", ValueFrom: ref("aws", "secret-access-key")},
				{Name: "API_KEY", ValueFrom: ref("api", "key")},
				{Name: "REGION", Value: "eu-west-1"},
			},
			Sources: []v1beta1.Source{
				{Source: "https://flags.example.com/flags.json", Provider: "http", HTTPSyncBearerToken: markerHTTPToken},
				{Source: "https://flags.example.com/public.json", Provider: "http"},
				{Source: "flags.example.com:8015", Provider: "grpc", TLS: true, CertPath: "/etc/ca/ca.crt", Selector: "app"},
			},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cluster", UID: "cluster-uid"}, Spec: v1beta1.FeatureFlagSourceSpec{
			Sources: []v1beta1.Source{
				{Source: "checkout", Provider: "kubernetes"},
				{Source: "search", Provider: "file"},
				{Source: "checkout", Provider: "flagd-proxy"},
				{Source: "http://127.0.0.1:9000/flags.json", Provider: "http", HTTPSyncBearerToken: markerHTTPToken2},
			},
		}},
	}
}

// TestNoSecretValueInSidecarArgsOrEnv renders the injected sidecar and a
// standalone Flagd's container for every source type and credential a
// FeatureFlagSource can hold, and finds no credential in the containers'
// command, args or plain env values, nor anywhere in the pod spec: the http
// tokens reach flagd only through Secrets the webhook creates (secretKeyRef and
// the source's authHeaderEnv), envVars from Secrets stay references and never
// reach the app containers, and the flagd-proxy token is a projected volume.
func TestNoSecretValueInSidecarArgsOrEnv(t *testing.T) {
	objects := &StaticObjects{
		Flags: []*v1beta1.FeatureFlag{
			{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout", UID: "checkout-uid"}},
			{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "search", UID: "search-uid"}},
		},
		ServiceAccounts: []*corev1.ServiceAccount{{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}}},
	}
	cfg := DefaultConfig("flagpole:test")
	cfg.FlagdProxy = DefaultFlagdProxy("ops")
	r := &Renderer{Config: cfg, Objects: objects}
	for _, standalone := range []bool{false, true} {
		t.Run(map[bool]string{false: "sidecar", true: "standalone"}[standalone], func(t *testing.T) {
			out, d := r.Render(context.Background(), Workload{Namespace: "shop", ServiceAccount: "web", Standalone: standalone}, credentialSources())
			if d != nil {
				t.Fatal(d)
			}
			assertNoMarker(t, allMarkers(), []corev1.Container{out.Container, {Name: "app", Env: out.AppEnv}}, out.Volumes)
			cfg, err := startconfig.Parse(out.Container.Args)
			if err != nil {
				t.Fatalf("the sidecar would refuse %q: %v", out.Container.Args, err)
			}
			// Not vacuous: each credential is wired to flagd by reference.
			checkHTTPTokens(t, out, cfg.Sources)
			checkEnvFromSecrets(t, out)
			checkProxyToken(t, out, cfg.Sources)
		})
	}
}

// checkHTTPTokens: each http token went into a Secret the webhook creates, and
// only there (Describe, which is logged, omits it), and the sidecar reads it from
// that Secret through the variable its source names; no source carries a
// credential in the args.
func checkHTTPTokens(t *testing.T, out *Rendered, sources startconfig.SourceList) {
	t.Helper()
	secrets := map[string]EnsureSecret{}
	for _, e := range out.Effects {
		if s, ok := e.(EnsureSecret); ok {
			secrets[s.Name] = s
			if found, _ := findMarkers(allMarkers(), nil, s.Describe()); len(found) > 0 {
				t.Errorf("credential in the effect's description %q", s.Describe())
			}
		}
	}
	tokens := map[string]string{} // source URI → the Authorization value flagd reads
	for _, s := range sources {
		if s.AuthHeader != "" || s.OAuth != nil || len(s.Headers) > 0 {
			t.Errorf("source %s carries a credential in the args: %+v", s.URI, s)
		}
		if s.AuthHeaderEnv == "" {
			continue
		}
		ref := secretRef(out.Container.Env, s.AuthHeaderEnv)
		if ref == nil {
			t.Errorf("source %s: authHeaderEnv %s is not a secretKeyRef in the container's env", s.URI, s.AuthHeaderEnv)
			continue
		}
		sec, ok := secrets[ref.Name]
		if !ok || sec.Key != ref.Key || sec.Namespace != "shop" {
			t.Errorf("source %s: %s refers to Secret %s key %s, which the rendering does not create (%v)", s.URI, s.AuthHeaderEnv, ref.Name, ref.Key, secrets)
			continue
		}
		tokens[s.URI] = sec.Value
	}
	want := map[string]string{"https://flags.example.com/flags.json": "Bearer " + markerHTTPToken, "http://127.0.0.1:9000/flags.json": "Bearer " + markerHTTPToken2}
	if fmt.Sprint(tokens) != fmt.Sprint(want) {
		t.Errorf("http tokens reach flagd as %v, want %v", tokens, want)
	}
}

// checkEnvFromSecrets: envVars from Secrets stay references, in the flagd
// container only.
func checkEnvFromSecrets(t *testing.T, out *Rendered) {
	t.Helper()
	for name, want := range map[string]string{"AWS_SECRET_ACCESS_KEY": "aws/secret-access-key", "FLAGD_API_KEY": "api/key"} {
		if ref := secretRef(out.Container.Env, name); ref == nil || ref.Name+"/"+ref.Key != want {
			t.Errorf("env %s: secretKeyRef %v, want %s", name, ref, want)
		}
		if ref := secretRef(out.AppEnv, name); ref != nil {
			t.Errorf("env %s reaches the app containers", name)
		}
	}
}

// checkProxyToken: the flagd-proxy source presents the pod's projected token,
// read from a file.
func checkProxyToken(t *testing.T, out *Rendered, sources startconfig.SourceList) {
	t.Helper()
	var proxy flagsync.SourceConfig
	for _, s := range sources {
		if s.Selector == "core.openfeature.dev/shop/checkout" {
			proxy = s
		}
	}
	var projected bool
	for _, v := range out.Volumes {
		if v.Projected != nil && len(v.Projected.Sources) > 0 && v.Projected.Sources[0].ServiceAccountToken != nil {
			projected = true
		}
	}
	if proxy.BearerTokenFile != "/var/run/secrets/flagpole.dev/flagd-proxy/token" || !projected {
		t.Errorf("flagd-proxy source %+v, projected token volume %v", proxy, projected)
	}
}

// TestNoSecretValueInInProcessEnv: in-process mode gives every app container the
// InProcessConfigurations' envVars: one from a Secret stays a secretKeyRef, never
// a value.
func TestNoSecretValueInInProcessEnv(t *testing.T) {
	specs := []*v1beta1.InProcessConfigurationSpec{{EnvVars: []corev1.EnvVar{
		{Name: "TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "inproc"}, Key: "token"}}},
		{Name: "MODE", Value: "fast"},
	}}}
	env := InProcessEnv(InProcessDefaults{Port: 8015, Host: "localhost", Cache: "lru", CacheMaxSize: 1000, EnvVarPrefix: "FLAGD"}, specs)
	assertNoMarker(t, allMarkers(), []corev1.Container{{Name: "app", Env: env}})
	if ref := secretRef(env, "FLAGD_TOKEN"); ref == nil || ref.Name != "inproc" || ref.Key != "token" {
		t.Errorf("FLAGD_TOKEN: secretKeyRef %v, want inproc/token (env %v)", ref, env)
	}
}

// TestAssertNoMarkerFindsLeaks: the check itself finds a credential in args, in
// a command, in a plain env value and elsewhere in the pod spec, so a passing
// test above means something.
func TestAssertNoMarkerFindsLeaks(t *testing.T) {
	for name, tc := range map[string]struct {
		c    corev1.Container
		rest []any
	}{
		"args":    {c: corev1.Container{Name: "flagd", Args: []string{"start", `--sources=[{"authHeader":"Bearer ` + markerHTTPToken + `"}]`}}},
		"command": {c: corev1.Container{Name: "flagd", Command: []string{"sh", "-c", "TOKEN=" + markerAWSSecret}}},
		"env":     {c: corev1.Container{Name: "flagd", Env: []corev1.EnvVar{{Name: "FLAGD_API_KEY", Value: markerAPIKey}}}},
		"volumes": {rest: []any{[]corev1.Volume{{Name: "x", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{Path: markerInProcToken}}}}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			found, err := findMarkers(allMarkers(), []corev1.Container{tc.c}, tc.rest...)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) == 0 {
				t.Error("leak not found")
			}
		})
	}
}
