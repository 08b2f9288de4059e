package oidcflow

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestFlow walks login → callback → user → logout with one browser and
// checks what the browser holds at each step.
func TestFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.browser()

	cb := b.login("/app/orders?x=1")
	if cb.location() != "/app/orders?x=1" {
		t.Fatalf("T17 callback redirected to %q", cb.location())
	}
	if sc := cb.setCookie(loginCookieName); !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("login cookie not cleared: %q", sc)
	}
	sc := cb.setCookie("__Host-bff")
	for _, want := range []string{"; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"} {
		if !strings.Contains(sc, want) {
			t.Errorf("T10 session Set-Cookie lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(sc), "domain=") || len(sc) > 4096 {
		t.Error("T10 session cookie has a Domain or is too long")
	}

	u := b.api("/bff/user")
	if u.Status != http.StatusOK || u.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("/user: %d %q %s", u.Status, u.Header.Get("Cache-Control"), u.Body)
	}
	user := u.json(t)
	if user["sub"] != "demo-user" || user["name"] != "Demo User" || user["email"] != "demo@example.com" {
		t.Fatalf("/user claims: %v", user)
	}
	logout, _ := user["logoutUrl"].(string)
	if !strings.HasPrefix(logout, "/bff/logout?sid=") || len(logout) == len("/bff/logout?sid=") {
		t.Fatalf("logoutUrl = %q", logout)
	}
	wantExp := sessiontestEpochPlus(2 * time.Hour)
	if exp, _ := user["sessionExpiresAt"].(float64); int64(exp) != wantExp {
		t.Errorf("sessionExpiresAt = %v, want %d", user["sessionExpiresAt"], wantExp)
	}

	old := b.cookies["__Host-bff"]
	out := b.get(logout)
	if out.Status != http.StatusFound {
		t.Fatalf("logout: %d %s", out.Status, out.Body)
	}
	loc, err := url.Parse(out.location())
	if err != nil || !strings.HasPrefix(out.location(), e.idp.URL+"/end_session?") {
		t.Fatalf("logout went to %q", out.location())
	}
	q := loc.Query()
	if q.Get("id_token_hint") == "" || q.Get("client_id") != testClientID || q.Get("post_logout_redirect_uri") != e.bff.URL+"/signed-out" {
		t.Fatalf("end_session query: %v", q)
	}
	if sc := out.setCookie("__Host-bff"); !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("logout did not clear the cookie: %q", sc)
	}
	// The provider accepts the logout request.
	if r := b.get(out.location()); r.Status != http.StatusFound || r.location() != e.bff.URL+"/signed-out" {
		t.Fatalf("provider end_session: %d %q %s", r.Status, r.location(), r.Body)
	}
	wantError(t, b.api("/bff/user"), http.StatusUnauthorized, "unauthenticated")

	// T8: the old cookie after logout finds nothing.
	b.cookies["__Host-bff"] = old
	wantError(t, b.api("/bff/user"), http.StatusUnauthorized, "unauthenticated")

	// Tokens never reach the browser; the ID token only as id_token_hint,
	// the one place the logout protocol puts it.
	all := b.everything()
	all = strings.ReplaceAll(all, out.location(), "")
	all = strings.ReplaceAll(all, url.QueryEscape(out.location()), "")
	for _, tok := range e.provider.IssuedTokens() {
		if strings.Contains(all, tok) {
			t.Fatal("a token issued by the provider reached the browser")
		}
	}
	for _, secret := range []string{old, testSecret} {
		if strings.Contains(e.logs.String(), secret) {
			t.Fatal("the log holds a session ID or the client secret")
		}
	}
	for _, tok := range e.provider.IssuedTokens() {
		if strings.Contains(e.logs.String(), tok) {
			t.Fatal("the log holds a token")
		}
	}
}

func sessiontestEpochPlus(d time.Duration) int64 {
	return sessiontestEpoch().Add(d).Unix()
}
