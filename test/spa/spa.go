package spa

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // index.html
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
)

// indexHTML is the whole app.
//
//go:embed index.html
var indexHTML []byte

// IndexHTML returns a copy of the page, for tests and tools.
func IndexHTML() []byte { return bytes.Clone(indexHTML) }

// inlineRE finds the inline <script> and <style> bodies that the CSP pins by hash.
var inlineRE = regexp.MustCompile(`(?s)<(script|style)>(.*?)</(?:script|style)>`)

// Handler serves the page at / , 204 at /favicon.ico and 404 elsewhere.
func Handler() http.Handler {
	csp := contentSecurityPolicy(indexHTML)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		// Client-side routes (/app/orders) get the page too, as every SPA
		// host does; only file-like paths (with a dot) are 404s.
		if !strings.Contains(path[strings.LastIndex(path, "/")+1:], ".") {
			path = "/"
		}
		switch path {
		case "/":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			h := w.Header()
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("Content-Security-Policy", csp)
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Referrer-Policy", "no-referrer")
			h.Set("X-Frame-Options", "DENY")
			if r.Method == http.MethodHead {
				return
			}
			_, _ = w.Write(indexHTML)
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
}

// contentSecurityPolicy allows exactly the page's inline script and style, and same-origin fetches.
func contentSecurityPolicy(page []byte) string {
	hashes := map[string][]string{}
	for _, m := range inlineRE.FindAllSubmatch(page, -1) {
		sum := sha256.Sum256(m[2])
		hashes[string(m[1])] = append(hashes[string(m[1])], "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	}
	return strings.Join([]string{
		"default-src 'none'",
		"script-src " + strings.Join(hashes["script"], " "),
		"style-src " + strings.Join(hashes["style"], " "),
		"connect-src 'self'",
		"img-src 'self'",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
}
