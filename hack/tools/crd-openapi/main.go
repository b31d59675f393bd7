// Command crd-openapi turns CRD manifests into the OpenAPI v2 document
// applyconfiguration-gen reads (--openapi-schema): one definition per kind, named
// after its Go type as the generator expects, holding the CRD's structural schema.
// With it the generated apply configurations get Extract* functions and a typed
// schema (which the field-managed fake clientset needs).
//
// Usage: crd-openapi -go-package <import path of the API types> <crd.yaml>... > schema.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// crd is the part of a CustomResourceDefinition this command reads.
type crd struct {
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Schema struct {
				OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
			} `json:"schema"`
		} `json:"versions"`
	} `json:"spec"`
}

func main() {
	goPackage := flag.String("go-package", "", "import path of the Go package holding the API types")
	flag.Parse()
	if *goPackage == "" || flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: crd-openapi -go-package <import path> <crd.yaml>...")
		os.Exit(2)
	}
	if err := run(*goPackage, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "crd-openapi:", err)
		os.Exit(1)
	}
}

func run(goPackage string, files []string) error {
	definitions := map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var c crd
		if err := yaml.Unmarshal(data, &c); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, v := range c.Spec.Versions {
			if !strings.HasSuffix(goPackage, "/"+v.Name) {
				continue
			}
			schema := v.Schema.OpenAPIV3Schema
			if schema == nil {
				return fmt.Errorf("%s: version %s has no schema", f, v.Name)
			}
			toV2(schema)
			schema["x-kubernetes-group-version-kind"] = []any{map[string]any{
				"group": c.Spec.Group, "version": v.Name, "kind": c.Spec.Names.Kind,
			}}
			definitions[restFriendlyName(goPackage+"."+c.Spec.Names.Kind)] = schema
		}
	}
	doc := map[string]any{
		"swagger":     "2.0",
		"info":        map[string]any{"title": "CRD schemas for applyconfiguration-gen", "version": "unversioned"},
		"paths":       map[string]any{},
		"definitions": definitions,
	}
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

// toV2 removes from a structural schema what OpenAPI v2 cannot express and
// applyconfiguration-gen does not need: value validations with anyOf/allOf/oneOf/not
// (only x-kubernetes-int-or-string fields, resource quantities, use them) and
// nullable.
func toV2(schema map[string]any) {
	for _, k := range []string{"anyOf", "allOf", "oneOf", "not", "nullable"} {
		delete(schema, k)
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		for _, p := range props {
			if p, ok := p.(map[string]any); ok {
				toV2(p)
			}
		}
	}
	for _, k := range []string{"items", "additionalProperties"} {
		if sub, ok := schema[k].(map[string]any); ok {
			toV2(sub)
		}
	}
}

// restFriendlyName is k8s.io/code-generator's util.ToRESTFriendlyName: the host part of
// a Go type's import path reversed, slashes as dots
// (github.com/a/b/v1.T -> com.github.a.b.v1.T).
func restFriendlyName(name string) string {
	nameParts := strings.Split(name, "/")
	if len(nameParts) > 0 && strings.Contains(nameParts[0], ".") {
		parts := strings.Split(nameParts[0], ".")
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		nameParts[0] = strings.Join(parts, ".")
	}
	return strings.Join(nameParts, ".")
}
