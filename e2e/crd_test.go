package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/manifests"
	"github.com/flagpole-dev/flagpole/e2e/harness"
)

// Sample manifests, relative to this package.
const (
	examplesGlob = "../deploy/examples/crds/*.yaml"
	ofoGlob      = "../crd/testdata/ofo/*.yaml"
	invalidGlob  = "../crd/testdata/invalid/*.yaml"
)

// TestCRDsEstablished installs the CRDs of crd/manifests (again: Setup did it first;
// installing is create-or-update) and checks that the API server serves each of them.
func TestCRDsEstablished(t *testing.T) {
	c := suite.Cluster
	names, err := c.InstallCRDs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	crds, err := manifests.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range crds {
		want = append(want, m.Name)
	}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("installed CRDs (-manifests +installed):\n%s", d)
	}
	for _, name := range names {
		crd, err := c.Extensions.ApiextensionsV1().CustomResourceDefinitions().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range []apiextensionsv1.CustomResourceDefinitionConditionType{apiextensionsv1.Established, apiextensionsv1.NamesAccepted} {
			if !harness.CRDCondition(crd, cond) {
				t.Errorf("CRD %s: condition %s is not True: %+v", name, cond, crd.Status.Conditions)
			}
		}
	}
	// The API group is discoverable with every kind.
	resources, err := c.Kube.Discovery().ServerResourcesForGroupVersion(v1beta1.SchemeGroupVersion.String())
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range resources.APIResources {
		if !strings.Contains(r.Name, "/") {
			kinds = append(kinds, r.Kind)
		}
	}
	sort.Strings(kinds)
	if d := cmp.Diff([]string{"FeatureFlag", "FeatureFlagSource", "Flagd", "InProcessConfiguration"}, kinds); d != "" {
		t.Errorf("served kinds (-want +got):\n%s", d)
	}
}

// TestValidSamplesAccepted creates every shipped example and every OpenFeature
// Operator style manifest, as kubectl does (strict field validation): each is
// accepted without a warning, and nothing of it is pruned.
func TestValidSamplesAccepted(t *testing.T) {
	for _, glob := range []string{examplesGlob, ofoGlob} {
		samples := readSamples(t, glob)
		ns := harness.Namespace(t, suite.Cluster, "samples")
		for _, s := range samples {
			t.Run(s.name, func(t *testing.T) {
				w := &warnings{}
				client := dynamicClient(t, w).Resource(s.resource(t)).Namespace(ns)
				created, err := client.Create(t.Context(), s.object(), metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got := w.list(); len(got) > 0 {
					t.Errorf("warnings: %q", got)
				}
				if missing := notStored("", s.obj, created.Object); len(missing) > 0 {
					t.Errorf("sent but not stored (pruned or changed):\n%s", strings.Join(missing, "\n"))
				}
			})
		}
	}
}

// TestInvalidSamplesRejected checks each manifest of crd/testdata/invalid against the
// real API server:
//   - with `# want:` lines, creating it as kubectl does (strict field validation) is
//     refused, and the errors the API server reports (unknown fields, schema, CEL) are
//     exactly the wanted ones. Strict validation stops at the first unknown field
//     error, so the full list is collected from a dry run with fieldValidation=Warn,
//     where unknown fields come back as warnings and validation runs to the end;
//   - with only `# want-flagd:` lines, the manifest is valid for the schema (CEL in a
//     CRD cannot see the keys of the schemaless variants object, docs/api.md), so the
//     API server accepts it. The validating webhook rejects it with those problems;
//     until the webhook exists, this test pins that the schema lets it through.
func TestInvalidSamplesRejected(t *testing.T) {
	samples := readSamples(t, invalidGlob)
	ns := harness.Namespace(t, suite.Cluster, "invalid")
	for _, s := range samples {
		t.Run(filepath.Base(s.name), func(t *testing.T) {
			want, wantFlagd := s.comments["want"], s.comments["want-flagd"]
			if len(want) == 0 && len(wantFlagd) == 0 {
				t.Fatal("no # want: or # want-flagd: line")
			}
			client := dynamicClient(t, nil).Resource(s.resource(t)).Namespace(ns)
			created, err := client.Create(t.Context(), s.object(), metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict})
			if len(want) == 0 {
				// want-flagd only: accepted by the API server (see above).
				if err != nil {
					t.Fatalf("the API server refused a manifest only flagd's parser should reject: %v", err)
				}
				if err := client.Delete(t.Context(), created.GetName(), metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				_ = client.Delete(t.Context(), created.GetName(), metav1.DeleteOptions{})
				t.Fatalf("accepted; want refused with %q", want)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("refused with %v (reason %s), want Invalid or BadRequest", err, apierrors.ReasonForError(err))
			}
			for _, m := range statusMessages(err) {
				if !slices.Contains(want, m) {
					t.Errorf("kubectl would see %q, which is not a wanted error %q", m, want)
				}
			}

			w := &warnings{}
			dry := dynamicClient(t, w).Resource(s.resource(t)).Namespace(ns)
			_, err = dry.Create(t.Context(), s.object(), metav1.CreateOptions{FieldValidation: metav1.FieldValidationWarn, DryRun: []string{metav1.DryRunAll}})
			got := append(w.list(), statusMessages(err)...)
			sort.Strings(got)
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("API server errors and unknown-field warnings (-want +got):\n%s", d)
			}
		})
	}
}

