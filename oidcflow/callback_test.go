package oidcflow

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/session"
)

func TestCallback(t *testing.T) {
	t.Parallel()

	t.Run("T7_new_session_id_every_login", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		first := b.cookies["__Host-bff"]
		b.login("/")
		second := b.cookies["__Host-bff"]
		if first == second || first == "" {
			t.Fatal("the second login kept the session ID")
		}
		if u := b.api("/bff/user"); u.Status != http.StatusOK {
			t.Fatalf("new session: %d", u.Status)
		}
		// Fixation: the earlier ID is dead.
		b.cookies["__Host-bff"] = first
		wantError(t, b.api("/bff/user"), http.StatusUnauthorized, "unauthenticated")
	})

	t.Run("T7_planted_cookie_is_not_adopted", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		planted := strings.Repeat("A", 43)
		b.cookies["__Host-bff"] = planted
		b.login("/")
		if b.cookies["__Host-bff"] == planted {
			t.Fatal("login adopted the planted session ID")
		}
	})

	t.Run("T22_return_url_on_callback_ignored", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/stored"))
		cb = withQuery(t, cb, func(q url.Values) {
			q.Set("returnUrl", "https://evil.example/")
			q.Set("redirect", "//evil.example")
			q.Set("redirect_uri", "https://evil.example/cb")
		})
		if r := b.get(cb); r.Status != http.StatusFound || r.location() != "/stored" {
			t.Fatalf("callback: %d %q", r.Status, r.location())
		}
	})

	t.Run("T24_missing_state_or_code", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, q := range []string{"", "?code=abc", "?state=abc", "?state=&code=", "?iss=x"} {
			wantError(t, e.browser().get("/bff/callback"+q), http.StatusBadRequest, "invalid_callback")
		}
		if n := e.store.lookups(); n != 0 {
			t.Fatalf("%d store lookups", n)
		}
	})

	t.Run("T25_unknown_state", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		cb = withQuery(t, cb, func(q url.Values) { q.Set("state", strings.Repeat("s", 43)) })
		r := b.get(cb)
		wantError(t, r, http.StatusBadRequest, "invalid_state")
		if r.setCookie("__Host-bff") != "" {
			t.Fatal("a session was set")
		}
	})

	t.Run("T25_expired_state", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		authURL := b.startLogin("/")
		cb := b.authorize(authURL)
		e.clock.Advance(11 * time.Minute)
		wantError(t, b.get(cb), http.StatusBadRequest, "invalid_state")
	})

	t.Run("T25_state_from_another_browser", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		victim, attacker := e.browser(), e.browser()
		cb := attacker.authorize(attacker.startLogin("/"))
		r := victim.get(cb) // login CSRF: the attacker's callback in the victim's browser
		wantError(t, r, http.StatusBadRequest, "invalid_state")
		if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
			t.Fatal("a session was created for the wrong browser")
		}
	})

	// T71: a callback with the right state from the wrong browser (or none)
	// changes nothing: the owner's own callback still logs in.
	for _, tc := range []struct {
		name   string
		cookie func(owner string) string // the foreign callback's Cookie header; "" sends none
	}{
		{"T71_foreign_browser_leaves_the_state", func(string) string { return loginCookieName + "=" + strings.Repeat("x", 43) }},
		{"T71_no_login_cookie_leaves_the_state", func(string) string { return "" }},
		{"T71_duplicate_login_cookie_leaves_the_state", func(o string) string {
			return loginCookieName + "=" + o + "," + loginCookieName + "=" + o
		}},
		{"T71_stranger_with_a_pending_login_of_its_own", func(string) string { return "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			owner := e.browser()
			cb := owner.authorize(owner.startLogin("/app"))
			h := http.Header{}
			if c := tc.cookie(owner.cookies[loginCookieName]); c != "" {
				h.Set("Cookie", c)
			}
			stranger := e.browser()
			if tc.name == "T71_stranger_with_a_pending_login_of_its_own" {
				stranger.startLogin("/other") // its own pending login, its own login cookie
				h = nil
			}
			r := stranger.do(http.MethodGet, cb, h)
			wantError(t, r, http.StatusBadRequest, "invalid_state")
			if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
				t.Fatal("a session was created for the wrong browser")
			}
			ok := owner.get(cb)
			if ok.Status != http.StatusFound || ok.Header.Get("Location") != "/app" || ok.setCookie("__Host-bff") == "" {
				t.Fatalf("the owner's callback after the foreign one: %d %q %s", ok.Status, ok.Header.Get("Location"), ok.Body)
			}
		})
	}

	t.Run("T25_wrong_login_cookie", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		b.cookies[loginCookieName] = strings.Repeat("x", 43)
		wantError(t, b.get(cb), http.StatusBadRequest, "invalid_state")
	})

	t.Run("T25_duplicate_login_cookie", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		v := b.cookies[loginCookieName]
		r := b.do(http.MethodGet, cb, http.Header{"Cookie": {loginCookieName + "=" + v + "; " + loginCookieName + "=" + v}})
		wantError(t, r, http.StatusBadRequest, "invalid_state")
	})

	t.Run("T26_replayed_code_sequentially", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		login := b.cookies[loginCookieName]
		if r := b.get(cb); r.Status != http.StatusFound {
			t.Fatalf("first callback: %d %s", r.Status, r.Body)
		}
		b.cookies[loginCookieName] = login // even with the cookie restored
		wantError(t, b.get(cb), http.StatusBadRequest, "invalid_state")
		if n := e.store.creates.Load(); n != 1 {
			t.Fatalf("%d sessions created", n)
		}
	})

	t.Run("T26_replayed_code_concurrently", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		cookie := loginCookieName + "=" + b.cookies[loginCookieName]
		const n = 10
		statuses := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				statuses[i] = e.browser().do(http.MethodGet, cb, http.Header{"Cookie": {cookie}}).Status
			})
		}
		wg.Wait()
		ok := 0
		for _, s := range statuses {
			switch s {
			case http.StatusFound:
				ok++
			case http.StatusBadRequest:
			default:
				t.Errorf("status %d", s)
			}
		}
		if ok != 1 || e.store.creates.Load() != 1 || e.provider.Stats().AuthorizationCodeGrants != 1 {
			t.Fatalf("%d successes, %d sessions, %d code grants; want 1 each", ok, e.store.creates.Load(), e.provider.Stats().AuthorizationCodeGrants)
		}
	})

	t.Run("T27_duplicates_and_oversize_before_store", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		long := strings.Repeat("a", 2049)
		for _, q := range []string{
			"?state=a&state=b&code=c", "?state=a&code=b&code=c", "?state=a&code=b&iss=x&iss=y",
			"?state=" + long + "&code=c", "?state=a&code=" + long, "?state=a&code=b&error=x&error=y",
			"?state=a;&code=b%zz",
		} {
			wantError(t, e.browser().get("/bff/callback"+q), http.StatusBadRequest, "invalid_callback")
		}
		if n := e.store.lookups(); n != 0 {
			t.Fatalf("%d store lookups", n)
		}
	})

	t.Run("T28_provider_error_not_reflected", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, code := range []string{"access_denied", "login_required", "<b>x</b>"} {
			b := e.browser()
			authURL := b.startLogin("/")
			state := mustQuery(t, authURL).Get("state")
			script := "<script>alert(1)</script>"
			q := url.Values{"error": {code}, "error_description": {script}, "state": {state}, "iss": {e.idp.URL}}
			r := b.get("/bff/callback?" + q.Encode())
			wantError(t, r, http.StatusBadRequest, "login_failed")
			if strings.Contains(r.Body, "<script") || strings.Contains(r.Body, "alert") || strings.Contains(r.Body, "<b>") {
				t.Fatalf("provider text reflected for %q: %s", code, r.Body)
			}
			if sc := r.setCookie(loginCookieName); !strings.Contains(sc, "Max-Age=0") {
				t.Errorf("login cookie not cleared: %q", sc)
			}
			// The pending login is gone.
			if _, err := e.store.TakeLoginState(t.Context(), state, b.cookies[loginCookieName]); err == nil {
				t.Fatal("pending login survived the provider's error")
			}
			// A navigation gets a page, equally fixed.
			page := b.do(http.MethodGet, "/bff/callback?"+q.Encode(), http.Header{"Accept": {"text/html"}})
			if page.Status != http.StatusBadRequest || !strings.HasPrefix(page.Header.Get("Content-Type"), "text/html") ||
				strings.Contains(page.Body, "script>") || !strings.Contains(page.Body, "login_failed") {
				t.Fatalf("error page: %d %q\n%s", page.Status, page.Header.Get("Content-Type"), page.Body)
			}
		}
	})

	t.Run("T28_provider_refuses_at_authorize", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.provider.SetAuthorizeError("access_denied")
		b := e.browser()
		r := b.get(b.startLogin("/"))
		if !strings.HasPrefix(r.location(), e.bff.URL+"/bff/callback") {
			t.Fatalf("provider answered %d %q", r.Status, r.location())
		}
		wantError(t, b.get(r.location()), http.StatusBadRequest, "login_failed")
	})

	t.Run("T29_iss_mismatch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, iss := range []string{"https://evil.example", e.idp.URL + "/", strings.ToUpper(e.idp.URL)} {
			b := e.browser()
			cb := withQuery(t, b.authorize(b.startLogin("/")), func(q url.Values) { q.Set("iss", iss) })
			wantError(t, b.get(cb), http.StatusBadRequest, "invalid_callback")
		}
	})

	t.Run("T29_iss_absent_while_supported", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := withQuery(t, b.authorize(b.startLogin("/")), func(q url.Values) { q.Del("iss") })
		wantError(t, b.get(cb), http.StatusBadRequest, "invalid_callback")
	})

	t.Run("T29_iss_absent_and_not_supported", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.hook(oidctest.PathDiscovery, e.discoveryWithout("authorization_response_iss_parameter_supported"))
		if err := e.h.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		cb := withQuery(t, b.authorize(b.startLogin("/")), func(q url.Values) { q.Del("iss") })
		if r := b.get(cb); r.Status != http.StatusFound {
			t.Fatalf("callback without iss from a provider that does not send it: %d %s", r.Status, r.Body)
		}
	})

	t.Run("T30_nonce_wrong_or_missing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for name, edit := range map[string]func(url.Values){
			"wrong":   func(q url.Values) { q.Set("nonce", strings.Repeat("n", 43)) },
			"missing": func(q url.Values) { q.Del("nonce") },
		} {
			b := e.browser()
			authURL := withQuery(t, b.startLogin("/"), edit)
			r := b.get(b.authorize(authURL))
			wantError(t, r, http.StatusBadRequest, "login_failed")
			if r.setCookie("__Host-bff") != "" {
				t.Fatalf("%s nonce: a session was set", name)
			}
		}
		if e.store.creates.Load() != 0 {
			t.Fatal("a session was stored")
		}
	})

	t.Run("T31_invalid_grant_no_retry", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		// The browser swaps the PKCE challenge: the provider then refuses the verifier.
		authURL := withQuery(t, b.startLogin("/"), func(q url.Values) { q.Set("code_challenge", strings.Repeat("C", 43)) })
		r := b.get(b.authorize(authURL))
		wantError(t, r, http.StatusBadRequest, "login_failed")
		if n, ig := e.tokenCalls.Load(), e.provider.Stats().InvalidGrants; n != 1 || ig != 1 {
			t.Fatalf("%d token requests, %d invalid_grant; want 1 and 1 (no retry)", n, ig)
		}
	})

	t.Run("T31_token_endpoint_down_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		e.hook(oidctest.PathToken, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
		r := b.get(cb)
		wantError(t, r, http.StatusServiceUnavailable, "provider_unavailable")
		if e.tokenCalls.Load() != 1 {
			t.Fatalf("%d token requests", e.tokenCalls.Load())
		}
	})

	t.Run("T67_double_login_one_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		first := b.authorize(b.startLogin("/one"))
		second := b.authorize(b.startLogin("/two"))
		wantError(t, b.get(first), http.StatusBadRequest, "invalid_state")
		if r := b.get(second); r.Status != http.StatusFound || r.location() != "/two" {
			t.Fatalf("second callback: %d %q", r.Status, r.location())
		}
		if n := e.store.creates.Load(); n != 1 {
			t.Fatalf("%d sessions", n)
		}
	})

	t.Run("sid_minted_when_provider_sends_none", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) { c.OmitSID = true }))
		b := e.browser()
		b.login("/")
		rec, err := e.store.Get(t.Context(), b.sessionID())
		if err != nil {
			t.Fatal(err)
		}
		if rec.GetSidFromProvider() || len(rec.GetSid()) != 43 {
			t.Fatalf("sid %q from provider %v", rec.GetSid(), rec.GetSidFromProvider())
		}
		logout := b.api("/bff/user").json(t)["logoutUrl"].(string)
		if r := b.get(logout); r.Status != http.StatusFound {
			t.Fatalf("logout with minted sid: %d %s", r.Status, r.Body)
		}
	})

	t.Run("record_contents", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		rec, err := e.store.Get(t.Context(), b.sessionID())
		if err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now()
		if rec.GetIssuer() != e.idp.URL || rec.GetSubject() != "demo-user" || !rec.GetSidFromProvider() || rec.GetSid() == "" ||
			rec.GetAccessToken() == "" || rec.GetRefreshToken() == "" || rec.GetIdToken() == "" || rec.GetTokenType() != "Bearer" ||
			rec.GetAccessTokenExpiresAtUnixMs() != now.Add(oidctest.DefaultAccessTokenTTL).UnixMilli() ||
			rec.GetAbsoluteExpiresAtUnixMs() != now.Add(2*time.Hour).UnixMilli() || !strings.Contains(string(rec.GetClaimsJson()), `"sub":"demo-user"`) {
			t.Fatalf("record: %v", rec)
		}
	})

	t.Run("T58_store_fails_on_create_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		e.store.failWith("Create", errStoreDown)
		r := b.get(cb)
		wantError(t, r, http.StatusServiceUnavailable, "session_store_unavailable")
		if r.setCookie("__Host-bff") != "" {
			t.Fatal("session cookie set without a stored session")
		}
		// A failure that may have landed (a timeout) keeps the tokens: the
		// session might exist.
		if n := len(e.provider.RevocationLog()); n != 0 {
			t.Fatalf("%d tokens revoked after a write that may have landed", n)
		}
	})

	t.Run("T58_store_refuses_create_tokens_revoked", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLogin("/"))
		e.store.failWith("Create", errors.Join(session.ErrUnavailable, session.ErrNotWritten, errors.New("injected: OOM command not allowed")))
		r := b.get(cb)
		wantError(t, r, http.StatusServiceUnavailable, "session_store_unavailable")
		if r.setCookie("__Host-bff") != "" {
			t.Fatal("session cookie set without a stored session")
		}
		// No session holds the tokens the provider just issued: revoked.
		if log := e.provider.RevocationLog(); len(log) != 1 {
			t.Fatalf("revoked %v, want the login's refresh token", log)
		}
	})
}

func mustQuery(t *testing.T, rawURL string) url.Values {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}
