package integration

import (
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestUserinfoClaims: with oidc.userinfo_claims, a claim only the
// provider's UserInfo endpoint knows reaches the API as an identity header
// through real Envoy; API calls (Checks) ask UserInfo nothing, and a
// refresh grant asks it once and carries its changed answer.
func TestUserinfoClaims(t *testing.T) {
	t.Parallel()
	// A 10s access token is due for refresh 5s after it is issued (the
	// lead is capped at half the lifetime).
	s := startStack(t, harness.Options{Redis: true, AccessTokenTTL: 10 * time.Second, BFFConfig: func(doc map[string]any) {
		doc["oidc"].(map[string]any)["userinfo_claims"] = true
		doc["authz"] = map[string]any{"identity_headers": map[string]any{"x-user-sub": "sub", "x-user-department": "department"}}
	}})
	s.Provider.SetUserInfo("demo-user", map[string]any{"department": "research"})
	b := newBrowser(t, s.URL)

	if r, _ := b.login("/"); r.Status != 200 {
		t.Fatalf("login ended with %d", r.Status)
	}
	loggedIn := time.Now()
	if n := s.Provider.UserInfoCount(); n != 1 {
		t.Fatalf("UserInfo asked %d times at login, want 1", n)
	}
	if u := b.api("/bff/user").json(t); u["department"] != "research" || u["sub"] != "demo-user" {
		t.Fatalf("/bff/user = %v; want the UserInfo-only department", u)
	}

	// whoami calls the API and returns the identity headers it received.
	whoami := func() map[string]any {
		t.Helper()
		r := b.api("/api/whoami")
		if r.Status != 200 {
			t.Fatalf("API: %d %s", r.Status, r.Body)
		}
		w := r.json(t)
		if w["sub"] != "demo-user" {
			t.Fatalf("API saw %v", w)
		}
		h, _ := w["user_headers"].(map[string]any)
		return h
	}
	const checks = 20
	for range checks {
		if h := whoami(); h["X-User-Department"] != "research" || h["X-User-Sub"] != "demo-user" {
			t.Fatalf("identity headers %v; want X-User-Department: research from UserInfo", h)
		}
	}
	if time.Since(loggedIn) >= 5*time.Second {
		t.Fatal("the checks took past the refresh lead; the count below would include a refresh")
	}
	if n := s.Provider.UserInfoCount(); n != 1 {
		t.Fatalf("%d Checks caused %d UserInfo calls, want 0", checks, n-1)
	}

	// The provider's answer changes; the next refresh grant brings it.
	s.Provider.SetUserInfo("demo-user", map[string]any{"department": "sales"})
	time.Sleep(time.Until(loggedIn.Add(5500 * time.Millisecond)))
	refreshes := s.Provider.Stats().RefreshTokenGrants
	for range checks {
		if h := whoami(); h["X-User-Department"] != "sales" {
			t.Fatalf("identity headers after the refresh %v; want X-User-Department: sales", h)
		}
	}
	if st := s.Provider.Stats(); st.RefreshTokenGrants != refreshes+1 || st.UserinfoRequests != 2 {
		t.Fatalf("after one refresh and %d Checks: %d refresh grants, %d UserInfo calls; want 1 and 2 in all",
			checks, st.RefreshTokenGrants-refreshes, st.UserinfoRequests)
	}
}
