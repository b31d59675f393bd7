package sidecar

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRefList(t *testing.T) {
	cases := []struct {
		in      string
		want    []Ref
		wantErr string
	}{
		{in: "a", want: []Ref{{"pods", "a"}}},
		{in: " a , other/b ,, ", want: []Ref{{"pods", "a"}, {"other", "b"}}},
		{in: "", want: nil},
		{in: "a/b/c", wantErr: `"a/b/c": want name or namespace/name`},
		{in: "Bad", wantErr: `"Bad": name "Bad": a lowercase RFC 1123 subdomain`},
		{in: "ns.x/a", wantErr: `"ns.x/a": namespace "ns.x": must not contain dots`},
		{in: "/a", wantErr: `"/a": namespace "": a lowercase RFC 1123 label`},
	}
	for _, tc := range cases {
		got, err := ParseRefList(tc.in, "pods")
		if tc.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want prefix %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

// TestNamesAreUnambiguous: names joining a namespace and a name keep apart the
// pairs a dash would merge ("a-b"/"c" and "a"/"b-c").
func TestNamesAreUnambiguous(t *testing.T) {
	one, other := Ref{Namespace: "a-b", Name: "c"}, Ref{Namespace: "a", Name: "b-c"}
	if GrantName(one) == GrantName(other) {
		t.Errorf("GrantName: %s and %s share %q", one, other, GrantName(one))
	}
	if got := GrantName(Ref{Namespace: "shop", Name: "web"}); got != "flagpole-featureflags-shop.web" {
		t.Errorf("GrantName(shop/web) = %q", got)
	}
}
