package ofrep

import (
	"net/http"
	"strings"
)

// corsPolicy answers browsers for the configured origins only. Unlike flagd (rs/cors
// with an empty list, which allows every origin), no configured origin means no CORS
// headers at all. An origin entry is matched case-insensitively; "*" allows every
// origin, and one "*" inside an entry ("https://*.example.com") matches any text
// there, as rs/cors does.
type corsPolicy struct {
	any      bool
	exact    map[string]bool
	patterns []originPattern
}

type originPattern struct{ prefix, suffix string }

func newCORS(origins []string) *corsPolicy {
	if len(origins) == 0 {
		return nil
	}
	p := &corsPolicy{exact: map[string]bool{}}
	for _, o := range origins {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "":
		case o == "*":
			p.any = true
		case strings.Contains(o, "*"):
			prefix, suffix, _ := strings.Cut(o, "*")
			p.patterns = append(p.patterns, originPattern{prefix: prefix, suffix: suffix})
		default:
			p.exact[o] = true
		}
	}
	return p
}

func (p *corsPolicy) allowed(origin string) bool {
	if p.any {
		return true
	}
	o := strings.ToLower(origin)
	if p.exact[o] {
		return true
	}
	for _, pat := range p.patterns {
		if len(o) >= len(pat.prefix)+len(pat.suffix) && strings.HasPrefix(o, pat.prefix) && strings.HasSuffix(o, pat.suffix) {
			return true
		}
	}
	return false
}

// handle sets the CORS response headers. It reports true when the request was a
// preflight and has been answered.
func (p *corsPolicy) handle(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	h := w.Header()
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		if origin != "" && p.allowed(origin) && r.Header.Get("Access-Control-Request-Method") == http.MethodPost {
			p.allowOrigin(h, origin)
			h.Set("Access-Control-Allow-Methods", http.MethodPost)
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req) // flagd allows every request header
			}
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	if origin == "" {
		return false
	}
	h.Add("Vary", "Origin")
	if p.allowed(origin) {
		p.allowOrigin(h, origin)
		h.Set("Access-Control-Expose-Headers", "ETag")
	}
	return false
}

func (p *corsPolicy) allowOrigin(h http.Header, origin string) {
	if p.any {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
}
