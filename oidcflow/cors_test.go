package oidcflow

import (
	"net/http"
	"strings"
	"testing"
)

// TestBrowserEndpointsCORS: a page on a listed origin may call /bff/user
// with credentials (preflight answered, answers and denials readable);
// any other origin gets no Access-Control-Allow-* header.
func TestBrowserEndpointsCORS(t *testing.T) {
	t.Parallel()
	const listed, unlisted = "https://spa.example.com", "https://evil.example"
	origins, err := ParseOrigins("authz.allowed_origins", []string{listed})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, withDeps(func(d *Deps) { d.AllowedOrigins = origins }))
	b := e.browser()
	b.login("/")

	granted := func(t *testing.T, name string, h http.Header) {
		t.Helper()
		if got := h.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != listed {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", name, got, listed)
		}
		if h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
			t.Errorf("%s: credentials %q, vary %q", name, h.Get("Access-Control-Allow-Credentials"), h.Values("Vary"))
		}
	}
	nothing := func(t *testing.T, name string, h http.Header) {
		t.Helper()
		for k := range h {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: %s %q for an origin not listed", name, k, h.Values(k))
			}
		}
	}
	preflight := func(origin, method string) http.Header {
		return http.Header{"Origin": {origin}, "Access-Control-Request-Method": {method}, "Access-Control-Request-Headers": {"x-csrf, x-other"}}
	}

	gets := e.store.gets.Load()
	r := b.do(http.MethodOptions, "/bff/user", preflight(listed, "GET"))
	if r.Status != http.StatusNoContent {
		t.Fatalf("listed preflight: %d %s", r.Status, r.Body)
	}
	granted(t, "listed preflight", r.Header)
	if r.Header.Get("Access-Control-Allow-Methods") != "GET" || r.Header.Get("Access-Control-Allow-Headers") != "x-csrf" || r.Header.Get("Access-Control-Max-Age") != "600" {
		t.Errorf("listed preflight grants %q %q %q", r.Header.Get("Access-Control-Allow-Methods"), r.Header.Get("Access-Control-Allow-Headers"), r.Header.Get("Access-Control-Max-Age"))
	}
	if n := e.store.gets.Load() - gets; n != 0 {
		t.Errorf("a preflight read the store %d times", n)
	}

	r = b.do(http.MethodGet, "/bff/user", http.Header{"Origin": {listed}, csrfHeader: {"1"}})
	if r.Status != http.StatusOK {
		t.Fatalf("listed /user: %d %s", r.Status, r.Body)
	}
	granted(t, "listed /user", r.Header)
	r = b.do(http.MethodGet, "/bff/user", http.Header{"Origin": {listed}})
	wantError(t, r, http.StatusForbidden, "antiforgery_required")
	granted(t, "listed denial", r.Header)

	for name, resp := range map[string]response{
		"unlisted preflight":         b.do(http.MethodOptions, "/bff/user", preflight(unlisted, "GET")),
		"listed preflight for PUT":   b.do(http.MethodOptions, "/bff/user", preflight(listed, "PUT")),
		"unlisted /user":             b.do(http.MethodGet, "/bff/user", http.Header{"Origin": {unlisted}, csrfHeader: {"1"}}),
		"two origins":                b.do(http.MethodGet, "/bff/user", http.Header{"Origin": {listed, listed}, csrfHeader: {"1"}}),
		"listed back-channel logout": b.do(http.MethodOptions, "/bff/backchannel-logout", preflight(listed, "POST")),
	} {
		nothing(t, name, resp.Header)
		if strings.Contains(name, "preflight") && resp.Status != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405 as before", name, resp.Status)
		}
	}
}
