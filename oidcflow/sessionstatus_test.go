package oidcflow

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// statusOf decodes a 200 <prefix>session answer, checking its headers and
// that it holds exactly the documented members.
func statusOf(t *testing.T, r response) map[string]int64 {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.Status, r.Body)
	}
	for h, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Vary": "Cookie"} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	var m map[string]int64
	dec := json.NewDecoder(strings.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("body is not an object of integers: %v\n%s", err, r.Body)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"absoluteExpiresAt", "accessTokenExpiresAt", "idleExpiresAt", "idleTimeout", "now"}; !slices.Equal(keys, want) {
		t.Fatalf("members %v, want %v", keys, want)
	}
	return m
}

func postStatus(b *browser) response {
	return b.do(http.MethodPost, "/bff/session", http.Header{csrfHeader: {"1"}})
}

// TestSessionStatus covers <prefix>session: GET reports without renewing
// the idle timeout, POST renews it, and both answer like /user otherwise.
func TestSessionStatus(t *testing.T) {
	t.Parallel()
	idle := sessiontest.Config().IdleTimeout

	t.Run("get_reports_and_never_slides", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		login := e.clock.Now()
		rec, _, err := e.store.Inspect(t.Context(), b.sessionID())
		if err != nil {
			t.Fatal(err)
		}
		gets := e.store.gets.Load()
		for i := range 3 { // polled every 9 minutes: 27m < 30m idle
			e.clock.Advance(9 * time.Minute)
			got := statusOf(t, b.api("/bff/session"))
			want := map[string]int64{
				"idleExpiresAt":        login.Add(idle).Unix(),
				"absoluteExpiresAt":    rec.GetAbsoluteExpiresAtUnixMs() / 1000,
				"accessTokenExpiresAt": rec.GetAccessTokenExpiresAtUnixMs() / 1000,
				"idleTimeout":          int64(idle / time.Second),
				"now":                  e.clock.Now().Unix(),
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("poll %d: %s = %d, want %d", i, k, got[k], v)
				}
			}
		}
		if n := e.store.gets.Load() - gets; n != 0 {
			t.Errorf("GET /bff/session made %d sliding reads", n)
		}
		e.clock.Advance(3*time.Minute + time.Second) // past the login's idle expiry
		r := b.api("/bff/session")
		wantError(t, r, http.StatusUnauthorized, "unauthenticated")
		if sc := r.setCookie("__Host-bff"); !strings.Contains(sc, "Max-Age=0") {
			t.Errorf("the dead session's cookie was not cleared: %q", sc)
		}
	})

	t.Run("post_extends", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		e.clock.Advance(20 * time.Minute)
		extended := statusOf(t, postStatus(b))
		if want := e.clock.Now().Add(idle).Unix(); extended["idleExpiresAt"] != want || extended["now"] != e.clock.Now().Unix() {
			t.Fatalf("after POST: idleExpiresAt %d now %d, want %d", extended["idleExpiresAt"], extended["now"], want)
		}
		e.clock.Advance(25 * time.Minute) // past the login's idle expiry, inside the extension
		if got := statusOf(t, b.api("/bff/session")); got["idleExpiresAt"] != extended["idleExpiresAt"] {
			t.Fatalf("GET after POST: idleExpiresAt %d, want %d", got["idleExpiresAt"], extended["idleExpiresAt"])
		}
	})

	t.Run("idle_expiry_capped_by_absolute", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		var got map[string]int64
		for range 4 { // at 100m, an extension by the 30m idle timeout would reach past the 2h absolute lifetime
			e.clock.Advance(25 * time.Minute)
			got = statusOf(t, postStatus(b))
		}
		if got["idleExpiresAt"] != got["absoluteExpiresAt"] {
			t.Fatalf("idleExpiresAt %d, want the absolute expiry %d", got["idleExpiresAt"], got["absoluteExpiresAt"])
		}
	})

	t.Run("holds_no_token_or_session_id", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		rec, _, err := e.store.Inspect(t.Context(), b.sessionID())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []response{b.api("/bff/session"), postStatus(b)} {
			all := r.Body + strings.Join(headerLines(r.Header), "\n")
			for _, secret := range []string{rec.GetAccessToken(), rec.GetRefreshToken(), rec.GetIdToken(), rec.GetSid(), b.cookies["__Host-bff"]} {
				if secret == "" || strings.Contains(all, secret) {
					t.Fatal("/session answer holds a token, the sid or the session ID")
				}
			}
		}
	})

	t.Run("head_is_get_without_body", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.browser()
		b.login("/")
		r := b.do(http.MethodHead, "/bff/session", http.Header{csrfHeader: {"1"}})
		if r.Status != http.StatusOK || r.Body != "" || e.store.gets.Load() != 0 {
			t.Fatalf("HEAD: %d %q, %d sliding reads", r.Status, r.Body, e.store.gets.Load())
		}
	})

	denials := []struct {
		name     string
		method   string
		header   http.Header
		loggedIn bool
		cookie   string // replaces the session cookie when set
		fail     string // countingStore method to fail
		status   int
		code     string
		lookups  bool // whether the store may be asked
		cleared  bool // whether the session cookie is cleared
	}{
		{name: "put_405", method: http.MethodPut, header: http.Header{csrfHeader: {"1"}}, loggedIn: true, status: 405, code: "method_not_allowed"},
		{name: "delete_405", method: http.MethodDelete, header: http.Header{csrfHeader: {"1"}}, loggedIn: true, status: 405, code: "method_not_allowed"},
		{name: "get_without_antiforgery_403", method: http.MethodGet, loggedIn: true, status: 403, code: "antiforgery_required"},
		{name: "post_without_antiforgery_403", method: http.MethodPost, loggedIn: true, status: 403, code: "antiforgery_required"},
		{name: "post_wrong_antiforgery_403", method: http.MethodPost, header: http.Header{csrfHeader: {"0"}}, loggedIn: true, status: 403, code: "antiforgery_required"},
		{name: "get_anonymous_401", method: http.MethodGet, header: http.Header{csrfHeader: {"1"}}, status: 401, code: "unauthenticated"},
		{name: "post_anonymous_401", method: http.MethodPost, header: http.Header{csrfHeader: {"1"}}, status: 401, code: "unauthenticated"},
		{name: "get_malformed_cookie_401", method: http.MethodGet, header: http.Header{csrfHeader: {"1"}}, cookie: "short", status: 401, code: "unauthenticated", cleared: true},
		{name: "get_unknown_session_401", method: http.MethodGet, header: http.Header{csrfHeader: {"1"}}, cookie: strings.Repeat("A", 43), status: 401, code: "unauthenticated", lookups: true, cleared: true},
		{name: "post_unknown_session_401", method: http.MethodPost, header: http.Header{csrfHeader: {"1"}}, cookie: strings.Repeat("A", 43), status: 401, code: "unauthenticated", lookups: true, cleared: true},
		{name: "get_store_down_503", method: http.MethodGet, header: http.Header{csrfHeader: {"1"}}, loggedIn: true, fail: "Inspect", status: 503, code: "session_store_unavailable", lookups: true},
		{name: "post_store_down_503", method: http.MethodPost, header: http.Header{csrfHeader: {"1"}}, loggedIn: true, fail: "Get", status: 503, code: "session_store_unavailable", lookups: true},
	}
	for _, tc := range denials {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.browser()
			if tc.loggedIn {
				b.login("/")
			}
			if tc.cookie != "" {
				b.cookies["__Host-bff"] = tc.cookie
			}
			if tc.fail != "" {
				e.store.failWith(tc.fail, errStoreDown)
			}
			before := e.store.lookups()
			r := b.do(tc.method, "/bff/session", tc.header)
			wantError(t, r, tc.status, tc.code)
			if n := e.store.lookups() - before; !tc.lookups && n != 0 {
				t.Errorf("%d store lookups, want none", n)
			}
			if cleared := strings.Contains(r.setCookie("__Host-bff"), "Max-Age=0"); cleared != tc.cleared {
				t.Errorf("session cookie cleared: %v, want %v", cleared, tc.cleared)
			}
			if tc.status == http.StatusMethodNotAllowed && r.Header.Get("Allow") != sessionStatusAllow {
				t.Errorf("Allow: %q, want %q", r.Header.Get("Allow"), sessionStatusAllow)
			}
			if tc.status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// TestSessionStatusNeedsIdleTimeout: a handler without the idle timeout it
// reports is refused at construction, not answered with 0 later.
func TestSessionStatusNeedsIdleTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := NewHandler(e.cfg, Deps{Store: e.store, Cookie: e.h.cookie, Antiforgery: e.h.antiforgery,
		AbsoluteLifetime: e.h.lifetime, Provider: e.h.provider})
	if err == nil || !strings.Contains(err.Error(), "deps.IdleTimeout") {
		t.Fatalf("NewHandler without IdleTimeout: %v", err)
	}
}
