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
	"strconv"
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

// App names the page served on one host (and path prefix), so that two
// apps behind one envoy-bff (the demo's shop on localhost, admin on
// 127.0.0.1) say which is which, and an app under a path prefix calls its
// own endpoints.
type App struct {
	// Host is the request's host, without a port (lower case); empty, any
	// host that no App names.
	Host string
	// Name is shown as the page's heading and title.
	Name string
	// PathPrefix is the app's path prefix: "/" (or empty), or plain
	// segments between slashes ("/partner/"). Under it the page carries it
	// in the body's data-base and calls <prefix>bff/… and <prefix>api/…;
	// the longest prefix of a path wins. Any other form panics.
	PathPrefix string
	// SilentLogin makes the page try a silent login (prompt=none) when a
	// load finds no session (data-silent-login="on").
	SilentLogin bool
}

// appPrefixRE is what a path prefix may be: as the page itself accepts in
// data-base, so that it needs no escaping.
var appPrefixRE = regexp.MustCompile(`^/([A-Za-z0-9._~-]+/)*$`)

// The page's heading and title as embedded, replaced by an App's name.
const (
	headingHTML = `<h1 id="app-name">Sample app</h1>`
	titleHTML   = `<title>envoy-bff sample app</title>`
)

// named is the page with name as its heading and in its title, and prefix
// as its data-base. Only text outside the inline script and style changes,
// so the CSP's hashes hold.
func named(name, prefix string, silent bool) []byte {
	n := html.EscapeString(name)
	page := bytes.Replace(indexHTML, []byte(headingHTML), []byte(`<h1 id="app-name">`+n+`</h1>`), 1)
	attrs := `data-base="` + prefix + `"`
	if silent {
		attrs += ` data-silent-login="on"`
	}
	page = bytes.Replace(page, []byte(`data-base="/"`), []byte(attrs), 1)
	return bytes.Replace(page, []byte(titleHTML), []byte(`<title>`+n+` · envoy-bff sample app</title>`), 1)
}

// appPage is one App's copy of the page.
type appPage struct {
	host, prefix string
	page         []byte
}

// pick is the page for host and path: among the apps of host, else those
// without a host, the one with the longest prefix of path; else the plain
// page under "/".
func pick(pages []appPage, host, path string) (page []byte, prefix string) {
	for _, h := range []string{host, ""} {
		for _, p := range pages {
			if p.host == h && strings.HasPrefix(path, p.prefix) && len(p.prefix) > len(prefix) {
				page, prefix = p.page, p.prefix
			}
		}
		if page != nil {
			return page, prefix
		}
	}
	return indexHTML, "/"
}

// Handler serves the page at / , 204 at /favicon.ico and 404 elsewhere,
// each under an app's path prefix too. On the host (and under the path
// prefix) of one of apps, the page carries that app's name and prefix.
func Handler(apps ...App) http.Handler {
	csp := contentSecurityPolicy(indexHTML)
	pages := make([]appPage, 0, len(apps))
	for _, a := range apps {
		prefix := a.PathPrefix
		if prefix == "" {
			prefix = "/"
		}
		if !appPrefixRE.MatchString(prefix) {
			panic("spa: path prefix " + strconv.Quote(a.PathPrefix) + " of app " + strconv.Quote(a.Name) + " must look like /name/")
		}
		pages = append(pages, appPage{strings.ToLower(a.Host), prefix, named(a.Name, prefix, a.SilentLogin)})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, prefix := pick(pages, hostname(r.Host), r.URL.Path)
		path := r.URL.Path[len(prefix)-1:] // the app's own path, from its "/"
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
