package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRead(t *testing.T) {
	data := `
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
# only a comment
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "core.openfeature.dev/v1beta1", "kind": "FeatureFlag", "metadata": {"name": "checkout", "namespace": "shop"}},
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
]}
`
	objs, err := Read("objects.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	type view struct{ ID, Where string }
	var got []view
	for _, o := range objs {
		got = append(got, view{o.ID(), o.Where})
	}
	want := []view{{"ServiceAccount/shop/web", "objects.yaml#1"}, {"FeatureFlag/shop/checkout", "objects.yaml#3.items[0]"}, {"Namespace/shop", "objects.yaml#3.items[1]"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, bad := range []struct{ data, want string }{
		{"a: [", "objects.yaml#1:"},
		{"just: a map\n", "objects.yaml#1: not a Kubernetes object: apiVersion and kind are required"},
		{"- 1\n- 2\n", "objects.yaml#1: not a Kubernetes object"},
	} {
		if _, err := Read("objects.yaml", []byte(bad.data)); err == nil || !strings.HasPrefix(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want prefix %q", bad.data, err, bad.want)
		}
	}
}
