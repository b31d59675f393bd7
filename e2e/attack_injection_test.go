package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/flagd/startconfig"
	"github.com/flagpole-dev/flagpole/webhook"
)

// TestAttackAnnotationInjection: annotation values crafted to inject into the
// sidecar's args or to traverse paths — quotes, commas, newlines, flags, $(VAR),
// path segments, a Unicode confusable of an existing name, an oversized value —
// are refused naming the annotation, with an answer of bounded size; nothing is
// injected.
func TestAttackAnnotationInjection(t *testing.T) {
	e := startAttack(t)
	e.source(t, "flags", v1beta1.Source{Source: "checkout", Provider: "kubernetes"})
	for name, value := range map[string]string{
		"quote":         `flags"`,
		"json":          `flags","provider":"file","uri":"/etc/passwd`,
		"newline":       "flags\n--uri=/etc/passwd",
		"flag":          "--uri=/etc/passwd",
		"expansion":     "$(FLAGD_PORT)",
		"traversal":     "../" + e.victim + "/src",
		"absolute":      "/etc/passwd",
		"three parts":   e.ns + "/flags/../src",
		"confusable":    "fl\u0430gs", // Cyrillic a
		"fullwidth":     "ｆｌａｇｓ",
		"oversized":     strings.Repeat("f", 200<<10),
		"list with bad": "flags, ../etc",
	} {
		t.Run(name, func(t *testing.T) {
			msg := e.denied(t, "inj-"+strings.ReplaceAll(name, " ", "-"), rpc(value), "annotation "+webhook.AnnotationFeatureFlagSource+": ")
			t.Logf("denial: %d bytes", len(msg))
			if len(msg) > 8<<10 {
				t.Errorf("the denial of a %d-byte annotation is %d bytes: bound what it quotes", len(value), len(msg))
			}
		})
	}
	// A confusable that would resolve to an existing object is no alias of it: the
	// lookup is exact, and the cross-namespace rule applies to the parsed namespace.
	pods, err := e.c.Kube.CoreV1().Pods(e.ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("%d pods admitted", len(pods.Items))
	}
}

