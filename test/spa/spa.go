package spa

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // index.html
	"encoding/base64"
	"html"
	"net"
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

// App names the page served on one host, so that two apps behind one
// envoy-bff (the demo's shop on localhost, admin on 127.0.0.1) say which
// is which.
type App struct {
	// Host is the request's host, without a port (lower case).
	Host string
	// Name is shown as the page's heading and title.
	Name string
}

// The page's heading and title as embedded, replaced by an App's name.
const (
	headingHTML = `<h1 id="app-name">Sample app</h1>`
	titleHTML   = `<title>envoy-bff sample app</title>`
)

// named is the page with name as its heading and in its title. Only text
// outside the inline script and style changes, so the CSP's hashes hold.
func named(name string) []byte {
	n := html.EscapeString(name)
	page := bytes.Replace(indexHTML, []byte(headingHTML), []byte(`<h1 id="app-name">`+n+`</h1>`), 1)
	return bytes.Replace(page, []byte(titleHTML), []byte(`<title>`+n+` · envoy-bff sample app</title>`), 1)
}

// Handler serves the page at / , 204 at /favicon.ico and 404 elsewhere. On
// the host of one of apps, the page carries that app's name.
func Handler(apps ...App) http.Handler {
	csp := contentSecurityPolicy(indexHTML)
	pages := make(map[string][]byte, len(apps))
	for _, a := range apps {
		pages[strings.ToLower(a.Host)] = named(a.Name)
	}
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
			page, ok := pages[hostname(r.Host)]
			if !ok {
				page = indexHTML
			}
			_, _ = w.Write(page)
		case "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
}

// hostname is host without its port, in lower case.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(host)
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
