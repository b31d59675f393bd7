package crd_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/manifests"
)

// kindValidator admits objects of one kind the way kube-apiserver does for a custom
// resource: prune unknown fields, drop nulls, apply defaults, then validate against
// the OpenAPI schema, the list-type invariants and the CEL rules.
type kindValidator struct {
	crd        *apiextensions.CustomResourceDefinition
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// admission is what admitting one object produced.
type admission struct {
	unknown []string        // fields pruned as not in the schema (kubectl's strict validation rejects them)
	errs    field.ErrorList // schema and CEL errors
	obj     map[string]any  // the object as it would be stored
}

// messages are the errors an API server would report, sorted: one `unknown field
// "path"` per pruned field (strict field validation), then each validation error.
func (a admission) messages() []string {
	var out []string
	for _, u := range a.unknown {
		out = append(out, fmt.Sprintf("unknown field %q", u))
	}
	for _, e := range a.errs {
		out = append(out, e.Error())
	}
	sort.Strings(out)
	return out
}

// loadValidators builds a validator per kind from the embedded CRD manifests.
func loadValidators(t *testing.T) map[string]*kindValidator {
	t.Helper()
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*kindValidator{}
	for _, crd := range crds {
		v, err := newKindValidator(crd)
		if err != nil {
			t.Fatalf("%s: %v", crd.Name, err)
		}
		out[crd.Spec.Names.Kind] = v
	}
	return out
}

// internalCRDs decodes the embedded manifests, defaults them as the API server does
// and converts them to the internal version the validation packages work on.
func internalCRDs() ([]*apiextensions.CustomResourceDefinition, error) {
	crds, err := manifests.CRDs()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensions.CustomResourceDefinition, 0, len(crds))
	for _, c := range crds {
		var v1 apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(c.YAML, &v1); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1)
		var internal apiextensions.CustomResourceDefinition
		if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1, &internal, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
		out = append(out, &internal)
	}
	return out, nil
}

func newKindValidator(crd *apiextensions.CustomResourceDefinition) (*kindValidator, error) {
	if len(crd.Spec.Versions) != 1 {
		return nil, fmt.Errorf("want exactly one version, have %d", len(crd.Spec.Versions))
	}
	validation, err := apiextensions.GetSchemaForVersion(crd, crd.Spec.Versions[0].Name)
	if err != nil {
		return nil, err
	}
	structural, err := structuralschema.NewStructural(validation.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(validation.OpenAPIV3Schema)
	if err != nil {
		return nil, err
	}
	return &kindValidator{
		crd:        crd,
		structural: structural,
		schema:     schemaValidator,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// admit creates obj (decoded JSON: map[string]any, []any, int64, float64, string,
// bool, nil) as kube-apiserver would, modifying it in place.
func (v *kindValidator) admit(obj map[string]any) admission {
	unknown := structuralpruning.PruneWithOptions(obj, v.structural, true,
		structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	structuraldefaulting.PruneNonNullableNullsWithoutDefaults(obj, v.structural)
	structuraldefaulting.Default(obj, v.structural)

	var errs field.ErrorList
	errs = append(errs, apiservervalidation.ValidateCustomResource(nil, obj, v.schema)...)
	errs = append(errs, schemaobjectmeta.Validate(nil, obj, v.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	if !hasBlockingErr(errs) {
		celErrs, _ := v.cel.Validate(context.Background(), nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
		errs = append(errs, celErrs...)
	}
	return admission{unknown: unknown, errs: errs, obj: obj}
}

// hasBlockingErr mirrors the API server: CEL rules do not run when the object has
// the wrong type or misses a required field somewhere.
func hasBlockingErr(errs field.ErrorList) bool {
	for _, e := range errs {
		if e.Type == field.ErrorTypeNotSupported || e.Type == field.ErrorTypeRequired || e.Type == field.ErrorTypeTypeInvalid {
			return true
		}
	}
	return false
}

// sample is one YAML document of a sample file.
type sample struct {
	name string         // file#index (index from 1)
	obj  map[string]any // decoded as the API server decodes JSON
	// comments are the document's leading "# key: value" lines, by key.
	comments map[string][]string
}

// kind is the sample's kind.
func (s sample) kind() string {
	k, _ := s.obj["kind"].(string)
	return k
}

// readSamples reads every YAML document of every file matching glob; it fails the test
// when nothing matches, so that a moved directory cannot silently test nothing.
func readSamples(t *testing.T, glob string) []sample {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no sample matches %s", glob)
	}
	var out []sample
	for _, f := range files {
		docs, err := readYAMLDocuments(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range docs {
			obj, err := decodeYAML(d)
			if err != nil {
				t.Fatalf("%s#%d: %v", f, i+1, err)
			}
			out = append(out, sample{name: fmt.Sprintf("%s#%d", f, i+1), obj: obj, comments: leadingComments(d)})
		}
	}
	return out
}

func readYAMLDocuments(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(bytes.TrimSpace(stripComments(d))) == 0 {
			continue
		}
		docs = append(docs, d)
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for l := range strings.SplitSeq(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.Bytes()
}

// leadingComments collects "# key: value" lines before the first YAML line.
func leadingComments(doc []byte) map[string][]string {
	out := map[string][]string{}
	for l := range strings.SplitSeq(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l == "---" {
			continue
		}
		if !strings.HasPrefix(l, "#") {
			break
		}
		key, value, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(l, "#")), ": ")
		if ok {
			out[key] = append(out[key], value)
		}
	}
	return out
}

// decodeYAML decodes YAML the way kubectl sends it and the API server reads it:
// YAML to JSON, then JSON with integers as int64.
func decodeYAML(doc []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := utiljson.Unmarshal(j, &obj); err != nil {
		return nil, err
	}
	return obj, nil
}
