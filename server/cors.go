package server

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// CORS is the one cross-origin policy of every listener (--cors-origin): an entry
// is an origin matched case-insensitively, "*" allows every origin, and one "*"
// inside an entry ("https://*.example.com") matches any text there, as flagd's
// rs/cors does. Unlike flagd (rs/cors with an empty list allows every origin), no
// configured origin means no CORS headers at all, so browsers block cross-origin
// reads. A nil *CORS allows nothing.
type CORS struct {
	any      bool
	exact    map[string]bool
	patterns []originPattern
}

type originPattern struct{ prefix, suffix string }

// NewCORS builds the policy for origins; it returns nil when origins holds no entry.
func NewCORS(origins []string) *CORS {
	p := &CORS{exact: map[string]bool{}}
	empty := true
	for _, o := range origins {
		o = strings.ToLower(strings.TrimSpace(o))
		switch {
		case o == "":
			continue
		case o == "*":
			p.any = true
		case strings.Contains(o, "*"):
			prefix, suffix, _ := strings.Cut(o, "*")
			p.patterns = append(p.patterns, originPattern{prefix: prefix, suffix: suffix})
		default:
			p.exact[o] = true
		}
		empty = false
	}
	if empty {
		return nil
	}
	return p
}

// Allowed reports whether a browser page from origin may read responses.
func (p *CORS) Allowed(origin string) bool {
	if p == nil || origin == "" {
		return false
	}
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

// CORSRules is what one listener allows an allowed origin to do.
type CORSRules struct {
	Methods       []string // methods a preflight may ask for
	ExposeHeaders string   // Access-Control-Expose-Headers on actual responses
	MaxAge        int      // seconds a preflight answer may be cached; 0 sends none
}

// Handler wraps next with the policy: preflights (OPTIONS with
// Access-Control-Request-Method) are answered 204 here, with the Access-Control-*
// headers only for an allowed origin asking for one of rules.Methods (every request
// header is allowed, as flagd); other requests from an allowed origin get
// Access-Control-Allow-Origin and the exposed headers. A nil policy returns next.
func (p *CORS) Handler(rules CORSRules, next http.Handler) http.Handler {
	if p == nil {
		return next
	}
	methods := make([]string, len(rules.Methods))
	for i, m := range rules.Methods {
		methods[i] = strings.ToUpper(m)
	}
	maxAge := ""
	if rules.MaxAge > 0 {
		maxAge = strconv.Itoa(rules.MaxAge)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Origin")
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			method := strings.ToUpper(r.Header.Get("Access-Control-Request-Method"))
			if p.Allowed(origin) && slices.Contains(methods, method) {
				p.allowOrigin(h, origin)
				h.Set("Access-Control-Allow-Methods", method)
				if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
					h.Set("Access-Control-Allow-Headers", req)
				}
				if maxAge != "" {
					h.Set("Access-Control-Max-Age", maxAge)
				}
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if origin != "" {
			h.Add("Vary", "Origin")
			if p.Allowed(origin) {
				p.allowOrigin(h, origin)
				if rules.ExposeHeaders != "" {
					h.Set("Access-Control-Expose-Headers", rules.ExposeHeaders)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (p *CORS) allowOrigin(h http.Header, origin string) {
	if p.any {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
}
