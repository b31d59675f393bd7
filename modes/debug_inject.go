package modes

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/kube/manifest"
	"github.com/flagpole-dev/flagpole/sidecar"
	"github.com/flagpole-dev/flagpole/webhook"
)

// DebugInjectCmd renders offline what the pod webhook would do to a pod, or to the
// pod template of a workload, given the objects it would read.
type DebugInjectCmd struct {
	File           string   `name:"file" short:"f" required:"" help:"A Pod, or a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob (its pod template is rendered); YAML or JSON." type:"path"`
	Objects        []string `name:"objects" help:"Files of FeatureFlagSources, FeatureFlags, InProcessConfigurations, ServiceAccounts (and the webhook's Roles, RoleBindings, ConfigMaps): multi-document YAML or a JSON List. Without ServiceAccounts, every account is taken to exist." type:"path"`
	SidecarImage   string   `name:"sidecar-image" help:"Image of the injected sidecar (default: this binary's version of flagpole)."`
	PullPolicy     string   `name:"sidecar-image-pull-policy" default:"IfNotPresent" enum:"Always,IfNotPresent,Never" help:"imagePullPolicy of the sidecar."`
	CrossNamespace string   `name:"cross-namespace" default:"deny" enum:"deny,allow" help:"As the webhook's --cross-namespace."`
	Output         string   `name:"output" short:"o" default:"yaml" enum:"yaml,json,patch" help:"yaml or json: the mutated object; patch: the JSONPatch."`
}

// workloadTemplates locates the pod template of each workload kind.
var workloadTemplates = map[string][]string{
	"Deployment": {"spec", "template"}, "StatefulSet": {"spec", "template"}, "DaemonSet": {"spec", "template"},
	"ReplicaSet": {"spec", "template"}, "Job": {"spec", "template"}, "CronJob": {"spec", "jobTemplate", "spec", "template"},
}

// Run renders the mutation through the webhook's own admit function. The side
// effects it would apply are listed on stderr; a denial prints the webhook's message
// and exits 1.
func (c *DebugInjectCmd) Run(ctx context.Context, build BuildInfo, stdio Stdio) error {
	objs, err := c.loadObjects()
	if err != nil {
		return err
	}
	data, err := readFile(c.File)
	if err != nil {
		return err
	}
	docs, err := manifest.Read(c.File, data)
	if err != nil {
		return err
	}
	if len(docs) != 1 {
		return fmt.Errorf("%s: want exactly one object, found %d", c.File, len(docs))
	}
	target := docs[0]
	podJSON, templatePath, err := podOf(target)
	if err != nil {
		return err
	}
	image := c.SidecarImage
	if image == "" {
		image = "ghcr.io/flagpole-dev/flagpole:" + build.Version
	}
	cfg := webhook.DefaultInjectorConfig(image)
	cfg.Sidecar.ImagePullPolicy = corev1.PullPolicy(c.PullPolicy)
	cfg.Sidecar.CrossNamespace = sidecar.CrossNamespace(c.CrossNamespace)
	injector := &webhook.Injector{Config: cfg, Objects: objs}
	ns := target.Namespace
	if ns == "" {
		ns = "default"
	}
	d := injector.Admit(ctx, &admissionv1.AdmissionRequest{UID: "debug-inject", Namespace: ns, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: podJSON}})
	if !d.Allowed {
		fmt.Fprintf(stdio.Err, "denied (%d): %s\n", d.Code, d.Message)
		return ExitError{Code: 1}
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(stdio.Err, "warning: %s\n", w)
	}
	for _, e := range d.Effects {
		fmt.Fprintf(stdio.Err, "would %s\n", e.Describe())
	}
	if d.Message != "" && len(d.Patch) == 0 {
		fmt.Fprintf(stdio.Err, "unchanged: %s\n", d.Message)
	}
	out, err := render(c.Output, target.Raw, podJSON, templatePath, d.Patch)
	if err != nil {
		return err
	}
	_, err = stdio.Out.Write(out)
	return err
}

// loadObjects reads the --objects files into what the webhook would read.
func (c *DebugInjectCmd) loadObjects() (*sidecar.StaticObjects, error) {
	objs := &sidecar.StaticObjects{}
	for _, name := range c.Objects {
		data, err := readFile(name)
		if err != nil {
			return nil, err
		}
		docs, err := manifest.Read(name, data)
		if err != nil {
			return nil, err
		}
		for _, o := range docs {
			var target any
			switch o.Kind {
			case "FeatureFlagSource":
				target = appendNew(&objs.Sources)
			case "FeatureFlag":
				target = appendNew(&objs.Flags)
			case "InProcessConfiguration":
				target = appendNew(&objs.InProcess)
			case "ServiceAccount":
				target = appendNew(&objs.ServiceAccounts)
			case "Role":
				target = appendNew(&objs.Roles)
			case "RoleBinding":
				target = appendNew(&objs.RoleBindings)
			case "ConfigMap":
				target = appendNew(&objs.ConfigMaps)
			default:
				return nil, fmt.Errorf("%s: %s: the webhook reads FeatureFlagSources, FeatureFlags, InProcessConfigurations, ServiceAccounts, Roles, RoleBindings and ConfigMaps, not %s", o.Where, o.ID(), o.Kind)
			}
			if err := json.Unmarshal(o.Raw, target); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", o.Where, o.ID(), err)
			}
		}
	}
	objs.AllAccountsExist = len(objs.ServiceAccounts) == 0
	defaultNamespaces(objs)
	return objs, nil
}

