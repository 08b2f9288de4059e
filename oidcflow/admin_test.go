package oidcflow

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAdminHandler(t *testing.T) {
	t.Parallel()
	const token = "admin-token-0123456789"
	do := func(t *testing.T, h http.Handler, method, target, bearer string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, target, nil)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, target, b)
		}
		return rec.Code, m
	}

	t.Run("bearer_token_required_when_set", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		h := AdminHandler(e.h.Sessions(), token, nil)
		for _, bearer := range []string{"", "wrong", token + "x"} {
			if code, m := do(t, h, http.MethodGet, "/admin/sessions?sub=demo-user", bearer); code != http.StatusUnauthorized || m["error"] != "unauthorized" {
				t.Fatalf("bearer %q: %d %v", bearer, code, m)
			}
		}
		if code, _ := do(t, h, http.MethodGet, "/admin/sessions?sub=demo-user", token); code != http.StatusOK {
			t.Fatalf("with the token: %d", code)
		}
	})

	t.Run("list_shows_no_tokens_and_ends_by_ref_and_by_sub", func(t *testing.T) {
		t.Parallel()
		rev := &countingRevoker{}
		e := newEnv(t, withDeps(func(d *Deps) { d.Revoker = rev }))
		a, recA := e.loggedIn()
		b, _ := e.loggedIn()
		h := AdminHandler(e.h.Sessions(), "", nil)
		code, m := do(t, h, http.MethodGet, "/admin/sessions?sub=demo-user", "")
		list, _ := m["sessions"].([]any)
		if code != http.StatusOK || len(list) != 2 {
			t.Fatalf("list: %d %v", code, m)
		}
		raw, _ := json.Marshal(m)
		for _, secret := range []string{recA.GetAccessToken(), recA.GetRefreshToken(), recA.GetIdToken(), a.String()} {
			if strings.Contains(string(raw), secret) {
				t.Fatal("the session list carries a token or a session ID")
			}
		}
		var refA string
		for _, s := range list {
			if s.(map[string]any)["sid"] == recA.GetSid() {
				refA = s.(map[string]any)["ref"].(string)
			}
		}
		if code, m := do(t, h, http.MethodDelete, "/admin/sessions/"+refA, ""); code != http.StatusOK || m["ended"] != 1.0 {
			t.Fatalf("end by ref: %d %v", code, m)
		}
		if e.alive(a) || !e.alive(b) || rev.n.Load() != 1 {
			t.Fatalf("after ending a: a alive %v, b alive %v, revocations %d", e.alive(a), e.alive(b), rev.n.Load())
		}
		if code, m := do(t, h, http.MethodDelete, "/admin/sessions/"+refA, ""); code != http.StatusNotFound || m["error"] != "not_found" {
			t.Fatalf("ending it again: %d %v", code, m)
		}
		if code, m := do(t, h, http.MethodDelete, "/admin/sessions?sub=demo-user", ""); code != http.StatusOK || m["ended"] != 1.0 {
			t.Fatalf("end by sub: %d %v", code, m)
		}
		if e.alive(b) || rev.n.Load() != 2 {
			t.Fatalf("b alive %v, revocations %d", e.alive(b), rev.n.Load())
		}
	})

	t.Run("bad_requests", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		h := AdminHandler(e.h.Sessions(), "", nil)
		for _, tc := range []struct {
			method, target string
			code           int
		}{
			{http.MethodGet, "/admin/sessions", http.StatusBadRequest},
			{http.MethodDelete, "/admin/sessions", http.StatusBadRequest},
			{http.MethodDelete, "/admin/sessions/short", http.StatusBadRequest},
			{http.MethodDelete, "/admin/sessions/" + strings.Repeat("A", 43), http.StatusNotFound},
		} {
			if code, _ := do(t, h, tc.method, tc.target, ""); code != tc.code {
				t.Errorf("%s %s: %d, want %d", tc.method, tc.target, code, tc.code)
			}
		}
	})

	t.Run("store_down_503", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.store.failWith("FindSessions", errStoreDown)
		h := AdminHandler(e.h.Sessions(), "", nil)
		if code, m := do(t, h, http.MethodGet, "/admin/sessions?sub=demo-user", ""); code != http.StatusServiceUnavailable || m["error"] != "session_store_unavailable" {
			t.Fatalf("%d %v", code, m)
		}
	})
}
