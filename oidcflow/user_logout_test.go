package oidcflow

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

func TestUser(t *testing.T) {
	t.Parallel()

	t.Run("T11_T13_antiforgery_before_store", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		before := e.store.gets.Load()
		// ("1 " is not here: HTTP parsers trim trailing whitespace, so on
		// the wire it is "1". AntiforgeryConfig.Valid refuses it as a value.)
		for _, h := range []http.Header{
			nil, {csrfHeader: {"0"}}, {csrfHeader: {"true"}}, {csrfHeader: {""}},
			{csrfHeader: {"1", "1"}}, {csrfHeader: {"1,1"}}, {"X_csrf": {"1"}}, {csrfHeader: {"11"}},
		} {
			wantError(t, b.do(http.MethodGet, "/bff/user", h), http.StatusForbidden, "antiforgery_required")
		}
		if n := e.store.gets.Load() - before; n != 0 {
			t.Fatalf("%d store lookups without the anti-forgery header", n)
		}
	})

	t.Run("T11_body_holds_no_token_or_session_id", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		r := b.api("/bff/user")
		if r.Status != http.StatusOK {
			t.Fatal(r.Status)
		}
		rec, err := e.store.Get(t.Context(), b.sessionID())
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{rec.GetAccessToken(), rec.GetRefreshToken(), rec.GetIdToken(), b.cookies["__Host-bff"]} {
			if secret == "" || strings.Contains(r.Body, secret) || strings.Contains(strings.Join(headerLines(r.Header), "\n"), secret) {
				t.Fatal("/user answer holds a token or the session ID")
			}
		}
	})

	t.Run("T1_anonymous_no_store_call", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := e.browser().api("/bff/user")
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		if e.store.gets.Load() != 0 || r.setCookie("__Host-bff") != "" {
			t.Fatal("anonymous /user looked up the store or set a cookie")
		}
	})

	t.Run("T2_malformed_cookie_no_store_call", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		for _, v := range []string{"short", strings.Repeat("A", 44), strings.Repeat("*", 43), strings.Repeat("A", 8000)} {
			b := e.browser()
			b.cookies["__Host-bff"] = v
			r := b.api("/bff/user")
			wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		}
		if e.store.gets.Load() != 0 {
			t.Fatal("malformed cookies reached the store")
		}
	})

	t.Run("T3_unknown_session_cleared", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.cookies["__Host-bff"] = strings.Repeat("A", 43)
		r := b.api("/bff/user")
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		if sc := r.setCookie("__Host-bff"); !strings.Contains(sc, "Max-Age=0") || !strings.Contains(sc, "; Secure; HttpOnly") {
			t.Fatalf("no clearing Set-Cookie: %q", sc)
		}
	})

	t.Run("T4_duplicate_cookie", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		v := b.cookies["__Host-bff"]
		r := b.do(http.MethodGet, "/bff/user", http.Header{csrfHeader: {"1"}, "Cookie": {"__Host-bff=" + v + "; __Host-bff=" + v}})
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
	})

	t.Run("T6_past_absolute_lifetime", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		for range 5 { // stay inside the idle timeout
			e.clock.Advance(25 * time.Minute)
			b.api("/bff/user")
		}
		wantError(t, b.api("/bff/user"), http.StatusUnauthorized, "unauthenticated")
	})

	t.Run("T52_store_unavailable_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		e.store.failWith("Get", errStoreDown)
		r := b.api("/bff/user")
		wantError(t, r, http.StatusServiceUnavailable, "session_store_unavailable")
		if r.Header.Get("Retry-After") == "" || r.setCookie("__Host-bff") != "" {
			t.Fatal("503 without Retry-After, or the cookie was touched")
		}
	})
}

func headerLines(h http.Header) []string {
	var out []string
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	return out
}

// recordingRevoker records what it was asked and whether the session still existed then.
type recordingRevoker struct {
	store   session.Store
	mu      sync.Mutex
	calls   []*sessionpb.Session
	existed []bool
	err     error
	id      func() session.ID
}

func (r *recordingRevoker) Revoke(ctx context.Context, s *sessionpb.Session) error {
	_, err := r.store.Get(ctx, r.id())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s)
	r.existed = append(r.existed, err == nil)
	return r.err
}

