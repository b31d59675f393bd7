package evaluation

import (
	"net/http"
	"slices"
	"strings"
)

// corsExposed are the response headers browsers may read (flagd's list).
const corsExposed = "Accept, Accept-Encoding, Accept-Post, Connect-Accept-Encoding, Connect-Content-Encoding, " +
	"Content-Encoding, Grpc-Accept-Encoding, Grpc-Encoding, Grpc-Message, Grpc-Status, Grpc-Status-Details-Bin"

// corsMethod reports whether a preflight may ask for method (flagd's rs/cors setting).
func corsMethod(method string) bool {
	switch method {
	case http.MethodHead, http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// cors answers CORS like flagd's rs/cors middleware (allowed methods HEAD GET POST
// PUT PATCH DELETE, every request header, flagd's exposed headers), but only for
// the configured origins: an origin that is not listed gets no Access-Control-*
// header, so the browser blocks it.
type cors struct {
	all     bool
	origins []string
	next    http.Handler
}

func newCORS(origins []string, next http.Handler) *cors {
	c := &cors{next: next}
	for _, o := range origins {
		if o == "*" {
			c.all = true
		}
		c.origins = append(c.origins, strings.ToLower(o))
	}
	return c
}

func (c *cors) allowed(origin string) bool {
	return c.all || slices.Contains(c.origins, strings.ToLower(origin))
}

func (c *cors) allowOrigin(origin string) string {
	if c.all {
		return "*"
	}
	return origin
}

func (c *cors) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h := w.Header()
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		method := strings.ToUpper(r.Header.Get("Access-Control-Request-Method"))
		if origin != "" && c.allowed(origin) && corsMethod(method) {
			h.Set("Access-Control-Allow-Origin", c.allowOrigin(origin))
			h.Set("Access-Control-Allow-Methods", method)
			if reqHeaders := r.Header.Get("Access-Control-Request-Headers"); reqHeaders != "" {
				h.Set("Access-Control-Allow-Headers", reqHeaders)
			}
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if origin != "" {
		h := w.Header()
		h.Add("Vary", "Origin")
		if c.allowed(origin) {
			h.Set("Access-Control-Allow-Origin", c.allowOrigin(origin))
			h.Set("Access-Control-Expose-Headers", corsExposed)
		}
	}
	c.next.ServeHTTP(w, r)
}
