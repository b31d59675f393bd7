package service

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnricherLayers(t *testing.T) {
	e := &Enricher{
		Static:  map[string]string{"env": "prod", "tier": "static"},
		Headers: map[string]string{"X-Tier": "tier", "X-Empty": "empty"},
	}
	h := http.Header{}
	h.Set("x-tier", "from-header") //nolint:canonicalheader // a client's lowercase name: header names match case-insensitively
	h.Set("X-Empty", "")
	base := map[string]any{"tier": "request", "targetingKey": "u"}
	got := e.Merge(base, h)
	want := map[string]any{"targetingKey": "u", "env": "prod", "tier": "from-header"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"tier": "request", "targetingKey": "u"}, base); diff != "" {
		t.Errorf("base context modified: %s", diff)
	}
	// no header mapping where flagd applies none (schema.v1, sync)
	if got := e.Merge(base, nil)["tier"]; got != "static" {
		t.Errorf("tier without headers = %v, want static", got)
	}
	// nothing configured: the request's own map, no copy
	var none *Enricher
	if diff := cmp.Diff(base, none.Merge(base, h)); diff != "" {
		t.Errorf("nil enricher changed the context: %s", diff)
	}
	if diff := cmp.Diff(map[string]any{"env": "prod", "tier": "static"}, e.StaticContext()); diff != "" {
		t.Errorf("static context: %s", diff)
	}
}
