package oidcflow

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// TestEveryLogLineNamesItsFrontend: the handler, the refresher, client
// tokens, back-channel logout and the admin API all log with the frontend
// attribute, "default" when Deps leaves it out.
func TestEveryLogLineNamesItsFrontend(t *testing.T) {
	t.Parallel()
	for _, fe := range []string{"", "shop"} {
		want := fe
		if want == "" {
			want = defaultFrontend
		}
		t.Run("frontend="+want, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withClientTokens(), withDeps(func(d *Deps) { d.Frontend = fe }))
			// handler: a login, a denial, a logout
			b := e.browser()
			b.login("/")
			e.browser().get("/bff/callback?state=unknown&code=x")
			b.get(b.api("/bff/user").json(t)["logoutUrl"].(string))
			// refresher: a refresh the provider rejects
			id, _ := e.loggedIn()
			rec := e.tamper(id, func(s *sessionpb.Session) { s.RefreshToken = "not-a-refresh-token" })
			e.clock.Advance(due)
			if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); err == nil {
				t.Fatal("a bogus refresh token refreshed")
			}
			// back-channel logout
			_, c := e.loggedIn()
			if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: c.GetSid()})); r.Status != http.StatusOK {
				t.Fatalf("back-channel logout: %d %s", r.Status, r.Body)
			}
			// admin: its own lines, and the Sessions it ends through
			var adminLogs bytes.Buffer
			admin := AdminHandler(oneFrontend(e.h.Sessions()), "", slog.New(slog.NewTextHandler(&adminLogs, nil)))
			e.loggedIn()
			if code := adminDelete(t, admin, "/admin/sessions?sub=demo-user"); code != http.StatusOK {
				t.Fatalf("admin: %d", code)
			}

			// client tokens (last: the provider stays broken): a renewal that
			// fails while the token is still valid is logged
			ct := e.clientTokensWith(func(d *Deps) { d.Frontend = fe; d.Logger = e.h.logger })
			if _, err := ct.Token(t.Context(), DefaultClientToken); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(due)
			e.hook(oidctest.PathToken, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
			if _, err := ct.Token(t.Context(), DefaultClientToken); err != nil {
				t.Fatal(err)
			}

			lines := strings.Split(strings.TrimSpace(e.logs.String()+adminLogs.String()), "\n")
			for _, msg := range []string{"provider discovered", "oidcflow: login", "request denied", "oidcflow: logout",
				"refresh rejected", "client token renewal failed", "back-channel logout", "session ended", "admin: sessions ended"} {
				if !strings.Contains(e.logs.String()+adminLogs.String(), msg) {
					t.Errorf("no %q line", msg)
				}
			}
			for _, l := range lines {
				if strings.Count(l, " frontend=") != 1 || !strings.Contains(l, " frontend="+want+" ") && !strings.HasSuffix(l, " frontend="+want) {
					t.Errorf("line without exactly one frontend=%s: %s", want, l)
				}
			}
		})
	}
}

// TestLoginReturnsToItsFrontend: without returnUrl a login ends at the
// frontend's Home; a returnUrl may still be any local path, even outside it.
func TestLoginReturnsToItsFrontend(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withDeps(func(d *Deps) { d.Home = "/admin/" }))
	for _, tc := range []struct{ returnURL, want string }{
		{"", "/admin/"},
		{"/admin/users?page=2", "/admin/users?page=2"},
		{"/elsewhere", "/elsewhere"},
		{"/", "/"},
	} {
		if got := e.browser().login(tc.returnURL).location(); got != tc.want {
			t.Errorf("returnUrl %q: back to %q, want %q", tc.returnURL, got, tc.want)
		}
	}
	if r := e.browser().get("/bff/login?returnUrl=" + url.QueryEscape("//evil.example")); r.Status != http.StatusBadRequest {
		t.Errorf("open redirect: %d", r.Status)
	}
	// Logging out anonymously without a post-logout URL goes home too.
	h := newEnv(t, withConfig(func(c *Config) { c.PostLogoutRedirectURL = "" }), withDeps(func(d *Deps) { d.Home = "/admin/" }))
	if r := h.browser().get("/bff/logout?sid=x"); r.Status != http.StatusFound || r.location() != "/admin/" {
		t.Errorf("anonymous logout: %d %q", r.Status, r.location())
	}
	if _, err := NewHandler(e.cfg, Deps{Store: e.store, Cookie: e.h.cookie, Antiforgery: e.h.antiforgery,
		AbsoluteLifetime: e.h.lifetime, IdleTimeout: e.h.idle, Provider: e.h.provider, Home: "/admin"}); err == nil || !strings.Contains(err.Error(), "deps.Home") {
		t.Errorf("Home without its trailing slash: %v", err)
	}
	if _, err := NewHandler(e.cfg, Deps{Store: e.store, Cookie: e.h.cookie, Antiforgery: e.h.antiforgery,
		AbsoluteLifetime: e.h.lifetime, IdleTimeout: e.h.idle, Provider: e.h.provider, Frontend: "Shop"}); err == nil || !strings.Contains(err.Error(), "deps.Frontend") {
		t.Errorf("a bad frontend name: %v", err)
	}
}

