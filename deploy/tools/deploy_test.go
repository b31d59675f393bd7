// Package tools_test renders every variant of the install, kustomize's and Helm's,
// and runs the same schema and policy checks (package check) on each; it also
// checks that Helm's defaults install what deploy/default installs, that every
// chart value is documented, set in a test and visible in the output, and that a
// release pins its image.
package tools_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/deploy/tools/chartdoc"
	"github.com/flagpole-dev/flagpole/deploy/tools/check"
	"github.com/flagpole-dev/flagpole/deploy/tools/release"
	"github.com/flagpole-dev/flagpole/deploy/tools/render"
)

const root = "../.."

func crds(t *testing.T) map[string]*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "crd", "manifests", "*.yaml"))
	out := map[string]*apiextensionsv1.CustomResourceDefinition{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var c apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		out[c.Name] = &c
	}
	if len(out) != 4 {
		t.Fatalf("%d CRDs in crd/manifests", len(out))
	}
	return out
}

func kustomize(t *testing.T, dir string) []check.Object {
	t.Helper()
	y, err := render.Kustomize(filepath.Join(root, "deploy", dir))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := check.Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func helm(t *testing.T, values ...string) ([]check.Object, string) {
	t.Helper()
	merged := map[string]any{}
	for _, v := range values {
		data, err := os.ReadFile(v)
		if err != nil {
			t.Fatal(err)
		}
		m, err := render.ValuesFile(data)
		if err != nil {
			t.Fatal(err)
		}
		merge(merged, m)
	}
	y, err := render.Helm(context.Background(), render.Chart{Dir: filepath.Join(root, "deploy", "chart", "flagpole"), Release: "flagpole", Namespace: "flagpole-system", Values: merged})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := check.Parse(y)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return objs, string(y)
}

func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func kinds(objs []check.Object) map[string]int {
	out := map[string]int{}
	for _, o := range objs {
		out[o.Kind]++
	}
	return out
}

func TestKustomizeVariants(t *testing.T) {
	for dir, opts := range map[string]check.Options{
		"default":                      {},
		"overlays/cert-manager":        {CertManager: true},
		"overlays/split":               {},
		"overlays/flagd-proxy":         {},
		"overlays/webhook-client-auth": {},
	} {
		t.Run(dir, func(t *testing.T) {
			objs := kustomize(t, dir)
			opts.CRDs = crds(t)
			if err := check.Install(objs, opts); err != nil {
				t.Fatal(err)
			}
			k := kinds(objs)
			switch dir {
			case "overlays/split":
				if k["Deployment"] != 2 || k["PodDisruptionBudget"] != 2 {
					t.Errorf("split: %v", k)
				}
			case "overlays/cert-manager":
				if k["Certificate"] != 1 || k["Issuer"] != 1 || k["Role"] != 1 || k["ClusterRole"] != 2 {
					t.Errorf("cert-manager: %v", k)
				}
			case "overlays/webhook-client-auth":
				y, err := render.Kustomize(filepath.Join(root, "deploy", dir))
				if err != nil || !bytes.Contains(y, []byte("- --webhook-client-ca=/etc/flagpole/webhook-client-ca/ca.crt")) ||
					!bytes.Contains(y, []byte("name: flagpole-webhook-client-ca")) {
					t.Errorf("webhook-client-auth: the webhook does not require client certificates (%v)", err)
				}
			case "overlays/flagd-proxy":
				y, err := render.Kustomize(filepath.Join(root, "deploy", dir))
				if err != nil || !bytes.Contains(y, []byte("name: SIDECAR_SYNC_PROVIDER\n          value: flagd-proxy")) {
					t.Errorf("flagd-proxy: the default provider is not flagd-proxy (%v)", err)
				}
			}
		})
	}
}

// TestDefaultImageEverywhere: the image set in deploy/default reaches the sidecar
// image and FLAGPOLE_IMAGE (the replacements).
func TestDefaultImageEverywhere(t *testing.T) {
	y, err := render.Kustomize(filepath.Join(root, "deploy", "default"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(y, []byte("ghcr.io/flagpole-dev/flagpole:dev")); n != 3 {
		t.Errorf("the image appears %d times, want 3 (container, FLAGPOLE_SIDECAR_IMAGE, FLAGPOLE_IMAGE)", n)
	}
}

func TestHelmDefaultsAreTheKustomizeInstall(t *testing.T) {
	objs, _ := helm(t)
	if err := check.Install(objs, check.Options{CRDs: crds(t)}); err != nil {
		t.Fatal(err)
	}
	if err := check.Equivalent(kustomize(t, "default"), objs); err != nil {
		t.Fatalf("helm template (defaults) and kubectl kustomize deploy/default install different things:\n%v", err)
	}
}

// leaves are the documented keys of values.yaml.
func leaves(t *testing.T) []chartdoc.Value {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "deploy", "chart", "flagpole", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	vs, err := chartdoc.Values(data)
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

func lookup(m map[string]any, key string) (any, bool) {
	var cur any = m
	for _, part := range strings.Split(key, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// shows is what each value, as set by the test files, puts into the output.
var shows = map[string][]string{
	"defaultNamespace":                             {"namespace: flags-system"},
	"namespace.create":                             {}, // off-switches: no Namespace (checked below)
	"namespace.labels":                             {"team: platform"},
	"namespace.annotations":                        {"owner: platform-team"},
	"imagePullSecrets":                             {"--image-pull-secrets=regcred,other-cred", "- name: other-cred"},
	"labels":                                       {"--labels=cost-center:c42", "cost-center: c42"},
	"annotations":                                  {"--annotations=example.com/scrape:yes"},
	"image.repository":                             {"image: registry.example.com/flagpole:v9.8.7@sha256:076f"},
	"image.tag":                                    {"app.kubernetes.io/version: \"v9.8.7\""},
	"image.digest":                                 {"FLAGPOLE_IMAGE\n", "@sha256:076f794d"},
	"image.pullPolicy":                             {"imagePullPolicy: Always"},
	"mutatingWebhook.failurePolicy":                {"failurePolicy: Ignore"},
	"mutatingWebhook.objectSelector":               {"flags: \"on\""},
	"mutatingWebhook.timeoutSeconds":               {"timeoutSeconds: 7"},
	"validatingWebhook.timeoutSeconds":             {"timeoutSeconds: 9"},
	"managerConfig.flagsValidationEnabled":         {}, // off-switches: --no-flags-validation (checked below)
	"sidecarConfiguration.port":                    {`SIDECAR_PORT, value: "18013"`},
	"sidecarConfiguration.managementPort":          {`SIDECAR_MANAGEMENT_PORT, value: "18014"`},
	"sidecarConfiguration.socketPath":              {`SIDECAR_SOCKET_PATH, value: "/tmp/flagd.sock"`},
	"sidecarConfiguration.image.repository":        {`value: "registry.example.com/flagd-sidecar:v1.1.1"`},
	"sidecarConfiguration.image.tag":               {"flagd-sidecar:v1.1.1"},
	"sidecarConfiguration.imagePullPolicy":         {"--sidecar-image-pull-policy=Never"},
	"sidecarConfiguration.providerArgs":            {}, // refused when set (TestHelmRefuses)
	"sidecarConfiguration.envVarPrefix":            {`SIDECAR_ENV_VAR_PREFIX, value: "MYFLAGS"`},
	"sidecarConfiguration.defaultSyncProvider":     {`SIDECAR_SYNC_PROVIDER, value: "file"`},
	"sidecarConfiguration.evaluator":               {`SIDECAR_EVALUATOR, value: "jsonlogic"`},
	"sidecarConfiguration.logFormat":               {`SIDECAR_LOG_FORMAT, value: "console"`},
	"sidecarConfiguration.probesEnabled":           {`SIDECAR_PROBES_ENABLED, value: "false"`},
	"sidecarConfiguration.debugLogging":            {}, // no effect, as in OFO
	"sidecarConfiguration.otelCollectorUri":        {}, // no effect, as in OFO
	"sidecarConfiguration.crossNamespace":          {"--cross-namespace=allow"},
	"sidecarConfiguration.resources":               {"--sidecar-cpu-limit=700m", "--sidecar-ram-limit=96Mi", "--sidecar-cpu-request=100m", "--sidecar-ram-request=48Mi"},
	"inProcessConfiguration.port":                  {`IN_PROCESS_PORT, value: "18015"`},
	"inProcessConfiguration.host":                  {`IN_PROCESS_HOST, value: "flags.example"`},
	"inProcessConfiguration.socketPath":            {`IN_PROCESS_SOCKET_PATH, value: "/tmp/inproc.sock"`},
	"inProcessConfiguration.tls":                   {`IN_PROCESS_TLS, value: "true"`},
	"inProcessConfiguration.offlineFlagSourcePath": {`IN_PROCESS_OFFLINE_FLAG_SOURCE_PATH, value: "/flags/offline.json"`},
	"inProcessConfiguration.selector":              {`IN_PROCESS_SELECTOR, value: "team-a"`},
	"inProcessConfiguration.envVarPrefix":          {`IN_PROCESS_ENV_VAR_PREFIX, value: "INPROC"`},
	"inProcessConfiguration.cache.type":            {`IN_PROCESS_CACHE, value: "disabled"`},
	"inProcessConfiguration.cache.size":            {`IN_PROCESS_CACHE_MAX_SIZE, value: "77"`},
	"flagdProxyConfiguration.replicaCount":         {`FLAGD_PROXY_REPLICA_COUNT, value: "3"`},
	"flagdProxyConfiguration.port":                 {`FLAGD_PROXY_PORT, value: "18016"`},
	"flagdProxyConfiguration.managementPort":       {`FLAGD_PROXY_MANAGEMENT_PORT, value: "18017"`},
	"flagdProxyConfiguration.debugLogging":         {`FLAGD_PROXY_DEBUG_LOGGING, value: "true"`},
	"flagdProxyConfiguration.tls":                  {`FLAGPOLE_FLAGD_PROXY_TLS, value: "false"`},
	"controllerManager.replicas":                   {"replicas: 3"},
	"controllerManager.resources":                  {"memory: 512Mi"},
	"controllerManager.nodeSelector":               {"kubernetes.io/os: linux"},
	"controllerManager.tolerations":                {"key: dedicated"},
	"controllerManager.affinity":                   {"key: pool"},
	"controllerManager.priorityClassName":          {"priorityClassName: platform-critical"},
	"controllerManager.logLevel":                   {"--log-level=debug"},
	"split":                                        {"name: flagpole-webhook\n", "name: flagpole-controller\n", "- controller\n"},
	"certManager.enabled":                          {"kind: Certificate", "cert-manager.io/inject-ca-from: flags-system/flagpole-webhook", "--cert-dir=/etc/flagpole/webhook-certs"},
	"webhookClientAuth.caConfigMap":                {"--webhook-client-ca=/etc/flagpole/webhook-client-ca/ca.crt", "name: apiserver-webhook-client-ca", "mountPath: /etc/flagpole/webhook-client-ca"},
	"webhookClientAuth.names":                      {"--webhook-client-names=kube-apiserver-webhook-client,apiserver.example"},
	"podDisruptionBudget.enabled":                  {}, // off-switches: no PodDisruptionBudget (checked below)
	"podDisruptionBudget.minAvailable":             {"minAvailable: 2"},
	"networkPolicy.enabled":                        {}, // off-switches: no NetworkPolicy (checked below)
	"networkPolicy.webhookFrom":                    {"cidr: 10.0.0.0/24"},
	"networkPolicy.metricsFrom":                    {"kubernetes.io/metadata.name: monitoring"},
}

// TestHelmEveryValue renders the chart with every value changed (every-value.yaml,
// then off-switches.yaml for the switches): the output passes the checks, and each
// value shows where it should.
func TestHelmEveryValue(t *testing.T) {
	var files []map[string]any
	for _, f := range []string{"testdata/every-value.yaml", "testdata/off-switches.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := render.ValuesFile(data)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m)
	}
	defaults, err := os.ReadFile(filepath.Join(root, "deploy", "chart", "flagpole", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def, _ := render.ValuesFile(defaults)
	for _, v := range leaves(t) {
		if _, ok := shows[v.Key]; !ok {
			t.Errorf("values.yaml %s: no expectation in this test", v.Key)
		}
		if v.Key == "sidecarConfiguration.providerArgs" {
			continue
		}
		d, _ := lookup(def, v.Key)
		changed := false
		for _, f := range files {
			if got, ok := lookup(f, v.Key); ok && fmt.Sprint(got) != fmt.Sprint(d) {
				changed = true
			}
		}
		if !changed {
			t.Errorf("values.yaml %s: not changed by the test's values files", v.Key)
		}
	}

	objs, out := helm(t, "testdata/every-value.yaml")
	if err := check.Install(objs, check.Options{Namespace: "flags-system", CertManager: true, CRDs: crds(t)}); err != nil {
		t.Fatal(err)
	}
	for key, want := range shows {
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the output lacks %q", key, w)
			}
		}
	}
	if strings.Contains(out, "flagd-proxy-tls") { // tls: false, so no rule on its Secret
		t.Error("flagdProxyConfiguration.tls false: the operator may still read the Secret flagd-proxy-tls")
	}
	if k := kinds(objs); k["Deployment"] != 2 || k["Certificate"] != 1 {
		t.Errorf("kinds %v", k)
	}

	off, outOff := helm(t, "testdata/every-value.yaml", "testdata/off-switches.yaml")
	if err := check.Install(off, check.Options{Namespace: "flags-system", NoNamespace: true, CertManager: true, CRDs: crds(t)}); err != nil {
		t.Fatal(err)
	}
	k := kinds(off)
	for _, gone := range []string{"Namespace", "PodDisruptionBudget", "NetworkPolicy", "ValidatingWebhookConfiguration"} {
		if k[gone] != 0 {
			t.Errorf("off-switches: %d %s", k[gone], gone)
		}
	}
	if !strings.Contains(outOff, "--no-flags-validation") {
		t.Error("flagsValidationEnabled false does not reach the operator")
	}
}

func TestHelmRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		values map[string]any
		want   string
	}{
		"providerArgs":          {map[string]any{"sidecarConfiguration": map[string]any{"providerArgs": "a=b"}}, "providerArgs is not supported"},
		"sidecar image, no tag": {map[string]any{"sidecarConfiguration": map[string]any{"image": map[string]any{"repository": "x/y"}}}, "sidecarConfiguration.image.tag is required"},
		"client names, no CA":   {map[string]any{"webhookClientAuth": map[string]any{"names": []any{"kube-apiserver"}}}, "webhookClientAuth.names needs webhookClientAuth.caConfigMap"},
	} {
		_, err := render.Helm(context.Background(), render.Chart{Dir: filepath.Join(root, "deploy", "chart", "flagpole"), Release: "flagpole", Namespace: "flagpole-system", Values: c.values})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
}

func TestChartREADMEIsCurrent(t *testing.T) {
	dir := filepath.Join(root, "deploy", "chart", "flagpole")
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	updated, err := chartdoc.Update(readme, chartdoc.Table(leaves(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(updated, readme) {
		t.Error("deploy/chart/flagpole/README.md is not current: run make chart-docs")
	}
}

func TestReleaseManifests(t *testing.T) {
	const img = "registry.example.com/flagpole:v1.2.3@sha256:076f794d1548c476d84dbf4d4e4c8a23294716eab6c0b9f2c2678b49e5deb71d"
	out := t.TempDir()
	files, err := release.Write(root, out, "v1.2.3", img)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	objs, err := check.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := check.Install(objs, check.Options{CRDs: crds(t)}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), ": "+img+"\n"); n != 3 {
		t.Errorf("the pinned image appears %d times in fields, want 3 (container, FLAGPOLE_SIDECAR_IMAGE, FLAGPOLE_IMAGE)", n)
	}
	if !strings.HasPrefix(string(data), "# flagpole v1.2.3: ") {
		t.Errorf("install.yaml does not name its version: %.80s", data)
	}
	crdData, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	crdObjs, err := check.Parse(crdData)
	if err != nil || len(crdObjs) != 4 || slices.ContainsFunc(crdObjs, func(o check.Object) bool { return o.Kind != "CustomResourceDefinition" }) {
		t.Errorf("crds.yaml: %d objects, %v", len(crdObjs), err)
	}
	for _, bad := range []string{"ghcr.io/flagpole-dev/flagpole:v1", "flagpole@sha256:abc", "Flagpole:v1@sha256:076f794d1548c476d84dbf4d4e4c8a23294716eab6c0b9f2c2678b49e5deb71d"} {
		if _, err := release.Write(root, t.TempDir(), "v1", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestChartdocWantsADescription(t *testing.T) {
	_, err := chartdoc.Values([]byte("# -- documented\na: 1\nb:\n  c: 2\n"))
	if err == nil || !strings.Contains(err.Error(), "b.c has no description") {
		t.Errorf("err = %v", err)
	}
	vs, err := chartdoc.Values([]byte("# -- first line\n# second line\na: {x: 1}\n"))
	if err != nil || len(vs) != 1 || vs[0].Description != "first line second line" || vs[0].Default != `{"x":1}` {
		t.Errorf("%+v %v", vs, err)
	}
}
