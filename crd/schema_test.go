package crd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/flagpole-dev/flagpole/crd/apis/core/v1beta1"
	"github.com/flagpole-dev/flagpole/crd/flagdoc"
	"github.com/flagpole-dev/flagpole/flagd/flags"
)

const (
	examplesGlob = "../deploy/examples/crds/*.yaml"
	ofoGlob      = "testdata/ofo/*.yaml"
	invalidGlob  = "testdata/invalid/*.yaml"
)

// TestCRDsPassAPIServerValidation runs the checks kube-apiserver runs when the CRDs
// are created: structural schema, defaults valid against the schema, CEL rules that
// compile and fit the cost budget, printer columns, names.
func TestCRDsPassAPIServerValidation(t *testing.T) {
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	if len(crds) != 4 {
		t.Fatalf("want 4 CRDs, have %d", len(crds))
	}
	for _, crd := range crds {
		t.Run(crd.Name, func(t *testing.T) {
			if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd); len(errs) > 0 {
				t.Errorf("the API server would refuse the CRD:\n%s", errs.ToAggregate())
			}
		})
	}
}

// crdSummary is what kubectl users see of a CRD besides its schema.
type crdSummary struct {
	Group, Scope, Plural, Singular string
	ShortNames, Categories         []string
	Versions                       []string
	StatusSubresource              bool
	Columns                        []string // name=jsonPath
}

func TestCRDNamesAndColumns(t *testing.T) {
	const ready = `.status.conditions[?(@.type=="Ready")].status`
	want := map[string]crdSummary{
		"FeatureFlag": {
			Group: v1beta1.GroupName, Scope: "Namespaced", Plural: "featureflags", Singular: "featureflag",
			ShortNames: []string{"ff"}, Categories: []string{"openfeature"}, Versions: []string{"v1beta1"}, StatusSubresource: true,
			Columns: []string{"Flags=.status.flagCount", "Ready=" + ready, `Reason=.status.conditions[?(@.type=="Ready")].reason`, "Age=.metadata.creationTimestamp"},
		},
		"FeatureFlagSource": {
			Group: v1beta1.GroupName, Scope: "Namespaced", Plural: "featureflagsources", Singular: "featureflagsource",
			ShortNames: []string{"ffs"}, Categories: []string{"openfeature"}, Versions: []string{"v1beta1"}, StatusSubresource: true,
			Columns: []string{"Sources=.spec.sources[*].source", "Ready=" + ready, "Age=.metadata.creationTimestamp"},
		},
		"Flagd": {
			Group: v1beta1.GroupName, Scope: "Namespaced", Plural: "flagds", Singular: "flagd",
			Categories: []string{"openfeature"}, Versions: []string{"v1beta1"}, StatusSubresource: true,
			Columns: []string{"Replicas=.spec.replicas", "Available=.status.readyReplicas", "Ready=" + ready, `Reason=.status.conditions[?(@.type=="Ready")].reason`, "Address=.status.address", "Source=.spec.featureFlagSource", "Age=.metadata.creationTimestamp"},
		},
		"InProcessConfiguration": {
			Group: v1beta1.GroupName, Scope: "Namespaced", Plural: "inprocessconfigurations", Singular: "inprocessconfiguration",
			Categories: []string{"openfeature"}, Versions: []string{"v1beta1"}, StatusSubresource: true,
			Columns: []string{"Host=.spec.host", "Port=.spec.port", "Age=.metadata.creationTimestamp"},
		},
	}
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]crdSummary{}
	for _, crd := range crds {
		s := crdSummary{
			Group: crd.Spec.Group, Scope: string(crd.Spec.Scope), Plural: crd.Spec.Names.Plural, Singular: crd.Spec.Names.Singular,
			ShortNames: crd.Spec.Names.ShortNames, Categories: crd.Spec.Names.Categories,
		}
		// The internal version keeps subresources and columns shared by every version
		// at the top level.
		subresources, columns := crd.Spec.Subresources, crd.Spec.AdditionalPrinterColumns
		for _, v := range crd.Spec.Versions {
			if v.Served && v.Storage {
				s.Versions = append(s.Versions, v.Name)
			}
			if v.Subresources != nil {
				subresources = v.Subresources
			}
			columns = append(columns, v.AdditionalPrinterColumns...)
		}
		s.StatusSubresource = subresources != nil && subresources.Status != nil
		for _, c := range columns {
			s.Columns = append(s.Columns, c.Name+"="+c.JSONPath)
		}
		got[crd.Spec.Names.Kind] = s
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CRDs (-want +got):\n%s", d)
	}
}

