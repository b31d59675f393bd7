package modes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/webhook"
)

// manifestValidator runs the validating webhooks' AdmitFuncs on the objects of
// Kubernetes manifests, each as the CREATE the API server would send.
type manifestValidator struct {
	hooks     map[string]webhook.AdmitFunc // by kind
	namespace string                       // for objects without metadata.namespace
}

// manifestDocument is one YAML (or JSON) document of a file, as JSON.
type manifestDocument struct {
	index int    // position in the file, from 1
	json  []byte // the document as JSON, nil when err is set
	err   error
}

// manifestDocuments splits data into its documents and reports whether it is a
// Kubernetes manifest: some document is an object with apiVersion or kind. A file
// with one document that is not (a flagd flag file) is left to the flag parser, as
// is a file the YAML reader cannot split.
func manifestDocuments(data []byte) ([]manifestDocument, bool) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []manifestDocument
	manifest := false
	for i := 1; ; i++ {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, false
		}
		js, err := yaml.YAMLToJSON(d)
		switch {
		case err != nil:
			docs = append(docs, manifestDocument{index: i, err: err})
			continue
		case bytes.Equal(bytes.TrimSpace(js), []byte("null")): // empty or comments only
			continue
		}
		if isObject(js) {
			manifest = true
		}
		docs = append(docs, manifestDocument{index: i, json: js})
	}
	return docs, manifest
}

// isObject reports whether js is a JSON object with an apiVersion or a kind.
func isObject(js []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(js, &m) != nil {
		return false
	}
	_, api := m["apiVersion"]
	_, kind := m["kind"]
	return api || kind
}

// validateManifest checks every object of a manifest file.
func (v manifestValidator) validateManifest(file string, docs []manifestDocument) ([]string, bool) {
	var lines []string
	ok := true
	for _, d := range docs {
		where := fmt.Sprintf("%s: document %d", file, d.index)
		if d.err != nil {
			lines, ok = append(lines, fmt.Sprintf("%s: %v", where, d.err)), false
			continue
		}
		l, pass := v.validateObject(file, where, d.json)
		lines, ok = append(lines, l...), ok && pass
	}
	return lines, ok
}

// objectHead is what identifies an object.
type objectHead struct {
	apiVersion, kind, namespace, name string
}

// head reads apiVersion, kind, namespace and name, ignoring members of the wrong
// type (the webhook reports them).
func head(js []byte) objectHead {
	var m struct {
		APIVersion any `json:"apiVersion"`
		Kind       any `json:"kind"`
		Metadata   struct {
			Namespace    any `json:"namespace"`
			Name         any `json:"name"`
			GenerateName any `json:"generateName"`
		} `json:"metadata"`
	}
	_ = utiljson.Unmarshal(js, &m)
	str := func(x any) string { s, _ := x.(string); return s }
	h := objectHead{apiVersion: str(m.APIVersion), kind: str(m.Kind), namespace: str(m.Metadata.Namespace), name: str(m.Metadata.Name)}
	if h.name == "" {
		h.name = str(m.Metadata.GenerateName)
	}
	return h
}

// validateObject checks one object (a List's items each in turn); where names the
// document for objects that cannot be named.
func (v manifestValidator) validateObject(file, where string, js []byte) ([]string, bool) {
	if !isObject(js) {
		return []string{where + ": not a Kubernetes object (no apiVersion and kind)"}, false
	}
	h := head(js)
	if h.namespace == "" {
		h.namespace = v.namespace
	}
	name := h.name
	if name == "" {
		name = "(no name)"
	}
	label := fmt.Sprintf("%s: %s/%s/%s", file, h.kind, h.namespace, name)
	gv, err := schema.ParseGroupVersion(h.apiVersion)
	switch {
	case h.kind == "":
		return []string{where + ": kind: is required"}, false
	case h.apiVersion == "":
		return []string{label + ": apiVersion: is required (core.openfeature.dev/v1beta1)"}, false
	case err != nil:
		return []string{label + ": apiVersion: " + err.Error()}, false
	case h.kind == "List" && gv.Group == "":
		return v.validateList(file, where, js)
	case gv.Group != v1beta1.GroupName:
		return []string{fmt.Sprintf("%s: skipped: not a core.openfeature.dev object (%s)", label, h.apiVersion)}, true
	case gv.Version != v1beta1.Version:
		return []string{fmt.Sprintf("%s: apiVersion %s is not served: flagpole serves %s/%s", label, h.apiVersion, v1beta1.GroupName, v1beta1.Version)}, false
	}
	admit, known := v.hooks[h.kind]
	if !known {
		return []string{fmt.Sprintf("%s: kind %s is not served: flagpole serves FeatureFlag, FeatureFlagSource, Flagd and InProcessConfiguration", label, h.kind)}, false
	}
	d := admit(context.Background(), &admissionv1.AdmissionRequest{
		UID:       "flagpole-debug-validate",
		Kind:      metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: h.kind},
		Namespace: h.namespace, Name: h.name, Operation: admissionv1.Create,
		Object: runtime.RawExtension{Raw: js},
	})
	lines := make([]string, 0, len(d.Warnings)+1)
	for _, w := range d.Warnings {
		lines = append(lines, label+": warning: "+w)
	}
	if !d.Allowed {
		for p := range strings.SplitSeq(d.Message, "\n") {
			lines = append(lines, label+": "+p)
		}
		return lines, false
	}
	ok := label + ": ok"
	if h.kind == webhook.KindFeatureFlag {
		var ff v1beta1.FeatureFlag
		if utiljson.Unmarshal(js, &ff) == nil {
			if _, _, set := flagdoc.Check(&ff.Spec.FlagSpec); set != nil {
				ok += ", " + summarizeFlags(set)
			}
		}
	}
	if len(d.Warnings) > 0 {
		ok += ", " + plural(len(d.Warnings), "warning")
	}
	return append(lines, ok), true
}

// validateList checks the items of a v1 List.
func (v manifestValidator) validateList(file, where string, js []byte) ([]string, bool) {
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(js, &list); err != nil {
		return []string{where + ": List: items: must be an array of objects"}, false
	}
	var lines []string
	ok := true
	for i, item := range list.Items {
		l, pass := v.validateObject(file, fmt.Sprintf("%s: items[%d]", where, i), item)
		lines, ok = append(lines, l...), ok && pass
	}
	if len(list.Items) == 0 {
		lines = append(lines, where+": List: no items")
	}
	return lines, ok
}