// statusMessages turns an API error into the lines the samples' `# want:` comments
// use: "<field>: <message>" per cause of an Invalid error, `unknown field "<path>"`
// per field of a strict decoding error.
func statusMessages(err error) []string {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return []string{err.Error()}
	}
	st := status.Status()
	if st.Reason == metav1.StatusReasonBadRequest {
		// `FeatureFlag in version "v1beta1" cannot be handled as a FeatureFlag: strict
		// decoding error: unknown field "a", unknown field "b"`
		if _, list, ok := strings.Cut(st.Message, "strict decoding error: "); ok {
			return strings.Split(list, ", ")
		}
	}
	if st.Details == nil || len(st.Details.Causes) == 0 {
		return []string{st.Message}
	}
	var out []string
	for _, c := range st.Details.Causes {
		if c.Field == skippedRulesField && c.Message == skippedRulesMessage {
			continue
		}
		if c.Field == "" {
			out = append(out, c.Message)
			continue
		}
		out = append(out, c.Field+": "+c.Message)
	}
	return out
}

// The API server adds this cause (with no field path, shown as "<nil>") whenever it
// skipped the CEL rules because the object already failed the schema (wrong type,
// missing required field, unsupported enum value). It is a note, not an error of
// the manifest, and the samples' `# want:` lines leave it out.
const (
	skippedRulesField   = "<nil>"
	skippedRulesMessage = "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"
)

// notStored lists the leaves of sent (nulls aside: the API server prunes them) that
// stored lacks or holds with another value.
func notStored(path string, sent, stored any) []string {
	switch s := sent.(type) {
	case map[string]any:
		st, ok := stored.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: sent an object, stored %v", path, stored)}
		}
		var out []string
		for k, v := range s {
			if v == nil {
				continue
			}
			out = append(out, notStored(path+"."+k, v, st[k])...)
		}
		sort.Strings(out)
		return out
	case []any:
		st, ok := stored.([]any)
		if !ok || len(st) != len(s) {
			return []string{fmt.Sprintf("%s: sent %v, stored %v", path, sent, stored)}
		}
		var out []string
		for i := range s {
			out = append(out, notStored(fmt.Sprintf("%s[%d]", path, i), s[i], st[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(sent, stored) {
		return []string{fmt.Sprintf("%s: sent %#v, stored %#v", path, sent, stored)}
	}
	return nil
}

// warnings collects the API server's warning headers.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

// HandleWarningHeader implements rest.WarningHandler.
func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

// list returns the warnings so far.
func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.msgs...)
}

// dynamicClient is an administrator's dynamic client whose warnings go to w (or
// nowhere).
func dynamicClient(t *testing.T, w *warnings) dynamic.Interface {
	t.Helper()
	cfg := rest.CopyConfig(suite.Cluster.Config)
	cfg.WarningHandler = rest.NoWarnings{}
	if w != nil {
		cfg.WarningHandler = w
	}
	client, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// sample is one YAML document of a sample file.
type sample struct {
	name     string         // file#index (index from 1)
	obj      map[string]any // decoded as the API server decodes JSON
	comments map[string][]string
}

// object is a fresh copy of the sample for a client call.
func (s sample) object() *unstructured.Unstructured {
	return (&unstructured.Unstructured{Object: s.obj}).DeepCopy()
}

// resource is the sample's API resource, from its kind.
func (s sample) resource(t *testing.T) schema.GroupVersionResource {
	t.Helper()
	kind, _ := s.obj["kind"].(string)
	crd, err := manifests.Get(kind)
	if err != nil || crd.Kind != kind {
		t.Fatalf("unknown kind %q", kind)
	}
	return v1beta1.SchemeGroupVersion.WithResource(crd.Plural)
}

// readSamples reads every YAML document of every file matching glob, failing the
// test when nothing matches (a moved directory must not silently test nothing).
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
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			js, err := yaml.YAMLToJSON(doc)
			if err != nil {
				t.Fatalf("%s#%d: %v", f, i+1, err)
			}
			var obj map[string]any
			if err := utiljson.Unmarshal(js, &obj); err != nil {
				t.Fatalf("%s#%d: %v", f, i+1, err)
			}
			if obj == nil {
				continue // an empty document
			}
			out = append(out, sample{
				name: fmt.Sprintf("%s#%d", strings.TrimPrefix(f, "../"), i+1), obj: obj, comments: leadingComments(doc),
			})
		}
	}
	return out
}

// splitDocuments splits a YAML stream at "---" lines.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
	}
	docs = append(docs, cur.Bytes())
	var out [][]byte
	for _, d := range docs {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}

// leadingComments returns a document's leading "# key: value" lines by key.
func leadingComments(doc []byte) map[string][]string {
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(doc))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		rest, ok := strings.CutPrefix(line, "#")
		if !ok {
			break
		}
		key, value, ok := strings.Cut(strings.TrimSpace(rest), ": ")
		if ok && !strings.Contains(key, " ") {
			out[key] = append(out[key], value)
		}
	}
	return out
}
