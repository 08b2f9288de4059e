package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestCORSOtherOrigin: an SPA on another origin listed in
// authz.allowed_origins calls the API through real Envoy with credentials;
// envoy-bff answers its preflight and grants its responses (denials too),
// and never grants an origin it does not list (T70).
func TestCORSOtherOrigin(t *testing.T) {
	t.Parallel()
	const listed = "https://spa.example.com"
	const unlisted = "https://evil.example"
	s := startStack(t, harness.Options{BFFConfig: func(doc map[string]any) {
		az, _ := doc["authz"].(map[string]any)
		if az == nil {
			az = map[string]any{}
			doc["authz"] = az
		}
		az["allowed_origins"] = []string{listed}
	}})
	b := newBrowser(t, s.URL)
	if r, hops := b.login("/"); r.Status != 200 {
		t.Fatalf("login failed at %v: %d %s", hops, r.Status, r.Body)
	}
	cookie := "__Host-bff=" + b.cookies["__Host-bff"]
	apiRequests := func() int { return envoyCounter(t, s.Envoy, "cluster.api.upstream_rq_total") }
	preflight := func(origin string) response {
		return rawRequest(t, s.URL, http.MethodOptions, "/api/whoami", [][2]string{
			{"Origin", origin},
			{"Access-Control-Request-Method", "GET"},
			{"Access-Control-Request-Headers", "x-csrf"},
		})
	}
	call := func(origin string, withCookie bool) response {
		h := [][2]string{{"Origin", origin}, {"X-CSRF", "1"}}
		if withCookie {
			h = append(h, [2]string{"Cookie", cookie})
		}
		return rawRequest(t, s.URL, http.MethodGet, "/api/whoami", h)
	}
	granted := func(t *testing.T, r response) {
		t.Helper()
		if got := r.Header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != listed {
			t.Errorf("Access-Control-Allow-Origin %q, want %q", got, listed)
		}
		if got := r.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
			t.Errorf("Access-Control-Allow-Credentials %q, want true", got)
		}
		if !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("Vary %q lacks Origin", r.Header.Values("Vary"))
		}
	}
	nothingGranted := func(t *testing.T, r response) {
		t.Helper()
		for k := range r.Header {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("%s: %q for an origin not listed", k, r.Header.Values(k))
			}
		}
	}

	t.Run("preflight_listed", func(t *testing.T) {
		upstream := apiRequests()
		r := preflight(listed)
		if r.Status != http.StatusNoContent || r.Body != "" {
			t.Fatalf("%d %q, want 204 without a body", r.Status, r.Body)
		}
		granted(t, r)
		if got := r.Header.Get("Access-Control-Allow-Methods"); got != "GET" {
			t.Errorf("Access-Control-Allow-Methods %q, want GET", got)
		}
		if got := r.Header.Get("Access-Control-Allow-Headers"); got != "x-csrf" {
			t.Errorf("Access-Control-Allow-Headers %q, want x-csrf", got)
		}
		if got := r.Header.Get("Access-Control-Max-Age"); got != "600" {
			t.Errorf("Access-Control-Max-Age %q, want 600", got)
		}
		if n := apiRequests() - upstream; n != 0 {
			t.Errorf("the API received %d request(s) for a preflight", n)
		}
	})
	t.Run("call_listed", func(t *testing.T) {
		r := call(listed, true)
		if r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if sub, _ := r.json(t)["sub"].(string); sub == "" {
			t.Errorf("the API saw no verified token: %s", r.Body)
		}
		granted(t, r)
	})
	t.Run("denial_listed", func(t *testing.T) {
		r := call(listed, false)
		if r.Status != http.StatusUnauthorized || r.json(t)["error"] != "unauthenticated" {
			t.Fatalf("%d %s, want 401 unauthenticated", r.Status, r.Body)
		}
		granted(t, r) // the SPA can read why
	})
	t.Run("browser_endpoint_listed", func(t *testing.T) {
		pre := rawRequest(t, s.URL, http.MethodOptions, "/bff/user", [][2]string{
			{"Origin", listed}, {"Access-Control-Request-Method", "GET"}, {"Access-Control-Request-Headers", "x-csrf"},
		})
		if pre.Status != http.StatusNoContent {
			t.Fatalf("preflight of /bff/user: %d %s", pre.Status, pre.Body)
		}
		granted(t, pre)
		r := rawRequest(t, s.URL, http.MethodGet, "/bff/user", [][2]string{{"Origin", listed}, {"X-CSRF", "1"}, {"Cookie", cookie}})
		if r.Status != http.StatusOK {
			t.Fatalf("/bff/user: %d %s", r.Status, r.Body)
		}
		granted(t, r)
		nothingGranted(t, rawRequest(t, s.URL, http.MethodGet, "/bff/user", [][2]string{{"Origin", unlisted}, {"X-CSRF", "1"}, {"Cookie", cookie}}))
	})
	// An API that grants every origin itself: Envoy drops its grant and
	// only envoy-bff's, for listed origins, reaches the browser.
	t.Run("upstream_grant_dropped", func(t *testing.T) {
		permissive := func(origin string) response {
			return rawRequest(t, s.URL, http.MethodGet, "/api/whoami?permissive_cors=1", [][2]string{{"Origin", origin}, {"X-CSRF", "1"}, {"Cookie", cookie}})
		}
		if r := permissive(unlisted); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		} else {
			nothingGranted(t, r)
		}
		r := permissive(listed)
		if r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		granted(t, r)
		if got := r.Header.Values("Access-Control-Expose-Headers"); len(got) != 0 {
			t.Errorf("the upstream's Access-Control-Expose-Headers %q reached the browser", got)
		}
	})
	t.Run("T70_unlisted", func(t *testing.T) {
		if r := preflight(unlisted); r.Status != http.StatusNoContent {
			t.Errorf("preflight: %d", r.Status)
		} else {
			nothingGranted(t, r)
		}
		r := call(unlisted, true)
		if r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		nothingGranted(t, r) // the browser refuses the page the answer
		nothingGranted(t, call(unlisted, false))
	})
}
