package oidcflow

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// withUserinfo turns the userinfo_claims option on.
func withUserinfo() envOption {
	return withConfig(func(c *Config) { c.UserinfoClaims = true })
}

// storedClaims decodes a record's claims.
func storedClaims(t *testing.T, rec *sessionpb.Session) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.GetClaimsJson(), &m); err != nil {
		t.Fatalf("stored claims %q: %v", rec.GetClaimsJson(), err)
	}
	return m
}

func TestUserinfoLogin(t *testing.T) {
	t.Parallel()

	t.Run("merges_userinfo_only_and_updated_claims", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withUserinfo())
		e.provider.SetUserInfo("demo-user", map[string]any{"department": "research", "name": "Dr. Demo User"})
		b := e.browser()
		b.login("/")
		if n := e.provider.UserInfoCount(); n != 1 {
			t.Fatalf("userinfo asked %d times at login, want 1", n)
		}
		u := b.api("/bff/user")
		if u.Status != http.StatusOK {
			t.Fatalf("/bff/user: %d %s", u.Status, u.Body)
		}
		m := u.json(t)
		if m["department"] != "research" || m["name"] != "Dr. Demo User" || m["email"] != "demo@example.com" || m["sub"] != "demo-user" {
			t.Fatalf("/bff/user = %v; want UserInfo's department and name over the ID token's claims", m)
		}
		if n := e.provider.UserInfoCount(); n != 1 {
			t.Fatalf("/bff/user asked userinfo: %d calls", n)
		}
	})

	t.Run("off_by_default_asks_nothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.provider.SetUserInfo("demo-user", map[string]any{"department": "research"})
		_, rec := e.loggedIn()
		if n := e.provider.UserInfoCount(); n != 0 {
			t.Fatalf("userinfo asked %d times with the option off", n)
		}
		if _, ok := storedClaims(t, rec)["department"]; ok {
			t.Fatal("a UserInfo-only claim was stored with the option off")
		}
	})

	t.Run("protected_claims_not_overridden", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withUserinfo(), withProvider(func(c *oidctest.ProviderConfig) { c.ACRValues = []string{"silver"} }))
		forged := map[string]any{}
		for _, k := range []string{"iss", "aud", "exp", "iat", "nbf", "nonce", "auth_time", "acr", "amr", "azp", "sid", "at_hash", "c_hash"} {
			forged[k] = "forged-" + k
		}
		forged["locale"] = "de"
		e.provider.SetUserInfo("demo-user", forged)
		_, rec := e.loggedIn()
		idc, err := idTokenClaims(rec.GetIdToken())
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := json.Unmarshal(idc, &want); err != nil {
			t.Fatal(err)
		}
		got := storedClaims(t, rec)
		for k := range forged {
			if k == "locale" {
				continue
			}
			if got[k] != want[k] { // absent from the ID token: absent here too
				t.Errorf("claim %s = %v, want the ID token's %v", k, got[k], want[k])
			}
		}
		if got["locale"] != "de" || rec.GetAcr() != "silver" {
			t.Errorf("locale %v, acr %q", got["locale"], rec.GetAcr())
		}
	})

	for _, tc := range []struct {
		name   string
		setup  func(*env)
		status int
		code   string
	}{
		{"sub_mismatch", func(e *env) { e.provider.SetUserInfo("demo-user", map[string]any{"sub": "someone-else"}) }, http.StatusBadRequest, "login_failed"},
		{"provider_error_5xx", func(e *env) { e.provider.SetUserInfoError(http.StatusInternalServerError) }, http.StatusServiceUnavailable, "provider_unavailable"},
		{"token_refused_401", func(e *env) { e.provider.SetUserInfoError(http.StatusUnauthorized) }, http.StatusBadRequest, "login_failed"},
		{"signed_jwt_answer", func(e *env) {
			e.hook(oidctest.PathUserinfo, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/jwt")
				_, _ = w.Write([]byte("e30.e30.sig"))
			})
		}, http.StatusBadRequest, "login_failed"},
		{"not_an_object", func(e *env) {
			e.hook(oidctest.PathUserinfo, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`["demo-user"]`))
			})
		}, http.StatusBadRequest, "login_failed"},
	} {
		t.Run("fails_login_"+tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withUserinfo())
			tc.setup(e)
			b := e.browser()
			r := b.get(b.authorize(b.startLogin("/")))
			if r.Status != tc.status || !strings.Contains(r.Body, tc.code) {
				t.Fatalf("callback: %d %s; want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
			if r.setCookie("__Host-bff") != "" || e.store.creates.Load() != 0 {
				t.Fatal("a session was started although UserInfo failed")
			}
			assertNoTokensLogged(t, e)
		})
	}

	t.Run("provider_without_userinfo_endpoint_never_ready", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, withUserinfo(), notStarted())
		e.hook(oidctest.PathDiscovery, e.discoveryWithout("userinfo_endpoint"))
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		defer cancel()
		if err := e.h.Start(ctx); err == nil || e.h.Ready() {
			t.Fatalf("ready without a userinfo endpoint: %v", err)
		}
		if !strings.Contains(e.logs.String(), "oidc.userinfo_claims") {
			t.Fatalf("the discovery failure does not name oidc.userinfo_claims:\n%s", e.logs.String())
		}
	})
}

