package oidcflow

import (
	"net/http"
	"strings"
)

// corsMaxAge is how long a browser may reuse a preflight's answer, in seconds.
const corsMaxAge = "600"

// cors lets a page on a listed origin (Deps.AllowedOrigins) call the
// browser endpoints with credentials, as authz does for the APIs: it
// answers that origin's preflight itself (and reports done), and grants
// its other requests: the writer it returns sends Access-Control-Allow-*
// and Vary: Origin with the answer. Any other origin gets nothing, and its
// preflight is served as before (405).
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) (_ http.ResponseWriter, done bool) {
	origins := r.Header.Values("Origin")
	if len(origins) != 1 || !h.origins.Contains(origins[0]) || r.URL.Path == h.backchannelPath {
		return w, false
	}
	origin := origins[0]
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		grantOrigin(w.Header(), origin)
		return &varyOrigin{ResponseWriter: w}, false
	}
	method := strings.TrimSpace(r.Header.Get("Access-Control-Request-Method"))
	if method != http.MethodGet && method != http.MethodHead && method != http.MethodPost {
		return w, false // not granted: served like any other preflight
	}
	hdr := w.Header()
	grantOrigin(hdr, origin)
	hdr.Set("Access-Control-Allow-Methods", method)
	hdr.Set("Access-Control-Max-Age", corsMaxAge)
	hdr.Set("Cache-Control", "no-store")
	var allowed []string
	for _, line := range r.Header.Values("Access-Control-Request-Headers") {
		for name := range strings.SplitSeq(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if strings.EqualFold(name, h.antiforgery.Header) || name == "content-type" {
				allowed = append(allowed, name)
			}
		}
	}
	if len(allowed) > 0 {
		hdr.Set("Access-Control-Allow-Headers", strings.Join(allowed, ", "))
	}
	hdr.Set("Vary", "Origin")
	w.WriteHeader(http.StatusNoContent)
	return w, true
}

// grantOrigin lets origin's page read the answer, with credentials.
func grantOrigin(hdr http.Header, origin string) {
	hdr.Set("Access-Control-Allow-Origin", origin)
	hdr.Set("Access-Control-Allow-Credentials", "true")
}

// varyOrigin adds Origin to the answer's Vary as it is sent, whatever the
// endpoint set there itself (/user sets Vary: Cookie).
type varyOrigin struct {
	http.ResponseWriter
	sent bool
}

func (v *varyOrigin) WriteHeader(status int) {
	if !v.sent {
		v.sent = true
		v.Header().Add("Vary", "Origin")
	}
	v.ResponseWriter.WriteHeader(status)
}

func (v *varyOrigin) Write(p []byte) (int, error) {
	if !v.sent {
		v.WriteHeader(http.StatusOK)
	}
	return v.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (v *varyOrigin) Unwrap() http.ResponseWriter { return v.ResponseWriter }
