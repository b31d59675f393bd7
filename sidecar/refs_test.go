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

// TestParseRefQuotesBounded: a reference of any size (an annotation can hold
// 256 KiB) is refused with an error that quotes at most a bounded prefix of it, so
// a denial, and the webhook's log line of it, cannot be made large by the input.
func TestParseRefQuotesBounded(t *testing.T) {
	for _, in := range []string{strings.Repeat("f", 200<<10), "ns/" + strings.Repeat("n", 100<<10), strings.Repeat("x", 70<<10) + "/name",
		strings.Repeat("a/", 50<<10), strings.Repeat("é", 40<<10)} {
		_, err := ParseRefList("ok, "+in, "shop")
		if err == nil {
			t.Fatalf("%d bytes accepted", len(in))
		}
		if len(err.Error()) > 1024 {
			t.Errorf("the error about a %d-byte reference is %d bytes: %.200s", len(in), len(err.Error()), err)
		}
		if !strings.Contains(err.Error(), "bytes") {
			t.Errorf("the error does not say how long the reference was: %.300s", err)
		}
	}
	// Short values are quoted whole.
	if _, err := ParseRef("a/b/c", "shop"); err == nil || err.Error() != `"a/b/c": want name or namespace/name` {
		t.Errorf("err = %v", err)
	}
}
