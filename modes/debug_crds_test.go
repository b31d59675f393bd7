package modes

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/flagpole-dev/flagpole/crd/manifests"
)

func TestDebugCRDs(t *testing.T) {
	cases := map[string]struct {
		kinds   []string
		want    []string // metadata.name of each document, in order
		wantErr string
	}{
		"all": {
			want: []string{
				"featureflags.core.openfeature.dev",
				"featureflagsources.core.openfeature.dev",
				"flagds.core.openfeature.dev",
				"inprocessconfigurations.core.openfeature.dev",
			},
		},
		"short name": {kinds: []string{"ff"}, want: []string{"featureflags.core.openfeature.dev"}},
		"kind, plural, any case, in CRD order": {
			kinds: []string{"InProcessConfigurations", "featureflagsource", "FLAGD"},
			want: []string{
				"featureflagsources.core.openfeature.dev",
				"flagds.core.openfeature.dev",
				"inprocessconfigurations.core.openfeature.dev",
			},
		},
		"repeated": {kinds: []string{"ffs", "FeatureFlagSource"}, want: []string{"featureflagsources.core.openfeature.dev"}},
		"unknown kind prints nothing": {
			kinds:   []string{"ff", "featureflagconfiguration"},
			wantErr: `no CRD named "featureflagconfiguration"; known kinds: FeatureFlag, FeatureFlagSource, Flagd, InProcessConfiguration`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := DebugCRDsCmd{Kinds: tc.kinds}
			err := cmd.Run(Stdio{In: strings.NewReader(""), Out: &out, Err: &errOut})
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if gotErr != tc.wantErr {
				t.Fatalf("error %q, want %q", gotErr, tc.wantErr)
			}
			if d := cmp.Diff(tc.want, crdNames(t, out.Bytes())); d != "" {
				t.Errorf("documents (-want +got):\n%s", d)
			}
			if errOut.Len() > 0 {
				t.Errorf("wrote to stderr: %s", errOut.String())
			}
		})
	}
}

// TestDebugCRDsPrintsTheEmbeddedManifests checks that the whole stream is the embedded
// manifests byte for byte, so that kubectl apply gets exactly what was generated.
func TestDebugCRDsPrintsTheEmbeddedManifests(t *testing.T) {
	var out bytes.Buffer
	if err := (&DebugCRDsCmd{}).Run(Stdio{Out: &out, Err: io.Discard}); err != nil {
		t.Fatal(err)
	}
	all, err := manifests.All()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), all) {
		t.Errorf("output differs from manifests.All():\n%s", cmp.Diff(string(all), out.String()))
	}
	if !bytes.HasPrefix(all, []byte("---\n")) {
		t.Errorf("the stream does not start with a document separator")
	}
}

// crdNames splits a YAML stream and returns each document's kind-checked name.
func crdNames(t *testing.T, stream []byte) []string {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var names []string
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var crd struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &crd); err != nil {
			t.Fatal(err)
		}
		if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" {
			t.Errorf("document %s is a %s %s", crd.Metadata.Name, crd.APIVersion, crd.Kind)
		}
		names = append(names, crd.Metadata.Name)
	}
}
