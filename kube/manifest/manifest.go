// Package manifest reads Kubernetes manifests as kubectl does: YAML or JSON, several
// documents separated by "---", and `kind: List` (or any *List) expanded into its
// items. Each object keeps its raw JSON, so callers decode it into whatever type
// its kind calls for and nothing unknown is lost.
package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// Object is one object of a manifest.
type Object struct {
	APIVersion, Kind string
	Namespace, Name  string
	// Raw is the object as JSON.
	Raw []byte
	// Where says where it came from: "file.yaml#2" (the document's 1-based index),
	// with ".items[i]" for an item of a list.
	Where string
}

// ID is "Kind/namespace/name" (or "Kind/name" for cluster-scoped objects), for
// messages.
func (o Object) ID() string {
	if o.Namespace == "" {
		return o.Kind + "/" + o.Name
	}
	return o.Kind + "/" + o.Namespace + "/" + o.Name
}

// maxDocument bounds one YAML document (a manifest, not a data file).
const maxDocument = 16 << 20

// Read splits data (named name in messages) into objects. An empty document is
// skipped; a document that is not an object with apiVersion and kind is an error
// naming the document.
func Read(name string, data []byte) ([]Object, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []Object
	for i := 1; ; i++ {
		var doc json.RawMessage
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		where := fmt.Sprintf("%s#%d", name, i)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 || string(bytes.TrimSpace(doc)) == "null" {
			continue
		}
		if len(doc) > maxDocument {
			return nil, fmt.Errorf("%s: document larger than %d bytes", where, maxDocument)
		}
		objs, err := objects(where, doc)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
}

// objects reads one document: an object, or a list whose items are objects.
func objects(where string, doc []byte) ([]Object, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return nil, fmt.Errorf("%s: not a Kubernetes object: %w", where, err)
	}
	if head.Kind == "" || head.APIVersion == "" {
		return nil, fmt.Errorf("%s: not a Kubernetes object: apiVersion and kind are required", where)
	}
	if strings.HasSuffix(head.Kind, "List") && head.Items != nil {
		var out []Object
		for i, item := range head.Items {
			objs, err := objects(fmt.Sprintf("%s.items[%d]", where, i), item)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	return []Object{{APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name, Raw: doc, Where: where}}, nil
}