// TestAttackArgsInjection: FeatureFlagSource values that reach the sidecar's
// command line — context values and header mappings with quotes, commas,
// newlines, "=" and flags, $(VAR) naming the variable an envVars entry fills from a
// Secret, CORS origins with a comma — either refuse the pod naming the field or are
// rendered so that the args, after the kubelet's $(VAR) expansion with the
// container's environment, parse (flagd mode's own parser) into exactly what was
// asked: no extra source, no secret pulled in.
func TestAttackArgsInjection(t *testing.T) {
	e := startAttack(t)
	ctx := t.Context()
	asked := map[string]string{
		"quote":     `a"b`,
		"comma":     "x,y",
		"newline":   "line1\n--uri=/etc/passwd",
		"flag":      "--sources=[{\"uri\":\"/etc/passwd\",\"provider\":\"file\"}]",
		"leak":      "$(FLAGD_DB_PASSWORD)",
		"escaped":   "$$(FLAGD_DB_PASSWORD)",
		"json":      `{"uri":"/etc/passwd"}`,
		"unicode":   "fl\u0430gs \u202e",
		"empty-ish": " ",
	}
	ffs := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "crafted"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources:       []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}},
		ContextValues: asked,
		EnvVars: []corev1.EnvVar{{Name: "DB_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
		HeaderToContextMappings: map[string]string{"X-User": "user$(FLAGD_DB_PASSWORD)"},
	}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(ctx, ffs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("crafted", rpc("crafted")), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the webhook refused the crafted values (acceptable only naming the field): %v", err)
	}
	sidecar := pod.Spec.InitContainers[0]
	// The kubelet's view: DB_PASSWORD comes from the Secret at run time.
	env := map[string]string{}
	for _, v := range sidecar.Env {
		switch {
		case v.ValueFrom != nil:
			env[v.Name] = "SECRET-FROM-THE-DB-SECRET"
		default:
			env[v.Name] = kubeletExpand(v.Value, env)
		}
	}
	args := make([]string, len(sidecar.Args))
	for i, a := range sidecar.Args {
		args[i] = kubeletExpand(a, env)
		if strings.Contains(args[i], "SECRET-FROM-THE-DB-SECRET") {
			t.Errorf("arg %d expands to the Secret's value: %q → %q", i, a, args[i])
		}
	}
	cfg, err := startconfig.Parse(args)
	if err != nil {
		t.Fatalf("the sidecar would refuse its expanded args %q: %v", args, err)
	}
	if diff := cmp.Diff(asked, cfg.ContextValue); diff != "" {
		t.Errorf("context values flagd gets (-asked +got):\n%s", diff)
	}
	if diff := cmp.Diff(ffs.Spec.HeaderToContextMappings, cfg.ContextFromHeader); diff != "" {
		t.Errorf("header mappings flagd gets (-asked +got):\n%s", diff)
	}
	if diff := cmp.Diff(startconfig.SourceList{{URI: e.ns + "/checkout", Provider: "kubernetes"}}, cfg.Sources); diff != "" || len(cfg.URI) != 0 {
		t.Errorf("sources flagd gets (-asked +got):\n%s\nuris %v", diff, cfg.URI)
	}

	// A CORS origin holding a comma would be two origins on a flag that takes
	// lists: refused, naming the field.
	// Created with the origin in one step: the webhook's cache follows an update a
	// moment later, and only a miss falls back to a live read.
	cors := &v1beta1.FeatureFlagSource{ObjectMeta: metav1.ObjectMeta{Name: "cors"}, Spec: v1beta1.FeatureFlagSourceSpec{
		Sources: []v1beta1.Source{{Source: "checkout", Provider: "kubernetes"}},
		Cors:    []string{"https://app.example,https://evil.example"},
	}}
	if _, err := e.c.Flags.CoreV1beta1().FeatureFlagSources(e.ns).Create(ctx, cors, metav1.CreateOptions{}); err != nil {
		t.Logf("refused by the API server (schema): %v", err)
		return
	}
	pod, err = e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, e.pod("cors", rpc("cors")), metav1.CreateOptions{})
	if err == nil {
		cfg, perr := startconfig.Parse(pod.Spec.InitContainers[0].Args)
		if perr != nil || !slices.Equal(cfg.CORSOrigin, cors.Spec.Cors) {
			t.Errorf("CORS origins flagd gets: %q (%v), want exactly %q", cfg.CORSOrigin, perr, cors.Spec.Cors)
		}
		return
	}
	if !strings.Contains(err.Error(), "--cors-origin") && !strings.Contains(err.Error(), "cors") {
		t.Errorf("refused without naming the field: %v", err)
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

// TestAttackInProcessExpansion: an InProcessConfiguration's values go into the
// app containers, next to the app's own secrets. A selector or envVars value
// "$(DB_PASSWORD)" would, after the kubelet's expansion, hand the app's secret to
// the flagd provider, which sends the selector to the host the configuration
// names. The injected values are literal: expanded as the kubelet does, none holds
// the app's secret.
func TestAttackInProcessExpansion(t *testing.T) {
	e := startAttack(t)
	ctx := t.Context()
	ipc := &v1beta1.InProcessConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "exfil"}, Spec: v1beta1.InProcessConfigurationSpec{
		Selector: "$(DB_PASSWORD)", EnvVars: []corev1.EnvVar{{Name: "EXTRA", Value: "x-$(DB_PASSWORD)"}}}}
	if _, err := e.c.Flags.CoreV1beta1().InProcessConfigurations(e.ns).Create(ctx, ipc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := e.pod("inproc", map[string]string{webhook.AnnotationEnabled: "true", webhook.AnnotationInProcess: "exfil"})
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "DB_PASSWORD", Value: "app-s3cr3t"}}
	created, err := e.c.Kube.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	found := 0
	for _, v := range created.Spec.Containers[0].Env {
		got := kubeletExpand(v.Value, env)
		env[v.Name] = got
		if strings.HasPrefix(v.Name, "FLAGD_") {
			found++
			if strings.Contains(got, "app-s3cr3t") {
				t.Errorf("%s=%q becomes %q in the app container", v.Name, v.Value, got)
			}
		}
	}
	if env["FLAGD_SOURCE_SELECTOR"] != "$(DB_PASSWORD)" || env["FLAGD_EXTRA"] != "x-$(DB_PASSWORD)" {
		t.Errorf("the provider gets selector %q, EXTRA %q: want the configured values", env["FLAGD_SOURCE_SELECTOR"], env["FLAGD_EXTRA"])
	}
	t.Logf("%d provider settings checked", found)
}
