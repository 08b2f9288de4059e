package oidctest

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestUserInfoControls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.login(t).AccessToken
	get := func() (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+PathUserinfo, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, m
	}

	if st, m := get(); st != http.StatusOK || m["sub"] != "demo-user" || m["department"] != nil {
		t.Fatalf("plain userinfo: %d %v", st, m)
	}
	e.p.SetUserInfo("someone-else", map[string]any{"department": "wrong user"})
	e.p.SetUserInfo("demo-user", map[string]any{"department": "research", "name": "Dr. Demo"})
	if st, m := get(); st != http.StatusOK || m["department"] != "research" || m["name"] != "Dr. Demo" || m["email"] != "demo@example.com" {
		t.Fatalf("userinfo with extra claims: %d %v", st, m)
	}
	e.p.SetUserInfoError(http.StatusServiceUnavailable)
	if st, m := get(); st != http.StatusServiceUnavailable || m["error"] != "server_error" {
		t.Fatalf("failing userinfo: %d %v", st, m)
	}
	e.p.SetUserInfoError(0)
	e.p.SetUserInfo("demo-user", nil)
	if st, m := get(); st != http.StatusOK || m["department"] != nil || m["name"] != "Demo User" {
		t.Fatalf("userinfo after reset: %d %v", st, m)
	}
	if n := e.p.UserInfoCount(); n != 4 {
		t.Fatalf("UserInfoCount = %d, want 4", n)
	}
}
