package oidcflow

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// TestLoginParameters: /login forwards exactly the allow-listed provider
// parameters, validated, and nothing else the browser sends (T77).
func TestLoginParameters(t *testing.T) {
	t.Parallel()
	t.Run("T77_allow_list_forwarded_everything_else_dropped", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		q := url.Values{
			"returnUrl":  {"/app"},
			"prompt":     {"login consent"},
			"max_age":    {"300"},
			"acr_values": {"gold silver"},
			"login_hint": {"alice@example.com"},
			"ui_locales": {"de-CH en"},
			// Never from the browser: the config and the flow own these.
			"redirect_uri": {"https://evil.example/cb"}, "response_mode": {"form_post"}, "client_id": {"other"},
			"scope": {"openid admin"}, "request": {"eyJhbGciOiJub25lIn0.e30."}, "request_uri": {"https://evil.example/r"},
			"state": {"attacker"}, "nonce": {"attacker"}, "code_challenge": {"x"}, "response_type": {"token"},
		}
		r := e.browser().get("/bff/login?" + q.Encode())
		if r.Status != http.StatusFound {
			t.Fatalf("/login: %d %s", r.Status, r.Body)
		}
		loc, err := url.Parse(r.location())
		if err != nil {
			t.Fatal(err)
		}
		got := loc.Query()
		for k, want := range map[string]string{"prompt": "login consent", "max_age": "300", "acr_values": "gold silver", "login_hint": "alice@example.com", "ui_locales": "de-CH en",
			"redirect_uri": e.cfg.RedirectURL, "client_id": e.cfg.ClientID, "scope": strings.Join(e.cfg.Scopes, " "), "response_type": "code"} {
			if v := got[k]; len(v) != 1 || v[0] != want {
				t.Errorf("%s = %q, want exactly %q", k, v, want)
			}
		}
		for _, k := range []string{"response_mode", "request", "request_uri"} {
			if got.Has(k) {
				t.Errorf("%s reached the provider: %q", k, got[k])
			}
		}
		if got.Get("state") == "attacker" || got.Get("nonce") == "attacker" || got.Get("code_challenge") == "x" {
			t.Error("the browser chose the state, nonce or PKCE challenge")
		}
	})

	t.Run("bad_values_400_nothing_stored", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, q := range []string{
			"prompt=none+login", "prompt=sudo", "max_age=-1", "max_age=1e3", "max_age=%2B5", "max_age=9999999999999",
			"acr_values=a%22b", "ui_locales=en_GB", "login_hint=a%0Ab", "prompt=login&prompt=none",
			"acr_values=" + url.QueryEscape(strings.Repeat("a ", 11)), "login_hint=" + strings.Repeat("x", 257),
		} {
			r := e.browser().get("/bff/login?" + q)
			wantError(t, r, http.StatusBadRequest, "invalid_request")
			if r.location() != "" {
				t.Errorf("%s: redirected to %q", q, r.location())
			}
		}
		if n := e.store.puts.Load(); n != 0 {
			t.Fatalf("%d login states stored for bad parameters", n)
		}
	})
}

// TestStepUpLogin: the callback holds the ID token to the acr_values and
// max_age the login asked for; the session records acr and auth_time from
// the verified ID token only (T75), and /user reports them.
func TestStepUpLogin(t *testing.T) {
	t.Parallel()
	t.Run("T75_acr_reached_recorded_from_id_token", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) { c.ACRValues = []string{"silver", "gold"} }))
		b := e.browser()
		// The browser also claims acr and auth_time, at /login and at the
		// callback: both ignored.
		cb := b.authorize(b.startLoginWith("acr_values=gold&max_age=60&acr=platinum&auth_time=1"))
		r := b.get(cb + "&acr=platinum&auth_time=1")
		if r.Status != http.StatusFound {
			t.Fatalf("callback: %d %s", r.Status, r.Body)
		}
		rec := e.session(t, b)
		if rec.GetAcr() != "gold" || rec.GetAuthTimeUnix() != e.clock.Now().Unix() {
			t.Fatalf("session acr %q auth_time %d, want gold and the provider's %d", rec.GetAcr(), rec.GetAuthTimeUnix(), e.clock.Now().Unix())
		}
		u := b.api("/bff/user").json(t)
		if u["acr"] != "gold" || u["auth_time"] != float64(e.clock.Now().Unix()) {
			t.Fatalf("/user acr %v auth_time %v", u["acr"], u["auth_time"])
		}
	})

	t.Run("acr_not_reached_is_step_up_failed_no_session", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withProvider(func(c *oidctest.ProviderConfig) { c.ACRValues = []string{"silver"} }))
		b := e.browser()
		r := b.get(b.authorize(b.startLoginWith("acr_values=gold")))
		wantError(t, r, http.StatusBadRequest, "step_up_failed")
		if r.setCookie("__Host-bff") != "" {
			t.Fatal("a session cookie was set for a login that did not reach the asked acr")
		}
		if n := e.store.creates.Load(); n != 0 {
			t.Fatalf("%d sessions created", n)
		}
	})

	t.Run("max_age_without_fresh_auth_time_is_step_up_failed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		cb := b.authorize(b.startLoginWith("max_age=10"))
		// The browser came back late (within the code's 1m lifetime): the
		// authentication is older than max_age plus the leeway.
		e.clock.Advance(45 * time.Second)
		wantError(t, b.get(cb), http.StatusBadRequest, "step_up_failed")
	})
}