// appendNew appends a new zero object to the list and returns it to decode into.
func appendNew[T any](list *[]*T) *T {
	v := new(T)
	*list = append(*list, v)
	return v
}

// defaultNamespaces puts objects without a namespace in "default", as kubectl would.
func defaultNamespaces(o *sidecar.StaticObjects) {
	set := func(ns *string) {
		if *ns == "" {
			*ns = "default"
		}
	}
	for _, x := range o.Sources {
		set(&x.Namespace)
	}
	for _, x := range o.Flags {
		set(&x.Namespace)
	}
	for _, x := range o.InProcess {
		set(&x.Namespace)
	}
	for _, x := range o.ServiceAccounts {
		set(&x.Namespace)
	}
	for _, x := range o.Roles {
		set(&x.Namespace)
	}
	for _, x := range o.RoleBindings {
		set(&x.Namespace)
	}
	for _, x := range o.ConfigMaps {
		set(&x.Namespace)
	}
}

// podOf returns the pod the webhook would see: the object itself for a Pod, or a
// pod built from a workload's template (its namespace, and the workload as owner,
// since a template's pods always have one). templatePath is nil for a Pod.
func podOf(o manifest.Object) ([]byte, []string, error) {
	if o.Kind == "Pod" {
		return o.Raw, nil, nil
	}
	path, ok := workloadTemplates[o.Kind]
	if !ok {
		return nil, nil, fmt.Errorf("%s: %s: want a Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob", o.Where, o.Kind)
	}
	var obj map[string]any
	if err := json.Unmarshal(o.Raw, &obj); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", o.Where, err)
	}
	tmpl, _ := dig(obj, path).(map[string]any)
	if tmpl == nil {
		return nil, nil, fmt.Errorf("%s: %s has no %s", o.Where, o.ID(), strings.Join(path, "."))
	}
	meta, _ := tmpl["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
	}
	meta = copyMap(meta)
	meta["namespace"] = o.Namespace
	meta["ownerReferences"] = []any{map[string]any{"apiVersion": o.APIVersion, "kind": o.Kind, "name": o.Name, "uid": "debug-inject"}}
	pod, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]})
	return pod, path, err
}

func dig(obj map[string]any, path []string) any {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[p]
	}
	return cur
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	maps.Copy(out, m)
	return out
}

// render produces the output: the JSONPatch (its paths moved under the template
// for a workload), or the mutated object as JSON or YAML.
func render(format string, original, podJSON []byte, templatePath []string, patch []byte) ([]byte, error) {
	if format == "patch" {
		var ops []map[string]any
		if len(patch) > 0 {
			if err := json.Unmarshal(patch, &ops); err != nil {
				return nil, err
			}
		}
		prefix := ""
		if len(templatePath) > 0 {
			prefix = "/" + strings.Join(templatePath, "/")
		}
		for _, op := range ops {
			op["path"] = prefix + op["path"].(string)
		}
		if ops == nil {
			ops = []map[string]any{}
		}
		out, err := json.MarshalIndent(ops, "", "  ")
		return append(out, '\n'), err
	}
	mutated := podJSON
	if len(patch) > 0 {
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, err
		}
		if mutated, err = p.Apply(podJSON); err != nil {
			return nil, err
		}
	}
	result := mutated
	if templatePath != nil {
		var obj, pod map[string]any
		if err := json.Unmarshal(original, &obj); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(mutated, &pod); err != nil {
			return nil, err
		}
		meta, _ := pod["metadata"].(map[string]any)
		delete(meta, "namespace")
		delete(meta, "ownerReferences")
		tmpl := dig(obj, templatePath).(map[string]any)
		tmpl["metadata"], tmpl["spec"] = meta, pod["spec"]
		var err error
		if result, err = json.Marshal(obj); err != nil {
			return nil, err
		}
	}
	if format == "json" {
		var v any
		if err := json.Unmarshal(result, &v); err != nil {
			return nil, err
		}
		out, err := json.MarshalIndent(v, "", "  ")
		return append(out, '\n'), err
	}
	return yaml.JSONToYAML(result)
}