// TestEveryFieldIsDescribed keeps kubectl explain useful: every property of every
// schema has a description.
func TestEveryFieldIsDescribed(t *testing.T) {
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		s, err := apiextensions.GetSchemaForVersion(crd, "v1beta1")
		if err != nil {
			t.Fatal(err)
		}
		var missing []string
		walkProperties(s.OpenAPIV3Schema, crd.Spec.Names.Kind, func(path string, p *apiextensions.JSONSchemaProps) {
			if p.Description == "" && !strings.HasSuffix(path, ".metadata") {
				missing = append(missing, path)
			}
		})
		for _, m := range missing {
			t.Errorf("%s has no description", m)
		}
	}
}

func walkProperties(s *apiextensions.JSONSchemaProps, path string, visit func(string, *apiextensions.JSONSchemaProps)) {
	if s == nil {
		return
	}
	names := make([]string, 0, len(s.Properties))
	for n := range s.Properties {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := s.Properties[n]
		visit(path+"."+n, &p)
		walkProperties(&p, path+"."+n, visit)
	}
	if s.Items != nil {
		walkProperties(s.Items.Schema, path+"[]", visit)
	}
	if s.AdditionalProperties != nil {
		walkProperties(s.AdditionalProperties.Schema, path+"{}", visit)
	}
}

// TestValidSamples admits the examples shipped under deploy/examples/crds and the
// OpenFeature Operator style manifests in testdata/ofo: nothing is pruned (they apply
// unchanged), nothing is refused, flag documents pass flagd's strict parser, and the
// Go types hold every field (decode, encode, compare).
func TestValidSamples(t *testing.T) {
	validators := loadValidators(t)
	samples := append(readSamples(t, examplesGlob), readSamples(t, ofoGlob)...)
	kinds := map[string]int{}
	for _, s := range samples {
		kinds[s.kind()]++
		t.Run(s.name, func(t *testing.T) {
			v, ok := validators[s.kind()]
			if !ok {
				t.Fatalf("unknown kind %q", s.kind())
			}
			adm := v.admit(s.obj)
			if msgs := adm.messages(); len(msgs) > 0 {
				t.Fatalf("the API server would refuse or change it:\n%s", strings.Join(msgs, "\n"))
			}
			if s.kind() == "FeatureFlag" {
				if err := parseFlagSpec(adm.obj); err != nil {
					t.Errorf("flagd's strict parser refuses spec.flagSpec: %v", err)
				}
			}
			if d := typedRoundTrip(t, v, adm.obj); d != "" {
				t.Errorf("decoding into the Go type and encoding again changes it (-stored +typed):\n%s", d)
			}
		})
	}
	for _, k := range []string{"FeatureFlag", "FeatureFlagSource", "Flagd", "InProcessConfiguration"} {
		if kinds[k] < 2 {
			t.Errorf("only %d valid samples of %s", kinds[k], k)
		}
	}
}

// parseFlagSpec runs the validating webhook's check (crd/flagdoc: spec.flagSpec
// through flagd's strict parser) on a stored FeatureFlag.
func parseFlagSpec(obj map[string]any) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var ff v1beta1.FeatureFlag
	if err := json.Unmarshal(data, &ff); err != nil {
		return err
	}
	if problems := flagdoc.Validate(&ff.Spec.FlagSpec); problems != nil {
		return problems
	}
	return nil
}

// typedRoundTrip decodes the stored obj into its Go type (refusing unknown fields),
// encodes it again as a typed client would send it, admits that and returns the
// difference with obj. Nulls, empty objects and false are ignored: the Go types add
// the first two without meaning anything, and omit false where it means the same as
// absent (a bool whose default is true would show up here as true).
func typedRoundTrip(t *testing.T, v *kindValidator, obj map[string]any) string {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	kind, _ := obj["kind"].(string)
	typed, err := scheme.New(v1beta1.SchemeGroupVersion.WithKind(kind))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(typed); err != nil {
		t.Fatalf("decoding into %T: %v", typed, err)
	}
	back, err := json.Marshal(typed)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := utiljson.Unmarshal(back, &got); err != nil {
		t.Fatal(err)
	}
	adm := v.admit(got)
	if msgs := adm.messages(); len(msgs) > 0 {
		t.Fatalf("the typed client's version is refused:\n%s", strings.Join(msgs, "\n"))
	}
	return cmp.Diff(dropEmpty(obj), dropEmpty(adm.obj))
}

// dropEmpty removes nulls, false and empty objects (see typedRoundTrip).
func dropEmpty(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			x = dropEmpty(x)
			if m, ok := x.(map[string]any); x == nil || x == false || (ok && len(m) == 0) {
				continue
			}
			out[k] = x
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropEmpty(x)
		}
		return out
	}
	return v
}