func TestLogout(t *testing.T) {
	t.Parallel()

	t.Run("T16_wrong_or_missing_sid_no_logout", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		sid := strings.TrimPrefix(b.api("/bff/user").json(t)["logoutUrl"].(string), "/bff/logout?sid=")
		for _, q := range []string{"", "?sid=", "?sid=not-the-sid", "?sid=" + sid + "&sid=" + sid, "?sid=" + sid + "x", "?SID=" + sid} {
			r := b.get("/bff/logout" + q)
			wantError(t, r, http.StatusBadRequest, "invalid_sid")
			if r.setCookie("__Host-bff") != "" {
				t.Fatalf("%q: cookie touched", q)
			}
		}
		if u := b.api("/bff/user"); u.Status != http.StatusOK {
			t.Fatalf("session must survive: %d", u.Status)
		}
		if e.store.deletes.Load() != 0 || e.provider.Stats().EndSessions != 0 {
			t.Fatal("a refused logout deleted something")
		}
	})

	t.Run("anonymous_goes_home", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := e.browser().get("/bff/logout?sid=whatever")
		if r.Status != http.StatusFound || r.location() != e.bff.URL+"/signed-out" {
			t.Fatalf("anonymous logout: %d %q", r.Status, r.location())
		}
		e2 := newEnv(t, withConfig(func(c *Config) { c.PostLogoutRedirectURL = "" }))
		b := e2.browser()
		b.cookies["__Host-bff"] = strings.Repeat("B", 43)
		r = b.get("/bff/logout")
		if r.Status != http.StatusFound || r.location() != "/" || !strings.Contains(r.setCookie("__Host-bff"), "Max-Age=0") {
			t.Fatalf("unknown-session logout: %d %q %q", r.Status, r.location(), r.setCookie("__Host-bff"))
		}
	})

	t.Run("T9_revokes_before_delete", func(t *testing.T) {
		t.Parallel()
		for _, fail := range []bool{false, true} {
			var b *browser
			rev := &recordingRevoker{}
			if fail {
				rev.err = errors.New("revocation endpoint down")
			}
			e := newEnv(t, withDeps(func(d *Deps) { d.Revoker = rev; rev.store = d.Store }))
			b = e.browser()
			rev.id = b.sessionID
			b.login("/")
			logout := b.api("/bff/user").json(t)["logoutUrl"].(string)
			if r := b.get(logout); r.Status != http.StatusFound {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			if len(rev.calls) != 1 || !rev.existed[0] || rev.calls[0].GetRefreshToken() == "" {
				t.Fatalf("revoker calls %d, session existed %v", len(rev.calls), rev.existed)
			}
			if _, err := e.store.Get(t.Context(), b.sessionIDOrZero()); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("fail=%v: session not deleted: %v", fail, err)
			}
		}
	})

	t.Run("no_end_session_endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		e.hook(oidctest.PathDiscovery, e.discoveryWithout("end_session_endpoint"))
		if err := e.h.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		b := e.browser()
		b.login("/")
		r := b.get(b.api("/bff/user").json(t)["logoutUrl"].(string))
		if r.Status != http.StatusFound || r.location() != e.bff.URL+"/signed-out" {
			t.Fatalf("logout: %d %q", r.Status, r.location())
		}
	})

	t.Run("T52_store_delete_fails_cookie_kept", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		logout := b.api("/bff/user").json(t)["logoutUrl"].(string)
		e.store.failWith("Delete", errStoreDown)
		r := b.get(logout)
		wantError(t, r, http.StatusServiceUnavailable, "session_store_unavailable")
		if r.setCookie("__Host-bff") != "" {
			t.Fatal("cookie cleared although the session lives on")
		}
	})

	t.Run("T62_provider_not_discovered_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, notStarted())
		for _, p := range []string{"/bff/login", "/bff/callback?state=a&code=b", "/bff/logout?sid=x"} {
			r := e.browser().get(p)
			wantError(t, r, http.StatusServiceUnavailable, "provider_unavailable")
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", p)
			}
		}
		if e.h.Ready() {
			t.Fatal("ready before discovery")
		}
	})
}

// sessionIDOrZero is the ID the browser held last (its cookie may be cleared by now).
func (b *browser) sessionIDOrZero() session.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.seen {
		if sc := r.setCookie("__Host-bff"); sc != "" && !strings.Contains(sc, "Max-Age=0") {
			v, _, _ := strings.Cut(strings.TrimPrefix(sc, "__Host-bff="), ";")
			id, _ := session.ParseID(v)
			return id
		}
	}
	return session.ID{}
}