// TestSilentLogin: prompt=none that the provider cannot finish without the
// user sends the browser back to its returnUrl with bff_login=required;
// one the provider finishes is an ordinary login.
func TestSilentLogin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ret, want string
	}{
		{"/app", "/app?bff_login=required"},
		{"/app?tab=2", "/app?tab=2&bff_login=required"},
	} {
		e := newEnv(t)
		e.provider.SetSilentLoginFails(true)
		b := e.browser()
		auth := b.startLoginWith("prompt=none&returnUrl=" + url.QueryEscape(tc.ret))
		r := b.get(auth)
		if r.Status != http.StatusFound {
			t.Fatalf("provider: %d", r.Status)
		}
		cb := b.get(r.location())
		if cb.Status != http.StatusFound || cb.location() != tc.want {
			t.Fatalf("silent login refused: %d %q, want 302 to %q", cb.Status, cb.location(), tc.want)
		}
		if cb.setCookie("__Host-bff") != "" {
			t.Fatal("a refused silent login set a session cookie")
		}
	}

	// An error answer to a login that did not ask prompt=none stays an error page.
	e := newEnv(t)
	e.provider.SetAuthorizeError("login_required")
	b := e.browser()
	r := b.get(b.startLogin("/app"))
	wantError(t, b.get(r.location()), http.StatusBadRequest, "login_failed")

	// prompt=none that succeeds is a login like any other.
	e = newEnv(t)
	b = e.browser()
	r = b.get(b.authorize(b.startLoginWith("prompt=none&returnUrl=%2Fapp")))
	if r.Status != http.StatusFound || r.location() != "/app" || r.setCookie("__Host-bff") == "" {
		t.Fatalf("silent login that succeeded: %d %q", r.Status, r.location())
	}
}

// startLoginWith calls /login with query and returns the provider URL.
func (b *browser) startLoginWith(query string) string {
	b.e.t.Helper()
	r := b.get("/bff/login?" + query)
	if r.Status != http.StatusFound || !strings.HasPrefix(r.location(), b.e.idp.URL+"/") {
		b.e.t.Fatalf("/login?%s: %d %q %s", query, r.Status, r.location(), r.Body)
	}
	return r.location()
}

// session is b's stored session record.
func (e *env) session(t *testing.T, b *browser) *sessionpb.Session {
	t.Helper()
	rec, err := e.store.Get(t.Context(), b.sessionID())
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// FuzzLoginParams: whatever query a browser sends, /login forwards only
// the allow-listed parameters, each within bounds and free of control
// characters, prompt=none alone, and max_age a non-negative number.
func FuzzLoginParams(f *testing.F) {
	for _, s := range []string{
		"prompt=none", "prompt=login+consent", "max_age=0", "max_age=300", "acr_values=gold+silver",
		"login_hint=a%40b", "ui_locales=de-CH+en", "prompt=none+login", "max_age=-1", "redirect_uri=https://evil",
		"prompt=%00", "acr_values=%22", "max_age=1&max_age=2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := parseLoginParams(q)
		if err != nil {
			return
		}
		for _, kv := range [...][2]string{{"prompt", p.prompt}, {"acr_values", p.acrValues}, {"login_hint", p.loginHint}, {"ui_locales", p.uiLocales}} {
			if len(kv[1]) > maxLoginParamLen || strings.ContainsFunc(kv[1], isCtl) {
				t.Fatalf("%s forwarded as %q", kv[0], kv[1])
			}
		}
		if strings.Contains(p.prompt, "none") && p.prompt != "none" {
			t.Fatalf("prompt %q combines none", p.prompt)
		}
		if p.maxAge != nil && *p.maxAge < 0 {
			t.Fatalf("max_age %d", *p.maxAge)
		}
		if strings.ContainsAny(p.acrValues, `"\`) {
			t.Fatalf("acr_values %q", p.acrValues)
		}
	})
}