// TestInvalidSamples checks that each manifest in testdata/invalid is refused with
// exactly the errors its "# want:" lines give, or, for "# want-flagd:" lines, passes
// the schema and is refused by flagd's strict parser with exactly those problems.
func TestInvalidSamples(t *testing.T) {
	validators := loadValidators(t)
	samples := readSamples(t, invalidGlob)
	for _, s := range samples {
		t.Run(filepath.Base(s.name), func(t *testing.T) {
			want, wantFlagd := s.comments["want"], s.comments["want-flagd"]
			if len(want) == 0 && len(wantFlagd) == 0 {
				t.Fatal("no # want: or # want-flagd: line")
			}
			v, ok := validators[s.kind()]
			if !ok {
				t.Fatalf("unknown kind %q", s.kind())
			}
			adm := v.admit(s.obj)
			got := adm.messages()
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("API server errors (-want +got):\n%s", d)
			}
			if len(wantFlagd) == 0 {
				return
			}
			var gotFlagd []string
			var problems flags.Problems
			if err := parseFlagSpec(adm.obj); errors.As(err, &problems) {
				for _, p := range problems {
					gotFlagd = append(gotFlagd, p.String())
				}
			} else if err != nil {
				gotFlagd = []string{err.Error()}
			}
			if d := cmp.Diff(wantFlagd, gotFlagd); d != "" {
				t.Errorf("flagd strict parser problems (-want +got):\n%s", d)
			}
		})
	}
}

// TestDefaults checks the defaults of each kind, which are OpenFeature Operator's,
// from a manifest and from a Go value whose unset fields are zero values (OFO's tags
// lacked omitempty, so a typed client sent zeros and the defaults never applied).
func TestDefaults(t *testing.T) {
	validators := loadValidators(t)
	ffsDefaults := map[string]any{
		"managementPort": int64(8014), "port": int64(8013), "ofrepPort": int64(8016),
		"evaluator": "json", "logFormat": "json", "envVarPrefix": "FLAGD",
		"rolloutOnChange": false, "probesEnabled": true, "debugLogging": false,
		"sources": []any{map[string]any{"source": "my-flags"}},
	}
	cases := map[string]struct {
		yaml  string
		typed any
		want  map[string]any // spec after admission
	}{
		"FeatureFlagSource": {
			yaml: `{apiVersion: core.openfeature.dev/v1beta1, kind: FeatureFlagSource, metadata: {name: x}, spec: {sources: [{source: my-flags}]}}`,
			typed: &v1beta1.FeatureFlagSource{
				TypeMeta:   metav1.TypeMeta{APIVersion: "core.openfeature.dev/v1beta1", Kind: "FeatureFlagSource"},
				ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec:       v1beta1.FeatureFlagSourceSpec{Sources: []v1beta1.Source{{Source: "my-flags"}}},
			},
			want: ffsDefaults,
		},
		"InProcessConfiguration": {
			yaml: `{apiVersion: core.openfeature.dev/v1beta1, kind: InProcessConfiguration, metadata: {name: x}}`,
			typed: &v1beta1.InProcessConfiguration{
				TypeMeta:   metav1.TypeMeta{APIVersion: "core.openfeature.dev/v1beta1", Kind: "InProcessConfiguration"},
				ObjectMeta: metav1.ObjectMeta{Name: "x"},
			},
			want: map[string]any{
				"port": int64(8015), "host": "localhost", "tls": false, "cache": "lru",
				"cacheMaxSize": int64(1000), "envVarPrefix": "FLAGD",
			},
		},
		"Flagd": {
			yaml: `{apiVersion: core.openfeature.dev/v1beta1, kind: Flagd, metadata: {name: x}, spec: {featureFlagSource: s, ingress: {hosts: [""]}, gatewayApiRoutes: {parentRefs: [{name: gw}]}}}`,
			typed: &v1beta1.Flagd{
				TypeMeta:   metav1.TypeMeta{APIVersion: "core.openfeature.dev/v1beta1", Kind: "Flagd"},
				ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: v1beta1.FlagdSpec{
					FeatureFlagSource: "s",
					Ingress:           &v1beta1.IngressSpec{Hosts: []string{""}},
					GatewayAPIRoutes:  &v1beta1.GatewayAPISpec{ParentRefs: []v1beta1.ParentReference{{Name: "gw"}}},
				},
			},
			want: map[string]any{
				"featureFlagSource": "s", "replicas": int64(1), "serviceType": "ClusterIP",
				"ingress": map[string]any{
					"hosts": []any{""}, "pathType": "Prefix", "flagdPath": "/flagd.evaluation.v1.Service",
					"ofrepPath": "/ofrep", "syncPath": "/flagd.sync.v1.Service",
				},
				"gatewayApiRoutes": map[string]any{
					"parentRefs": []any{map[string]any{"name": "gw", "group": "gateway.networking.k8s.io", "kind": "Gateway"}},
				},
			},
		},
		"FeatureFlag with a null defaultVariant (flagd's code default)": {
			yaml: `{apiVersion: core.openfeature.dev/v1beta1, kind: FeatureFlag, metadata: {name: x}, spec: {flagSpec: {flags: {f: {state: ENABLED, variants: {a: 1}, defaultVariant: null, targeting: null}}}}}`,
			typed: &v1beta1.FeatureFlag{
				TypeMeta:   metav1.TypeMeta{APIVersion: "core.openfeature.dev/v1beta1", Kind: "FeatureFlag"},
				ObjectMeta: metav1.ObjectMeta{Name: "x"},
				Spec: v1beta1.FeatureFlagSpec{FlagSpec: v1beta1.FlagSpec{Flags: map[string]v1beta1.Flag{
					"f": {State: "ENABLED", Variants: json.RawMessage(`{"a":1}`)},
				}}},
			},
			want: map[string]any{"flagSpec": map[string]any{"flags": map[string]any{
				"f": map[string]any{"state": "ENABLED", "variants": map[string]any{"a": int64(1)}},
			}}},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			fromYAML, err := decodeYAML([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(tc.typed)
			if err != nil {
				t.Fatal(err)
			}
			var fromGo map[string]any
			if err := utiljson.Unmarshal(data, &fromGo); err != nil {
				t.Fatal(err)
			}
			for src, obj := range map[string]map[string]any{"manifest": fromYAML, "Go value": fromGo} {
				kind, _ := obj["kind"].(string)
				adm := validators[kind].admit(obj)
				if msgs := adm.messages(); len(msgs) > 0 {
					t.Fatalf("%s refused:\n%s", src, strings.Join(msgs, "\n"))
				}
				if d := cmp.Diff(tc.want, dropNulls(adm.obj["spec"])); d != "" {
					t.Errorf("%s: spec after defaulting (-want +got):\n%s", src, d)
				}
			}
		})
	}
}

// dropNulls removes nulls and empty objects.
func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			x = dropNulls(x)
			if m, ok := x.(map[string]any); x == nil || (ok && len(m) == 0) {
				continue
			}
			out[k] = x
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = dropNulls(x)
		}
		return out
	}
	return v
}

