package authz

import (
	"context"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// FuzzCheckRequest: whatever path, headers and cookies arrive (cookie2 is a
// second Cookie header: joined with "," as Envoy merges repeated headers, or
// a separate raw entry), Check never panics, never returns a gRPC error,
// never passes a `user` route without exactly one session cookie naming the
// valid session, never lets a client's authorization or any pair naming the
// session cookie through, never passes a preflight with a token, and never
// echoes the cookie or a token in a denial.
func FuzzCheckRequest(f *testing.F) {
	seeds := []struct {
		method, target, csrf, cookie, cookie2, authz, hk, hv, policy string
		raw                                                          bool
	}{
		{"GET", "/api/orders", "1", "__Host-bff=$ID", "", "", "", "", "user", false},
		{"GET", "/api/orders", "1", "theme=dark; __Host-bff=$ID", "", "Bearer evil", "x-user-id", "admin", "user", false},
		{"POST", "/api/../api/x", "1,1", "__Host-bff=$ID; __Host-bff=$ID", "", "", "", "", "user", true},
		{"GET", "/api%2Fx", "1", "__Host-bff=$ID", "", "", "", "", "", false},
		{"OPTIONS", "/api/x", "", "__Host-bff=$ID", "", "", "access-control-request-method", "POST", "user", false},
		{"GET", "/app/x?y=1", "", "", "", "", "sec-fetch-mode", "navigate", "", false},
		{"GET", "/", "", "__Host-bff=$ID", "", "Bearer x", "", "", "none", false},
		{"GET", "/api/public/x", "1", "__Host-bff=AAAA", "", "", "", "", "user_or_none", true},
		{"GET", "/x", "1", "__Host-bff=$ID\x00", "", "", "x-a", "\xff", "client", true},
		{"GET", "/%2e%2e/x", "1", "__Host-bff=" + strings.Repeat("A", 43), "", "", "", "", "bogus", false},
		// T69: a second Cookie header, merged with "," or sent raw.
		{"GET", "/api/orders", "1", "__Host-bff=$ID;", "__Host-bff=" + strings.Repeat("B", 43), "", "", "", "user", false},
		{"GET", "/api/orders", "1", "a=1", "__Host-bff=$ID", "", "", "", "user", false},
		{"GET", "/api/orders", "1", "__Host-bff=$ID", "x=1 __Host-bff=$ID", "", "", "", "user", true},
		// A cookie that is a piece of the denial's clearing Set-Cookie.
		{"GET", "/api/orders", "1", "__Host-bff=; Path=/", "", "", "", "", "user", false},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, s.csrf, s.cookie, s.cookie2, s.authz, s.hk, s.hv, s.policy, s.raw)
	}
	e := newEnv(f, quiet())
	f.Fuzz(func(t *testing.T, method, target, csrf, cookie, cookie2, authz, hk, hv, policy string, raw bool) {
		cookie = strings.ReplaceAll(cookie, "$ID", e.idStr)
		cookie2 = strings.ReplaceAll(cookie2, "$ID", e.idStr)
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
		var in *authv3.CheckRequest
		if raw {
			var entries [][2]string
			for k, v := range h {
				entries = append(entries, [2]string{k, v})
			}
			if cookie2 != "" {
				entries = append(entries, [2]string{"cookie", cookie2})
			}
			in = rawReq(method, target, entries, ext)
		} else {
			if cookie2 != "" { // Envoy's merge of a repeated header
				h["cookie"] = cookie + "," + cookie2
			}
			in = creq(method, target, h, ext)
		}
		// What a lenient reader of every Cookie header would find.
		named := sessiontest.CountNamed(cookie, e.cookie.Name) + sessiontest.CountNamed(cookie2, e.cookie.Name)
		preflight := method == "OPTIONS" && strings.EqualFold(hk, "access-control-request-method") && hv != ""
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
				id, err := e.cookie.ReadID(cookie + "," + cookie2)
				if err != nil || !id.Equal(e.id) || n != 1 || named != 1 {
					t.Fatalf("user route passed without exactly one cookie naming the valid session: cookies %q, %q", cookie, cookie2)
				}
			}
			if preflight && n != 0 && policy != "none" {
				t.Fatalf("a preflight passed with a token: %v", ok)
			}
			if c, _ := upstreamHeader(resp, "cookie"); sessiontest.CookieNamed(c, e.cookie.Name) {
				t.Fatalf("a pair naming the session cookie reaches upstream: %q", c)
			}
			// The session this request carried never reaches upstream, in
			// any cookie (T49). A request whose session cookie does not carry
			// it may hold the same string elsewhere: that is only what the
			// client chose to send, and no credential of this request.
			if id, err := e.cookie.ReadID(cookie + "," + cookie2); err == nil && id.Equal(e.id) {
				if c, _ := upstreamHeader(resp, "cookie"); strings.Contains(c, e.idStr) {
					t.Fatalf("session ID upstream: %q", c)
				}
			}
			return
		}
		// The denial's fixed clearing Set-Cookie (name, attributes) is no
		// echo: a cookie that is only a piece of it may appear in it.
		body := strings.ReplaceAll(resp.GetDeniedResponse().String(), e.cookie.ClearCookie(), "")
		echoes := func(sent string) bool { return len(sent) > 8 && strings.Contains(body, sent) }
		if strings.Contains(body, testToken) || strings.Contains(body, e.idStr) || echoes(cookie) || echoes(cookie2) {
			t.Fatalf("denial echoes a secret: %s", body)
		}
	})
}
