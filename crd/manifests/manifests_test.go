package manifests

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGet(t *testing.T) {
	cases := map[string]struct {
		name     string
		wantKind string
		wantErr  string
	}{
		"kind":             {name: "FeatureFlag", wantKind: "FeatureFlag"},
		"lower-case kind":  {name: "flagd", wantKind: "Flagd"},
		"plural":           {name: "inprocessconfigurations", wantKind: "InProcessConfiguration"},
		"short name":       {name: "ffs", wantKind: "FeatureFlagSource"},
		"upper short name": {name: "FF", wantKind: "FeatureFlag"},
		"CRD name":         {name: "flagds.core.openfeature.dev", wantKind: "Flagd"},
		"unknown": {
			name:    "fsc",
			wantErr: `no CRD named "fsc"; known kinds: FeatureFlag, FeatureFlagSource, Flagd, InProcessConfiguration`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			crd, err := Get(tc.name)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if d := cmp.Diff(tc.wantErr, gotErr); d != "" {
				t.Fatalf("error (-want +got):\n%s", d)
			}
			if crd.Kind != tc.wantKind {
				t.Errorf("kind %q, want %q", crd.Kind, tc.wantKind)
			}
		})
	}
}

func TestCRDs(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	type names struct {
		Name, Kind, Plural, Singular string
		ShortNames                   []string
	}
	var got []names
	for _, c := range crds {
		got = append(got, names{c.Name, c.Kind, c.Plural, c.Singular, c.ShortNames})
	}
	want := []names{
		{"featureflags.core.openfeature.dev", "FeatureFlag", "featureflags", "featureflag", []string{"ff"}},
		{"featureflagsources.core.openfeature.dev", "FeatureFlagSource", "featureflagsources", "featureflagsource", []string{"ffs"}},
		{"flagds.core.openfeature.dev", "Flagd", "flagds", "flagd", nil},
		{"inprocessconfigurations.core.openfeature.dev", "InProcessConfiguration", "inprocessconfigurations", "inprocessconfiguration", nil},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CRDs (-want +got):\n%s", d)
	}
}