// TestDefaultVariantRuleIsNotExpressible documents why the CRD does not check that
// defaultVariant names one of the variants: variant values are schemaless (any JSON),
// and CEL cannot see the keys of a schemaless object, so the API server refuses such
// a rule. The validating webhook checks it with flagd's parser instead (see the
// want-flagd samples).
func TestDefaultVariantRuleIsNotExpressible(t *testing.T) {
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if crd.Spec.Names.Kind != "FeatureFlag" {
			continue
		}
		s, err := apiextensions.GetSchemaForVersion(crd, "v1beta1")
		if err != nil {
			t.Fatal(err)
		}
		flag := s.OpenAPIV3Schema.Properties["spec"].Properties["flagSpec"].Properties["flags"].AdditionalProperties.Schema
		flag.XValidations = apiextensions.ValidationRules{{Rule: "!has(self.defaultVariant) || self.defaultVariant in self.variants"}}
		errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), crd)
		if len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "compilation failed") {
			t.Fatalf("the rule compiles now (errors: %v): add it to the CRD and update docs/api.md", errs)
		}
		return
	}
	t.Fatal("no FeatureFlag CRD")
}

// TestManifestsMatchKinds ties the embedded manifests to the Go types: every kind the
// scheme knows has a CRD.
func TestManifestsMatchKinds(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for gvk := range scheme.KnownTypes(v1beta1.SchemeGroupVersion) {
		if !strings.HasSuffix(gvk, "List") && !isMetaKind(gvk) {
			kinds = append(kinds, gvk)
		}
	}
	sort.Strings(kinds)
	crds, err := internalCRDs()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range crds {
		got = append(got, c.Spec.Names.Kind)
	}
	sort.Strings(got)
	if d := cmp.Diff(kinds, got); d != "" {
		t.Errorf("kinds (-scheme +manifests):\n%s", d)
	}
}

// isMetaKind reports the kinds metav1.AddToGroupVersion registers in every group.
func isMetaKind(kind string) bool {
	switch kind {
	case "WatchEvent", "GetOptions", "ListOptions", "DeleteOptions", "CreateOptions", "UpdateOptions", "PatchOptions":
		return true
	}
	return false
}
