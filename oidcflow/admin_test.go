package oidcflow

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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
		h := AdminHandler(oneFrontend(e.h.Sessions()), token, nil)
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
		h := AdminHandler(oneFrontend(e.h.Sessions()), "", nil)
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
		h := AdminHandler(oneFrontend(e.h.Sessions()), "", nil)
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
		h := AdminHandler(oneFrontend(e.h.Sessions()), "", nil)
		if code, m := do(t, h, http.MethodGet, "/admin/sessions?sub=demo-user", ""); code != http.StatusServiceUnavailable || m["error"] != "session_store_unavailable" {
			t.Fatalf("%d %v", code, m)
		}
	})
}

// oneFrontend is the frontends of a single-frontend deployment.
func oneFrontend(s *Sessions) func() []*Sessions {
	return func() []*Sessions { return []*Sessions{s} }
}

// TestAdminHandlerFrontends: ?frontend= picks the frontend whose sessions
// are listed or ended; it is required when there is more than one, and the
// set is read per request, so a reload is seen at once.
func TestAdminHandlerFrontends(t *testing.T) {
	t.Parallel()
	shop := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "shop" }))
	admin := newEnv(t, withDeps(func(d *Deps) { d.Frontend = "admin" }))
	idShop, _ := shop.loggedIn()
	idAdmin, _ := admin.loggedIn()
	var current atomic.Pointer[[]*Sessions]
	current.Store(&[]*Sessions{shop.h.Sessions(), admin.h.Sessions()})
	h := AdminHandler(func() []*Sessions { return *current.Load() }, "", nil)
	call := func(method, target string) (int, map[string]any) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, target, nil))
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("%s %s: not JSON: %s", method, target, rec.Body)
		}
		return rec.Code, m
	}

	for _, tc := range []struct {
		name, method, target string
		code                 int
		errCode, mentions    string
	}{
		{"list_needs_frontend", http.MethodGet, "/admin/sessions?sub=demo-user", 400, "invalid_request", "admin, shop"},
		{"end_needs_frontend", http.MethodDelete, "/admin/sessions?sub=demo-user", 400, "invalid_request", "admin, shop"},
		{"ref_needs_frontend", http.MethodDelete, "/admin/sessions/" + strings.Repeat("A", 43), 400, "invalid_request", "admin, shop"},
		{"empty_frontend", http.MethodGet, "/admin/sessions?frontend=&sub=demo-user", 400, "invalid_request", "admin, shop"},
		{"frontend_twice", http.MethodGet, "/admin/sessions?frontend=shop&frontend=admin&sub=demo-user", 400, "invalid_request", "more than once"},
		{"unknown_frontend", http.MethodGet, "/admin/sessions?frontend=nope&sub=demo-user", 404, "frontend_unknown", "admin, shop"},
		{"unknown_frontend_end", http.MethodDelete, "/admin/sessions?frontend=default&sub=demo-user", 404, "frontend_unknown", "admin, shop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, m := call(tc.method, tc.target)
			desc, _ := m["error_description"].(string)
			if code != tc.code || m["error"] != tc.errCode || !strings.Contains(desc, tc.mentions) {
				t.Fatalf("%d %v; want %d %s mentioning %q", code, m, tc.code, tc.errCode, tc.mentions)
			}
		})
	}
	if !shop.alive(idShop) || !admin.alive(idAdmin) {
		t.Fatal("a refused request ended a session")
	}

	code, m := call(http.MethodGet, "/admin/sessions?frontend=shop&sub=demo-user")
	if list, _ := m["sessions"].([]any); code != http.StatusOK || len(list) != 1 {
		t.Fatalf("list shop: %d %v", code, m)
	}
	if code, m := call(http.MethodDelete, "/admin/sessions?frontend=admin&sub=demo-user"); code != http.StatusOK || m["ended"] != 1.0 {
		t.Fatalf("end admin's: %d %v", code, m)
	}
	if !shop.alive(idShop) || admin.alive(idAdmin) {
		t.Fatalf("after ending admin's sessions: shop alive %v, admin alive %v", shop.alive(idShop), admin.alive(idAdmin))
	}

	// A reload down to one frontend: the parameter becomes optional, and
	// the removed frontend is unknown.
	current.Store(&[]*Sessions{shop.h.Sessions()})
	if code, m := call(http.MethodGet, "/admin/sessions?sub=demo-user"); code != http.StatusOK {
		t.Fatalf("one frontend, no parameter: %d %v", code, m)
	}
	if code, m := call(http.MethodGet, "/admin/sessions?frontend=admin&sub=demo-user"); code != http.StatusNotFound || m["error"] != "frontend_unknown" {
		t.Fatalf("a removed frontend: %d %v", code, m)
	}
	current.Store(&[]*Sessions{})
	if code, m := call(http.MethodGet, "/admin/sessions?sub=demo-user"); code != http.StatusNotFound || m["error"] != "frontend_unknown" {
		t.Fatalf("no frontends: %d %v", code, m)
	}
	if shop.h.Sessions().Frontend() != "shop" {
		t.Fatalf("Sessions.Frontend = %q", shop.h.Sessions().Frontend())
	}
}
