package oidcflow

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// named answers with its own name, standing in for a frontend's Handler.
type named string

func (n named) ServeHTTP(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(n)) }

func TestRouter(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	routes := []Route{
		{Name: "shop", Hosts: []string{"shop.example.com"}, PathPrefix: "/"},
		{Name: "admin", Hosts: []string{"admin.example.com"}, PathPrefix: "/"},
		{Name: "portal", Hosts: []string{"apps.example.com"}, PathPrefix: "/portal/"},
		{Name: "partners", Hosts: []string{"apps.example.com"}, PathPrefix: "/partners/"},
	}
	handlers := []http.Handler{named("shop"), named("admin"), named("portal"), named("partners")}
	rt, err := NewRouter(routes, handlers, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	serve := func(host, target string) *httptest.ResponseRecorder {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
		req.Host = host
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct{ host, target, want string }{
		{"shop.example.com", "/bff/login", "shop"},
		{"SHOP.example.com:8443", "/bff/user", "shop"},
		{"admin.example.com", "/bff/login?returnUrl=/x", "admin"},
		{"apps.example.com", "/portal/bff/login", "portal"},
		{"apps.example.com", "/partners/bff/callback?state=s&code=c", "partners"},
	} {
		if rec := serve(tc.host, tc.target); rec.Code != http.StatusOK || rec.Body.String() != tc.want {
			t.Errorf("%s%s: %d %q, want %s", tc.host, tc.target, rec.Code, rec.Body, tc.want)
		}
	}

	for _, tc := range []struct{ host, target string }{
		{"other.example.com", "/bff/login"},
		{"apps.example.com", "/bff/login"},
		{"apps.example.com", "/portalx/bff/login"},
	} {
		rec := serve(tc.host, tc.target)
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusNotFound ||
			body["error"] != "frontend_unknown" || body["error_description"] == "" || len(body) != 2 {
			t.Errorf("%s%s: %d %s, want 404 frontend_unknown", tc.host, tc.target, rec.Code, rec.Body)
		}
		if rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("X-Request-Id") == "" {
			t.Errorf("%s%s: headers %v", tc.host, tc.target, rec.Header())
		}
	}
	if n := strings.Count(logs.String(), "no frontend serves this request"); n != 3 {
		t.Errorf("%d log lines for 3 unknown frontends:\n%s", n, logs)
	}

	// Set swaps the whole set at once; a bad set changes nothing.
	if err := rt.Set([]Route{{Name: "a"}, {Name: "a"}}, []http.Handler{named("a"), named("b")}); err == nil {
		t.Fatal("duplicate names accepted")
	}
	if err := rt.Set(routes[:1], []http.Handler{nil}); err == nil {
		t.Fatal("a nil handler accepted")
	}
	if rec := serve("admin.example.com", "/bff/login"); rec.Body.String() != "admin" {
		t.Fatalf("after a refused Set: %q", rec.Body)
	}
	if err := rt.Set([]Route{{Name: "only"}}, []http.Handler{named("only")}); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"shop.example.com", "other.example.com"} {
		if rec := serve(host, "/bff/login"); rec.Body.String() != "only" {
			t.Fatalf("%s after Set: %q", host, rec.Body)
		}
	}
}

// TestRouterHandlers: two real Handlers on two prefixes of one host, each
// answering under its own <prefix>bff/ and sending its logins home.
func TestRouterHandlers(t *testing.T) {
	t.Parallel()
	shop := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "shop" }))
	admin := newEnv(t, withConfig(func(c *Config) {
		c.PathPrefix = "/admin/bff"
		c.RedirectURL = strings.Replace(c.RedirectURL, "/bff/callback", "/admin/bff/callback", 1)
	}), withProvider(func(p *oidctest.ProviderConfig) {
		p.Clients[0].RedirectURIs = append(p.Clients[0].RedirectURIs, strings.Replace(p.Clients[0].RedirectURIs[0], "/bff/callback", "/admin/bff/callback", 1))
	}), withDeps(func(d *Deps) { d.Frontend = "admin"; d.Home = "/admin/" }))
	rt, err := NewRouter([]Route{{Name: "shop"}, {Name: "admin", PathPrefix: "/admin/"}}, []http.Handler{shop.h, admin.h}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env    *env
		target string
	}{{shop, "/bff/login"}, {admin, "/admin/bff/login"}} {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, tc.target, nil))
		if rec.Code != http.StatusFound || !strings.HasPrefix(rec.Header().Get("Location"), tc.env.idp.URL+"/") {
			t.Fatalf("%s: %d %q", tc.target, rec.Code, rec.Header().Get("Location"))
		}
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/admin/bff/nope", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(admin.logs.String(), "frontend=admin") {
		t.Fatalf("unknown endpoint of admin: %d; admin logs:\n%s", rec.Code, admin.logs)
	}
}
