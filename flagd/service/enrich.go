package service

import (
	"maps"
	"net/http"
)

// Enricher adds flagd's configured context to each request's evaluation context:
// Static holds the --context-value pairs (always strings), Headers maps a request
// header name to a context key (--context-from-header). Later layers win: the
// request's own context, then the static values, then the header values.
type Enricher struct {
	Static  map[string]string
	Headers map[string]string
}

// Merge returns the evaluation context for a request. It never modifies base; when
// there is nothing to add it returns base itself, so the common case allocates nothing.
// header may be nil (schema.v1 and the sync API do not map headers).
func (e *Enricher) Merge(base map[string]any, header http.Header) map[string]any {
	if e == nil || (len(e.Static) == 0 && (len(e.Headers) == 0 || header == nil)) {
		return base
	}
	out := make(map[string]any, len(base)+len(e.Static)+len(e.Headers))
	maps.Copy(out, base)
	for k, v := range e.Static {
		out[k] = v
	}
	if header != nil {
		for name, key := range e.Headers {
			if v := header.Get(name); v != "" {
				out[key] = v
			}
		}
	}
	return out
}

// StaticContext returns the static values as a context map (for the sync API's
// sync_context and GetMetadata).
func (e *Enricher) StaticContext() map[string]any {
	out := map[string]any{}
	if e == nil {
		return out
	}
	for k, v := range e.Static {
		out[k] = v
	}
	return out
}
