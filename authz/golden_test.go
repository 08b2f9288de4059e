package authz

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/envoy-bff/envoy-bff/oidcflow"
)

// TestGolden pins the exact CheckResponse of each decision in
// testdata/<name>.json (go test ./authz -update rewrites them).
func TestGolden(t *testing.T) {
	t.Parallel()
	identity := withIdentity(map[string]string{"x-user-sub": "sub", "x-user-email": "email", "x-user-groups": "groups", "x-user-missing": "nope"})
	cases := []struct {
		name  string
		opts  []envOption
		setup func(t *testing.T, e *env)
		req   func(e *env) *authv3.CheckRequest
	}{
		{name: "ok_user_token", req: api(map[string]string{"authorization": "Bearer evil"})},
		{name: "ok_user_token_cookie_removed", req: api(map[string]string{"cookie": cookieName + "=$ID"})},
		{name: "ok_user_refreshed", setup: expireToken(-time.Second), req: api(nil)},
		{name: "ok_identity_headers", opts: []envOption{identity}, req: api(map[string]string{"x-user-sub": "admin"})},
		{name: "ok_none_anonymous", opts: []envOption{identity}, req: byRules("/", map[string]string{"authorization": "Bearer evil"})},
		{name: "ok_none_cookie_stripped", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/public/app.js", map[string]string{"cookie": e.sessionCookie()}, nil)
		}},
		{name: "ok_user_or_none_anonymous", req: byRules("/api/public/news", map[string]string{csrfHeader: "1"})},
		{name: "ok_user_or_none_unknown_session_cleared", req: byRules("/api/public/news", map[string]string{csrfHeader: "1", "cookie": cookieName + "=" + strings.Repeat("A", 43)})},
		{name: "deny_antiforgery_required", req: api(map[string]string{csrfHeader: "1,1"})},
		{name: "deny_unauthenticated", req: api(map[string]string{"cookie": ""})},
		{name: "deny_unauthenticated_cleared", req: api(map[string]string{"cookie": cookieName + "=" + strings.Repeat("A", 43)})},
		{name: "deny_session_expired", opts: []envOption{withoutRefresher()}, setup: expireToken(-time.Second), req: api(nil)},
		{name: "deny_session_expired_cleared", setup: refreshFails(-time.Second, oidcflow.ErrRefreshRejected), req: api(nil)},
		{name: "deny_session_store_unavailable", setup: storeDown, req: api(nil)},
		{name: "deny_token_refresh_unavailable", setup: refreshFails(-time.Second, oidcflow.ErrProviderUnavailable), req: api(nil)},
		{name: "deny_invalid_path", req: pathOnly("/api%2Forders")},
		{name: "deny_invalid_request", req: api(map[string]string{"x-note": "a\nb"})},
		{name: "deny_policy_invalid", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", nil, map[string]string{extPolicy: "admin"})
		}},
		{name: "deny_client_token_unknown", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", map[string]string{csrfHeader: "1"}, map[string]string{extPolicy: "client", extClientToken: "nope"})
		}},
		{name: "ok_client", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", map[string]string{csrfHeader: "1", "cookie": otherCookie}, map[string]string{extPolicy: "client"})
		}},
		{name: "ok_user_or_client_anonymous", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", map[string]string{csrfHeader: "1"}, map[string]string{extPolicy: "user_or_client"})
		}},
		{name: "redirect_login", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/app/orders/./7?tab=items&q=a%20b", map[string]string{"sec-fetch-mode": "navigate"}, nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			golden(t, tc.name, e.check(t, tc.req(e)))
		})
	}
}