// TestLoginCookieFollowsTheSessionCookie: each frontend's login
// transaction has its own cookie, named after its session cookie.
func TestLoginCookieFollowsTheSessionCookie(t *testing.T) {
	t.Parallel()
	if got := LoginCookieName("__Host-bff"); got != "__Host-bff-login" {
		t.Fatalf("the default login cookie is %q", got)
	}
	e := newEnv(t, withDeps(func(d *Deps) { d.Cookie.Name = "__Host-shop" }))
	b := e.browser()
	r := b.get("/bff/login")
	if sc := r.setCookie("__Host-shop-login"); sc == "" || r.setCookie("__Host-bff-login") != "" {
		t.Fatalf("login Set-Cookie: %q", r.Header.Values("Set-Cookie"))
	}
	cb := b.get(b.authorize(r.location()))
	if cb.Status != http.StatusFound || cb.setCookie("__Host-shop") == "" || !strings.Contains(cb.setCookie("__Host-shop-login"), "Max-Age=0") {
		t.Fatalf("callback: %d %q", cb.Status, cb.Header.Values("Set-Cookie"))
	}
}

// TestBackchannelLogoutStaysWithItsFrontend: two frontends, each with its
// own provider and store, one user logged in to both. A logout token from
// A's provider sent to B's back-channel endpoint is a 400 and ends nothing;
// sent to A's, it ends A's session only.
func TestBackchannelLogoutStaysWithItsFrontend(t *testing.T) {
	t.Parallel()
	a := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "shop" }))
	b := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "admin" }))
	idA, recA := a.loggedIn()
	idB, recB := b.loggedIn()
	if recA.GetSubject() != recB.GetSubject() {
		t.Fatalf("subjects %q and %q: want one user at both", recA.GetSubject(), recB.GetSubject())
	}
	for name, tok := range map[string]oidctest.LogoutToken{
		"by_sid": {Sid: recA.GetSid()},
		"by_sub": {Subject: recA.GetSubject()},
		// B's sid in A's token still names A's provider.
		"b_sid_a_signed": {Sid: recB.GetSid()},
	} {
		r := b.logoutWith(a.mint(tok))
		wantError(t, r, http.StatusBadRequest, "invalid_request")
		if !a.alive(idA) || !b.alive(idB) {
			t.Fatalf("%s: A's token at B's endpoint ended a session: A alive %v, B alive %v", name, a.alive(idA), b.alive(idB))
		}
	}
	if !strings.Contains(b.logs.String(), "frontend=admin") || strings.Contains(b.logs.String(), "sessions_ended") {
		t.Fatalf("B's log:\n%s", b.logs)
	}
	if r := a.logoutWith(a.mint(oidctest.LogoutToken{Sid: recA.GetSid()})); r.Status != http.StatusOK {
		t.Fatalf("A's token at A: %d %s", r.Status, r.Body)
	}
	if a.alive(idA) || !b.alive(idB) {
		t.Fatalf("after A's logout: A alive %v, B alive %v", a.alive(idA), b.alive(idB))
	}
}

// TestDueDoesNotAllocate: Check asks Due on every request.
func TestDueDoesNotAllocate(t *testing.T) {
	e := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "shop" }))
	_, rec := e.loggedIn()
	ref := e.h.Refresher()
	if n := testing.AllocsPerRun(100, func() { ref.Due(rec) }); n != 0 {
		t.Fatalf("Due: %v allocations", n)
	}
}

// TestHostsOverlap: frontends whose hosts share one (any case), or one of
// which takes every host, can see each other's cookies.
func TestHostsOverlap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b []string
		want bool
	}{
		{nil, []string{"a.example"}, true},
		{[]string{"a.example"}, nil, true},
		{[]string{"a.example", "b.example"}, []string{"B.example"}, true},
		{[]string{"a.example"}, []string{"b.example"}, false},
	} {
		if got := HostsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("HostsOverlap(%v, %v) = %v", tc.a, tc.b, got)
		}
	}
}