func TestUserinfoRefresh(t *testing.T) {
	t.Parallel()

	// refreshed logs in with department=research, lets setup change the
	// provider, then runs one due refresh and returns the record before
	// and after it.
	refreshed := func(t *testing.T, setup func(*env)) (*env, *sessionpb.Session, *sessionpb.Session) {
		t.Helper()
		e := newEnv(t, withUserinfo())
		e.provider.SetUserInfo("demo-user", map[string]any{"department": "research", "room": "B12"})
		id, rec := e.loggedIn()
		setup(e)
		e.clock.Advance(due)
		next, err := e.h.Refresher().Refresh(t.Context(), id, rec)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if next.GetAccessToken() == rec.GetAccessToken() {
			t.Fatal("refresh did not renew the access token")
		}
		stored, err := e.store.Get(t.Context(), id)
		if err != nil || stored.GetAccessToken() != next.GetAccessToken() {
			t.Fatalf("stored record after refresh: %v", err)
		}
		return e, rec, stored
	}

	t.Run("merges_fresh_claims_and_drops_gone_ones", func(t *testing.T) {
		t.Parallel()
		e, before, after := refreshed(t, func(e *env) {
			e.provider.SetUserInfo("demo-user", map[string]any{"department": "sales"})
		})
		if n := e.provider.UserInfoCount(); n != 2 {
			t.Fatalf("userinfo asked %d times for one login and one refresh, want 2", n)
		}
		got := storedClaims(t, after)
		if got["department"] != "sales" {
			t.Errorf("department %v after refresh, want sales", got["department"])
		}
		if _, ok := got["room"]; ok {
			t.Error("a claim UserInfo no longer sends survived the refresh")
		}
		if got["iat"] == storedClaims(t, before)["iat"] {
			t.Error("claims still carry the login's ID token iat, not the refreshed one")
		}
	})

	for _, tc := range []struct {
		name  string
		setup func(*env)
	}{
		{"provider_error", func(e *env) { e.provider.SetUserInfoError(http.StatusBadGateway) }},
		{"sub_mismatch", func(e *env) {
			e.provider.SetUserInfo("demo-user", map[string]any{"sub": "someone-else", "department": "sales"})
		}},
		{"token_refused", func(e *env) { e.provider.SetUserInfoError(http.StatusUnauthorized) }},
	} {
		t.Run("keeps_previous_claims_on_"+tc.name, func(t *testing.T) {
			t.Parallel()
			e, before, after := refreshed(t, tc.setup)
			got, prev := storedClaims(t, after), storedClaims(t, before)
			if got["department"] != "research" || got["room"] != "B12" {
				t.Fatalf("claims after a failed UserInfo: %v; want the previous department and room", got)
			}
			if got["sub"] != "demo-user" || got["exp"] == prev["exp"] {
				t.Errorf("protected claims after refresh: sub %v, exp %v (login's %v); want the refreshed ID token's", got["sub"], got["exp"], prev["exp"])
			}
			if !strings.Contains(e.logs.String(), "userinfo after refresh failed") {
				t.Errorf("no warning logged:\n%s", e.logs.String())
			}
			assertNoTokensLogged(t, e)
		})
	}
}

func TestMergeClaims(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, base, extra, want string
	}{
		{"adds_and_updates", `{"sub":"a","name":"A"}`, `{"sub":"a","name":"B","dept":"x"}`, `{"dept":"x","name":"B","sub":"a"}`},
		{"protected_kept", `{"iss":"i","exp":1,"acr":"1"}`, `{"iss":"evil","exp":9,"acr":"9","amr":["pwd"]}`, `{"acr":"1","exp":1,"iss":"i"}`},
		{"numbers_exact", `{"n":12345678901234567890}`, `{"m":1.50}`, `{"m":1.50,"n":12345678901234567890}`},
		{"empty_base", ``, `{"x":true}`, `{"x":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			extra, err := jsonObject([]byte(tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			got, err := mergeClaims(json.RawMessage(tc.base), extra)
			if err != nil || string(got) != tc.want {
				t.Fatalf("mergeClaims = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if _, err := mergeClaims(json.RawMessage(`null`), nil); err == nil {
		t.Error("a null base merged")
	}
}

// assertNoTokensLogged fails if any token the provider issued is in the logs.
func assertNoTokensLogged(t *testing.T, e *env) {
	t.Helper()
	logs := e.logs.String()
	for _, tok := range e.provider.IssuedTokens() {
		if strings.Contains(logs, tok) {
			t.Fatal("a token appears in the logs")
		}
	}
}
