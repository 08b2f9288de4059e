package authz

import (
	"context"
	"strings"
	"testing"
)

// FuzzCheckRequest: whatever path, headers and cookie arrive, Check never
// panics, never returns a gRPC error, never passes a `user` route without the
// one valid session, never lets a client's authorization through, and never
// echoes the cookie or a token in a denial.
func FuzzCheckRequest(f *testing.F) {
	seeds := []struct {
		method, target, csrf, cookie, authz, hk, hv, policy string
		raw                                                 bool
	}{
		{"GET", "/api/orders", "1", "__Host-bff=$ID", "", "", "", "user", false},
		{"GET", "/api/orders", "1", "theme=dark; __Host-bff=$ID", "Bearer evil", "x-user-id", "admin", "user", false},
		{"POST", "/api/../api/x", "1,1", "__Host-bff=$ID; __Host-bff=$ID", "", "", "", "user", true},
		{"GET", "/api%2Fx", "1", "__Host-bff=$ID", "", "", "", "", false},
		{"OPTIONS", "/api/x", "", "__Host-bff=$ID", "", "access-control-request-method", "POST", "user", false},
		{"GET", "/app/x?y=1", "", "", "", "sec-fetch-mode", "navigate", "", false},
		{"GET", "/", "", "__Host-bff=$ID", "Bearer x", "", "", "none", false},
		{"GET", "/api/public/x", "1", "__Host-bff=AAAA", "", "", "", "user_or_none", true},
		{"GET", "/x", "1", "__Host-bff=$ID\x00", "", "x-a", "\xff", "client", true},
		{"GET", "/%2e%2e/x", "1", "__Host-bff=" + strings.Repeat("A", 43), "", "", "", "bogus", false},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.csrf, s.cookie, s.authz, s.hk, s.hv, s.policy, s.raw)
	}
	e := newEnv(f, quiet())
	f.Fuzz(func(t *testing.T, method, target, csrf, cookie, authz, hk, hv, policy string, raw bool) {
		cookie = strings.ReplaceAll(cookie, "$ID", e.idStr)
		h := map[string]string{}
		add := func(k, v string) {
			if v != "" {
				h[k] = v
			}
		}
		add(csrfHeader, csrf)
		add("cookie", cookie)
		add("authorization", authz)
		if hk != "" {
			add(strings.ToLower(hk), hv)
		}
		var ext map[string]string
		if policy != "" {
			ext = map[string]string{extPolicy: policy}
		}
		in := creq(method, target, h, ext)
		if raw {
			var entries [][2]string
			for k, v := range h {
				entries = append(entries, [2]string{k, v})
			}
			in = rawReq(method, target, entries, ext)
		}
		resp, err := e.srv.Check(context.Background(), in)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v %v", resp, err)
		}
		if ok := resp.GetOkResponse(); ok != nil {
			v, n := upstreamHeader(resp, "authorization")
			switch {
			case n == 0 && !removes(resp, "authorization"):
				t.Fatalf("a pass keeps the client's authorization: %v", ok)
			case n > 1 || n == 1 && v != "Bearer "+testToken:
				t.Fatalf("upstream authorization %q ×%d", v, n)
			}
			if policy == "user" {
				id, err := e.cookie.ReadID(cookie)
				if err != nil || !id.Equal(e.id) || n != 1 {
					t.Fatalf("user route passed without the valid session: cookie %q", cookie)
				}
			}
			// The session this request carried never reaches upstream, in
			// any cookie (T49). A request whose session cookie does not carry
			// it may hold the same string elsewhere: that is only what the
			// client chose to send, and no credential of this request.
			if id, err := e.cookie.ReadID(cookie); err == nil && id.Equal(e.id) {
				if c, _ := upstreamHeader(resp, "cookie"); strings.Contains(c, e.idStr) {
					t.Fatalf("session ID upstream: %q", c)
				}
			}
			return
		}
		body := resp.GetDeniedResponse().String()
		if strings.Contains(body, testToken) || len(cookie) > 8 && strings.Contains(body, cookie) {
			t.Fatalf("denial echoes a secret: %s", body)
		}
	})
}
