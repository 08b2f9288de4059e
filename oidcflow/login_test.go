package oidcflow

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/session"
)

func TestLogin(t *testing.T) {
	t.Parallel()

	t.Run("T17_no_return_url_goes_home", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		if loc := e.browser().login("").location(); loc != "/" {
			t.Fatalf("callback redirected to %q", loc)
		}
	})

	t.Run("T17_return_url_round_trips", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, ret := range []string{"/app/orders?x=1", "/a/b%20c?q=%2F&r=1", "/caf%C3%A9"} {
			if loc := e.browser().login(ret).location(); loc != ret {
				t.Errorf("returnUrl %q came back as %q", ret, loc)
			}
		}
	})

	t.Run("T18_T19_bad_return_url_400_no_state", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, bad := range t19ReturnURLs {
			r := e.browser().get("/bff/login?returnUrl=" + url.QueryEscape(bad))
			wantError(t, r, http.StatusBadRequest, "invalid_return_url")
			if r.location() != "" || len(r.Header.Values("Set-Cookie")) != 0 {
				t.Errorf("%q: Location %q, Set-Cookie %q", bad, r.location(), r.Header.Values("Set-Cookie"))
			}
		}
		if n := e.store.puts.Load(); n != 0 {
			t.Fatalf("%d login states stored for bad returnUrls", n)
		}
		r := e.browser().get("/bff/login?returnUrl=/a&returnUrl=/b")
		wantError(t, r, http.StatusBadRequest, "invalid_return_url")
	})

	t.Run("allowed_origin_return_url_round_trips", func(t *testing.T) {
		t.Parallel()
		origins, err := ParseOrigins("authz.allowed_origins", []string{"https://app.example.com"})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, withDeps(func(d *Deps) { d.AllowedOrigins = origins }))
		if loc := e.browser().login("https://app.example.com/orders?x=1").location(); loc != "https://app.example.com/orders?x=1" {
			t.Errorf("an allowed origin's returnUrl came back as %q", loc)
		}
		for _, bad := range []string{"https://evil.example.com/", "https://app.example.com.evil.com/", "https://app.example.com//evil.com"} {
			r := e.browser().get("/bff/login?returnUrl=" + url.QueryEscape(bad))
			wantError(t, r, http.StatusBadRequest, "invalid_return_url")
		}
		// The same returnUrl is refused where the frontend lists no origin.
		r := newEnv(t).browser().get("/bff/login?returnUrl=" + url.QueryEscape("https://app.example.com/"))
		wantError(t, r, http.StatusBadRequest, "invalid_return_url")
	})

	t.Run("T23_spoofed_host_changes_nothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		r := b.do(http.MethodGet, "/bff/login", http.Header{"Host": {"evil.example"}, "X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"}})
		loc, err := url.Parse(r.location())
		if r.Status != http.StatusFound || err != nil {
			t.Fatalf("/login: %d %q", r.Status, r.location())
		}
		if got := loc.Query().Get("redirect_uri"); got != e.cfg.RedirectURL {
			t.Fatalf("redirect_uri %q, want %q", got, e.cfg.RedirectURL)
		}
		// The callback with a spoofed Host still completes: the exchange used the configured redirect_uri.
		cb := b.authorize(r.location())
		if res := b.do(http.MethodGet, cb, http.Header{"Host": {"evil.example"}, "X-Forwarded-Host": {"evil.example"}}); res.Status != http.StatusFound || res.location() != "/" {
			t.Fatalf("callback with spoofed Host: %d %q %s", res.Status, res.location(), res.Body)
		}
	})

	t.Run("T31_authorize_request_carries_s256", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		loc, _ := url.Parse(b.startLogin("/x"))
		q := loc.Query()
		for k, want := range map[string]string{
			"code_challenge_method": "S256", "response_type": "code", "client_id": testClientID,
			"redirect_uri": e.cfg.RedirectURL, "scope": "openid profile email offline_access",
		} {
			if q.Get(k) != want {
				t.Errorf("%s = %q, want %q", k, q.Get(k), want)
			}
		}
		if len(q.Get("code_challenge")) != 43 || len(q.Get("state")) != 43 || len(q.Get("nonce")) != 43 {
			t.Errorf("challenge/state/nonce lengths: %d %d %d", len(q.Get("code_challenge")), len(q.Get("state")), len(q.Get("nonce")))
		}
		ls, err := e.store.TakeLoginState(t.Context(), q.Get("state"), b.cookies[loginCookieName])
		if err != nil {
			t.Fatal(err)
		}
		if n := len(ls.GetCodeVerifier()); n < 43 || n > 128 {
			t.Errorf("verifier length %d", n)
		}
		if ls.GetReturnUrl() != "/x" || ls.GetNonce() != q.Get("nonce") {
			t.Errorf("stored login state: return %q", ls.GetReturnUrl())
		}
		if _, err := e.store.TakeLoginState(t.Context(), q.Get("state"), ""); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("a pending login is found without its browser's cookie: %v", err)
		}
	})

	t.Run("T10_login_cookie_attributes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := e.browser().get("/bff/login")
		sc := r.setCookie(loginCookieName)
		for _, want := range []string{"; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax", "; Max-Age=600"} {
			if !strings.Contains(sc, want) {
				t.Errorf("login Set-Cookie lacks %q", want)
			}
		}
		if strings.Contains(strings.ToLower(sc), "domain=") || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("login answer: Set-Cookie has a Domain or is cacheable")
		}
	})

	t.Run("T16_login_keeps_existing_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		r := b.get("/bff/login?returnUrl=/elsewhere")
		if r.Status != http.StatusFound || r.setCookie("__Host-bff") != "" {
			t.Fatalf("/login touched the session cookie: %d %q", r.Status, r.setCookie("__Host-bff"))
		}
		if u := b.api("/bff/user"); u.Status != http.StatusOK {
			t.Fatalf("session gone after a second /login: %d", u.Status)
		}
	})

	t.Run("T52_store_unavailable_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.store.failWith("PutLoginState", errStoreDown)
		r := e.browser().get("/bff/login")
		wantError(t, r, http.StatusServiceUnavailable, "session_store_unavailable")
		if r.Header.Get("Retry-After") == "" || r.setCookie(loginCookieName) != "" {
			t.Fatalf("Retry-After %q, Set-Cookie %q", r.Header.Get("Retry-After"), r.setCookie(loginCookieName))
		}
	})

	t.Run("method_and_path", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		wantError(t, b.do(http.MethodPost, "/bff/login", nil), http.StatusMethodNotAllowed, "method_not_allowed")
		wantError(t, b.get("/bff/nope"), http.StatusNotFound, "not_found")
		wantError(t, b.get("/bff/backchannel-logout"), http.StatusMethodNotAllowed, "method_not_allowed") // T36: POST only
	})
}
