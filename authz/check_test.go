package authz

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/session"
)

// tcase is one Check and what must follow from it. Counts of -1 are not checked.
type tcase struct {
	name    string
	opts    []envOption
	setup   func(t *testing.T, e *env)
	req     func(e *env) *authv3.CheckRequest
	status  int
	code    string
	gets    int
	refresh int
	clients int // client-token requests
	clear   bool
	check   func(t *testing.T, e *env, resp *authv3.CheckResponse)
}

// api is a GET on a user route with the given header changes ("" deletes).
func api(change map[string]string) func(e *env) *authv3.CheckRequest {
	return apiTo(http.MethodGet, "/api/orders", change)
}

// ruled is api's request on target with no context extensions, so the
// path rules pick the policy.
func ruled(target string, change map[string]string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest {
		r := apiTo(http.MethodGet, target, change)(e)
		r.Attributes.ContextExtensions = nil
		return r
	}
}

func apiTo(method, target string, change map[string]string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest {
		h := e.apiHeaders()
		for k, v := range change {
			if v == "" {
				delete(h, k)
				continue
			}
			h[k] = strings.ReplaceAll(v, "$ID", e.idStr)
		}
		return creq(method, target, h, userRoute())
	}
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts...)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			resp := e.check(t, tc.req(e))
			if got := status(resp); got != tc.status {
				t.Fatalf("status %d, want %d (%s)", got, tc.status, resp.GetDeniedResponse().GetBody())
			}
			if got := errorCode(t, resp); got != tc.code {
				t.Errorf("error %q, want %q", got, tc.code)
			}
			if tc.gets >= 0 {
				if got := e.store.gets.Load(); got != int64(tc.gets) {
					t.Errorf("store Get called %d times, want %d", got, tc.gets)
				}
			}
			if tc.refresh >= 0 {
				if got := e.refresher.calls.Load(); got != int64(tc.refresh) {
					t.Errorf("Refresh called %d times, want %d", got, tc.refresh)
				}
			}
			if got := e.clients.calls.Load(); got != int64(tc.clients) {
				t.Errorf("client token requested %d times, want %d", got, tc.clients)
			}
			if got := clearsCookie(resp); got != tc.clear {
				t.Errorf("clearing Set-Cookie: %v, want %v", got, tc.clear)
			}
			assertNoSecrets(t, e, resp)
			if tc.check != nil {
				tc.check(t, e, resp)
			}
		})
	}
}

// assertNoSecrets: no token in a denial, no session ID anywhere upstream or
// in the log, no refresh token or cookie value in the log (T2, T11, T49).
func assertNoSecrets(t *testing.T, e *env, resp *authv3.CheckResponse) {
	t.Helper()
	if d := resp.GetDeniedResponse(); d != nil {
		s := d.String()
		for _, secret := range []string{testToken, testFresh, e.idStr, "rt-secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("denied response contains a secret: %s", s)
			}
		}
	}
	if ok := resp.GetOkResponse(); ok != nil && strings.Contains(ok.String(), e.idStr) {
		t.Errorf("the session ID reaches upstream: %s", ok)
	}
	logs := e.logs.String()
	for _, secret := range []string{testToken, testFresh, e.idStr, "rt-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains a secret: %s", logs)
		}
	}
}

func wantBearer(token string) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
	return func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
		t.Helper()
		v, n := upstreamHeader(resp, "authorization")
		if n != 1 || v != "Bearer "+token {
			t.Errorf("authorization set %d times to %q, want once %q", n, v, "Bearer "+token)
		}
		if removes(resp, "authorization") {
			t.Error("authorization both set and removed: Envoy removes after setting")
		}
	}
}

func wantCookie(v string) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
	return func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
		t.Helper()
		if got, n := upstreamHeader(resp, "cookie"); n != 1 || got != v {
			t.Errorf("upstream cookie %q (%d), want %q", got, n, v)
		}
	}
}

// wantPreflightAnswer: Check itself answers the preflight, with no body and
// no Access-Control-* header (so a browser refuses any cross-origin call),
// and nothing of it reaches upstream.
func wantPreflightAnswer(t *testing.T, _ *env, resp *authv3.CheckResponse) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || d.GetBody() != "" {
		t.Fatalf("a preflight must be answered by Check without a body: %v", resp)
	}
	var all []*corev3.HeaderValueOption
	all = append(all, d.GetHeaders()...)
	for _, h := range all {
		if k := strings.ToLower(h.GetHeader().GetKey()); strings.HasPrefix(k, "access-control-") || k == "authorization" || k == "content-type" {
			t.Errorf("header %s in the preflight's answer", h.GetHeader().GetKey())
		}
	}
	if got := resp.GetStatus().GetMessage(); got != "preflight" {
		t.Errorf("answer %q, want preflight (the metric's label)", got)
	}
}

func wantAnonymous(t *testing.T, _ *env, resp *authv3.CheckResponse) {
	t.Helper()
	if _, n := upstreamHeader(resp, "authorization"); n != 0 || !removes(resp, "authorization") {
		t.Errorf("anonymous pass must remove the client's authorization: %v", resp.GetOkResponse())
	}
}

// TestCheck holds the bad-input and fault cases of shared/SECURITY-TESTS.md
// that Check owns, named by T-number.
func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []tcase{
		{name: "valid_session_passes_with_token", req: api(nil), status: 200, gets: 1, refresh: 0, check: wantBearer(testToken)},

		// Cookies and session IDs.
		{name: "T1_no_cookie_zero_store_calls", req: api(map[string]string{"cookie": ""}), status: 401, code: "unauthenticated", gets: 0, refresh: 0},
		{name: "T1_other_cookies_only", req: api(map[string]string{"cookie": otherCookie}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T2_malformed_short", req: api(map[string]string{"cookie": cookieName + "=short"}), status: 401, code: "unauthenticated", gets: 0, clear: true},
		{name: "T2_malformed_44_chars", req: api(map[string]string{"cookie": cookieName + "=" + strings.Repeat("A", 44)}), status: 401, code: "unauthenticated", gets: 0, clear: true},
		{name: "T2_malformed_alphabet", req: api(map[string]string{"cookie": cookieName + "=" + strings.Repeat("*", 43)}), status: 401, code: "unauthenticated", gets: 0, clear: true},
		{name: "T2_malformed_8KB", req: api(map[string]string{"cookie": cookieName + "=" + strings.Repeat("A", 8<<10)}), status: 401, code: "unauthenticated", gets: 0, clear: true},
		{name: "T2_malformed_padding", req: api(map[string]string{"cookie": cookieName + "=$ID="}), status: 401, code: "unauthenticated", gets: 0, clear: true},
		{name: "T3_unknown_session_cleared", req: api(map[string]string{"cookie": cookieName + "=" + strings.Repeat("A", 43)}), status: 401, code: "unauthenticated", gets: 1, clear: true},
		{name: "T4_duplicate_cookie", req: api(map[string]string{"cookie": cookieName + "=$ID; " + cookieName + "=$ID"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T4_duplicate_cookie_crumbs", req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/api/orders", [][2]string{{csrfHeader, "1"}, {"cookie", cookieName + "=" + e.idStr}, {"cookie", cookieName + "=" + strings.Repeat("B", 43)}}, userRoute())
		}, status: 401, code: "unauthenticated", gets: 0},
		{name: "T5_id_under_sid", req: api(map[string]string{"cookie": "sid=$ID"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T5_id_under_lowercase_name", req: api(map[string]string{"cookie": "__host-bff=$ID"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T5_id_under_secure_prefix", req: api(map[string]string{"cookie": "__Secure-bff=$ID"}), status: 401, code: "unauthenticated", gets: 0},

		// CSRF.
		{name: "T12_no_csrf_GET", req: api(map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, refresh: 0},
		{name: "T12_no_csrf_POST", req: apiTo("POST", "/api/orders", map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, refresh: 0},
		{name: "T12_no_csrf_DELETE", req: apiTo("DELETE", "/api/orders/1", map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, refresh: 0},
		{name: "T12_no_csrf_plain_OPTIONS", req: apiTo("OPTIONS", "/api/orders", map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T12_no_csrf_refresh_due_no_refresh", setup: expireToken(time.Minute * -1), req: api(map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, refresh: 0},
		// A preflight is answered by Check: no store read, nothing upstream,
		// whatever the policy, the cookie or the anti-forgery header (T70).
		{name: "T70_preflight_with_session_answered_without_store_read", req: apiTo("OPTIONS", "/api/orders", map[string]string{csrfHeader: "", "access-control-request-method": "GET", "origin": "https://app.example.com"}), status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_with_csrf_header_too", req: apiTo("OPTIONS", "/api/orders", map[string]string{"access-control-request-method": "POST", "access-control-request-headers": "x-csrf"}), status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_without_session", req: apiTo("OPTIONS", "/api/orders", map[string]string{csrfHeader: "", "cookie": "", "access-control-request-method": "POST"}), status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_with_duplicate_cookie", req: apiTo("OPTIONS", "/api/orders", map[string]string{"cookie": cookieName + "=$ID," + cookieName + "=$ID", "access-control-request-method": "POST"}), status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_on_client_route_fetches_no_token", req: func(e *env) *authv3.CheckRequest {
			return creq("OPTIONS", "/api/billing", map[string]string{"access-control-request-method": "POST"}, map[string]string{extPolicy: "client"})
		}, status: 204, gets: 0, clients: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_on_user_or_client_route", req: func(e *env) *authv3.CheckRequest {
			return creq("OPTIONS", "/api/billing", map[string]string{"access-control-request-method": "POST", "cookie": e.sessionCookie()}, map[string]string{extPolicy: "user_or_client"})
		}, status: 204, gets: 0, clients: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_by_path_rules", req: func(e *env) *authv3.CheckRequest {
			return creq("OPTIONS", "/api/orders", map[string]string{"access-control-request-method": "DELETE", "cookie": e.sessionCookie()}, nil)
		}, status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T70_preflight_on_none_passes_anonymously", req: func(e *env) *authv3.CheckRequest {
			return creq("OPTIONS", "/public/x", map[string]string{"access-control-request-method": "GET", "cookie": e.sessionCookie(), "authorization": "Bearer evil"}, map[string]string{extPolicy: "none"})
		}, status: 200, gets: 0, check: wantAnonymous},
		{name: "T13_csrf_value_0", req: api(map[string]string{csrfHeader: "0"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_value_1_space", req: api(map[string]string{csrfHeader: "1 "}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_value_space_1", req: api(map[string]string{csrfHeader: " 1"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_value_true", req: api(map[string]string{csrfHeader: "true"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_value_11", req: api(map[string]string{csrfHeader: "11"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_value_empty", req: func(e *env) *authv3.CheckRequest {
			h := e.apiHeaders()
			h[csrfHeader] = ""
			return creq("GET", "/api/orders", h, userRoute())
		}, status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_sent_twice_raw", req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/api/orders", [][2]string{{csrfHeader, "1"}, {csrfHeader, "1"}, {"cookie", e.sessionCookie()}}, userRoute())
		}, status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_underscore_name", req: api(map[string]string{csrfHeader: "", "x_csrf": "1"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T13_csrf_raw_single_passes", req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/api/orders", [][2]string{{"X-CSRF", "1"}, {"cookie", e.sessionCookie()}}, userRoute())
		}, status: 200, gets: 1, check: wantBearer(testToken)},
		{name: "T14_cross_site_form_post", req: apiTo("POST", "/api/orders", map[string]string{csrfHeader: "", "content-type": "text/plain", "origin": "https://evil.example", "sec-fetch-site": "cross-site"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T14_foreign_preflight_gets_no_cors_headers", req: apiTo("OPTIONS", "/api/orders", map[string]string{csrfHeader: "", "access-control-request-method": "POST", "origin": "https://evil.example"}),
			status: 204, gets: 0, check: wantPreflightAnswer},
		{name: "T15_merged_duplicate_1_1", req: api(map[string]string{csrfHeader: "1,1"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T15_merged_duplicate_1_comma_space_1", req: api(map[string]string{csrfHeader: "1, 1"}), status: 403, code: "antiforgery_required", gets: 0},

		// Headers and sizes.
		{name: "T43_client_authorization_overwritten", req: api(map[string]string{"authorization": "Bearer evil"}), status: 200, gets: 1, check: wantBearer(testToken)},
		{name: "T44_client_bearer_without_session_user", req: api(map[string]string{"cookie": "", "authorization": "Bearer stolen"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T44_client_bearer_removed_on_none", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/public/app.js", map[string]string{"authorization": "Bearer stolen"}, nil)
		}, status: 200, gets: 0, check: wantAnonymous},
		{name: "T44_client_bearer_removed_on_user_or_none", req: byRules("/api/public/news", map[string]string{csrfHeader: "1", "authorization": "Bearer stolen"}), status: 200, gets: 0, check: wantAnonymous},
		{name: "T45_identity_headers_replaced", opts: []envOption{withIdentity(map[string]string{"X-User-Id": "sub", "x-forwarded-email": "email"})},
			req: api(map[string]string{"x-user-id": "admin", "x-forwarded-email": "admin@example.com"}), status: 200, gets: 1, check: func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
				if v, n := upstreamHeader(resp, "x-user-id"); n != 1 || v != "user-1" {
					t.Errorf("x-user-id = %q ×%d", v, n)
				}
				if v, n := upstreamHeader(resp, "x-forwarded-email"); n != 1 || v != "u@example.com" {
					t.Errorf("x-forwarded-email = %q ×%d", v, n)
				}
			}},
		{name: "T45_identity_headers_removed_without_session", opts: []envOption{withIdentity(map[string]string{"x-user-id": "sub"})},
			req: byRules("/api/public/x", map[string]string{csrfHeader: "1", "x-user-id": "admin"}), status: 200, gets: 0, check: func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
				if !removes(resp, "x-user-id") {
					t.Errorf("client x-user-id not removed: %v", resp.GetOkResponse())
				}
			}},
		{name: "T45_identity_header_removed_on_none", opts: []envOption{withIdentity(map[string]string{"x-user-id": "sub"})},
			req: func(e *env) *authv3.CheckRequest {
				return creq("GET", "/", map[string]string{"x-user-id": "admin"}, nil)
			}, status: 200, gets: 0, check: func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
				if !removes(resp, "x-user-id") {
					t.Errorf("client x-user-id not removed on a none route: %v", resp.GetOkResponse())
				}
			}},
		{name: "T45_identity_claim_with_crlf_not_set", opts: []envOption{withIdentity(map[string]string{"x-evil": "evil", "x-missing": "nope"})},
			req: api(map[string]string{"x-evil": "spoofed"}), status: 200, gets: 1, check: func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
				for _, h := range []string{"x-evil", "x-missing"} {
					if _, n := upstreamHeader(resp, h); n != 0 || !removes(resp, h) {
						t.Errorf("%s must be removed, not set: %v", h, resp.GetOkResponse())
					}
				}
			}},
		{name: "T46_spoofed_forwarded_headers_ignored", req: func(e *env) *authv3.CheckRequest {
			h := map[string]string{csrfHeader: "1", "x-forwarded-uri": "/public/x", "x-envoy-original-path": "/public/x", "x-forwarded-host": "public.example.com"}
			return creq("GET", "/api/orders", h, nil) // path rules decide: /api/ is user
		}, status: 401, code: "unauthenticated", gets: 0},
		{name: "T46_spoofed_forwarded_to_private", req: func(e *env) *authv3.CheckRequest {
			h := map[string]string{"x-forwarded-uri": "/api/orders", "x-envoy-original-path": "/api/orders"}
			return creq("GET", "/public/app.js", h, nil)
		}, status: 200, gets: 0, check: wantAnonymous},
		{name: "T47_dotdot_into_api", req: pathOnly("/public/../api/orders"), status: 401, code: "unauthenticated", gets: 0},
		{name: "T47_encoded_dotdot_into_api", req: pathOnly("/public/%2e%2e/api/orders"), status: 401, code: "unauthenticated", gets: 0},
		{name: "T47_encoded_slash", req: pathOnly("/api%2Forders"), status: 400, code: "invalid_path", gets: 0},
		{name: "T47_encoded_slash_lower", req: pathOnly("/public/..%2fapi/orders"), status: 400, code: "invalid_path", gets: 0},
		{name: "T47_fragment_dropped", req: pathOnly("/public/app.js#/../../api/orders"), status: 200, gets: 0, check: wantAnonymous},
		{name: "T47_query_not_a_path", req: pathOnly("/api/orders?r=/public/x"), status: 401, code: "unauthenticated", gets: 0},
		{name: "T47_dotdot_above_root", req: pathOnly("/../api/orders"), status: 400, code: "invalid_path", gets: 0},
		{name: "T47_backslash", req: pathOnly("/public\\..\\api/orders"), status: 400, code: "invalid_path", gets: 0},
		{name: "T47_double_slash_merged", req: pathOnly("//api//orders"), status: 401, code: "unauthenticated", gets: 0},
		{name: "T47_exact_match_is_exact", req: pathOnly("/?next=/api/orders"), status: 200, gets: 0},
		{name: "T48_health_check_user_agent", req: api(map[string]string{"cookie": "", "user-agent": "kube-probe/1.31", csrfHeader: "1"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T49_session_cookie_stripped_others_kept", req: api(nil), status: 200, gets: 1, check: func(t *testing.T, e *env, resp *authv3.CheckResponse) {
			if v, n := upstreamHeader(resp, "cookie"); n != 1 || v != otherCookie {
				t.Errorf("upstream cookie = %q ×%d, want %q", v, n, otherCookie)
			}
		}},
		{name: "T49_only_session_cookie_removed", req: api(map[string]string{"cookie": cookieName + "=$ID"}), status: 200, gets: 1, check: func(t *testing.T, e *env, resp *authv3.CheckResponse) {
			if _, n := upstreamHeader(resp, "cookie"); n != 0 || !removes(resp, "cookie") {
				t.Errorf("cookie header must be removed: %v", resp.GetOkResponse())
			}
		}},
		{name: "T49_stripped_on_none_route", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/", map[string]string{"cookie": e.sessionCookie()}, nil)
		}, status: 200, gets: 0, check: func(t *testing.T, e *env, resp *authv3.CheckResponse) {
			if v, _ := upstreamHeader(resp, "cookie"); v != otherCookie {
				t.Errorf("upstream cookie = %q", v)
			}
		}},
		{name: "T50_nul_in_header", req: api(map[string]string{"x-note": "a\x00b"}), status: 400, code: "invalid_request", gets: 0},
		{name: "T50_crlf_in_header", req: api(map[string]string{"x-note": "a\r\nset-cookie: x=y"}), status: 400, code: "invalid_request", gets: 0},
		{name: "T50_crlf_in_cookie", req: api(map[string]string{"cookie": cookieName + "=$ID\r\nx: y"}), status: 400, code: "invalid_request", gets: 0},
		{name: "T50_nul_in_cookie", req: api(map[string]string{"cookie": cookieName + "=$ID\x00"}), status: 400, code: "invalid_request", gets: 0},
		{name: "T50_non_utf8_raw_header", req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/api/orders", [][2]string{{csrfHeader, "1"}, {"cookie", e.sessionCookie()}, {"x-name", "caf\xe9"}}, userRoute())
		}, status: 400, code: "invalid_request", gets: 0},
		{name: "T50_non_utf8_on_none_route", req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/", [][2]string{{"x-name", "\xff\xfe"}}, nil)
		}, status: 400, code: "invalid_request", gets: 0},
		{name: "T50_control_in_path", req: pathOnly("/api/orders\x7f"), status: 400, code: "invalid_path", gets: 0},
		{name: "T50_encoded_nul_in_path", req: pathOnly("/api/%00"), status: 400, code: "invalid_path", gets: 0},
		{name: "T51_64KB_cookie_header", req: api(map[string]string{"cookie": cookieName + "=$ID; big=" + strings.Repeat("x", 64<<10)}), status: 200, gets: 1, check: func(t *testing.T, e *env, resp *authv3.CheckResponse) {
			if v, _ := upstreamHeader(resp, "cookie"); strings.Contains(v, cookieName) || len(v) != len("big=")+64<<10 {
				t.Errorf("cookie header mangled: %d bytes", len(v))
			}
		}},
		{name: "T51_300_cookies", req: api(map[string]string{"cookie": manyCookies(300) + "; " + cookieName + "=$ID"}), status: 200, gets: 1, check: wantBearer(testToken)},
		{name: "T51_8KB_access_token", setup: func(t *testing.T, e *env) {
			rec := validRecord()
			rec.AccessToken = strings.Repeat("t", 8<<10)
			e.put(t, e.id, rec)
		}, req: api(nil), status: 200, gets: 1, check: wantBearer(strings.Repeat("t", 8<<10))},

		// Refresh and faults.
		{name: "refresh_due_refreshed", setup: expireToken(10 * time.Second), req: api(nil), status: 200, gets: 1, refresh: 1, check: wantBearer(testFresh)},
		{name: "expired_refreshed", setup: expireToken(-time.Second), req: api(nil), status: 200, gets: 1, refresh: 1, check: wantBearer(testFresh)},
		{name: "not_due_no_refresh", setup: expireToken(31 * time.Second), req: api(nil), status: 200, gets: 1, refresh: 0, check: wantBearer(testToken)},
		{name: "expired_no_refresher_session_expired", opts: []envOption{withoutRefresher()}, setup: expireToken(-time.Second), req: api(nil), status: 401, code: "session_expired", gets: 1},
		{name: "due_no_refresher_old_token", opts: []envOption{withoutRefresher()}, setup: expireToken(time.Second), req: api(nil), status: 200, gets: 1, check: wantBearer(testToken)},
		{name: "T60_refresh_rejected_cleared", setup: refreshFails(-time.Second, oidcflow.ErrRefreshRejected), req: api(nil), status: 401, code: "session_expired", gets: 1, refresh: 1, clear: true},
		{name: "T60_refresh_rejected_before_expiry_cleared", setup: refreshFails(time.Second, oidcflow.ErrRefreshRejected), req: api(nil), status: 401, code: "session_expired", gets: 1, refresh: 1, clear: true},
		{name: "T59_provider_down_expired_503", setup: refreshFails(-time.Second, oidcflow.ErrProviderUnavailable), req: api(nil), status: 503, code: "token_refresh_unavailable", gets: 1, refresh: 1},
		{name: "T59_provider_down_still_valid_old_token", setup: refreshFails(time.Second, oidcflow.ErrProviderUnavailable), req: api(nil), status: 200, gets: 1, refresh: 1, check: wantBearer(testToken)},
		{name: "refresh_session_gone_401", setup: refreshFails(-time.Second, fmt.Errorf("re-read: %w", session.ErrNotFound)), req: api(nil), status: 401, code: "unauthenticated", gets: 1, refresh: 1, clear: true},
		{name: "refresh_store_down_503", setup: refreshFails(-time.Second, fmt.Errorf("lock: %w", session.ErrUnavailable)), req: api(nil), status: 503, code: "session_store_unavailable", gets: 1, refresh: 1},
		{name: "T52_store_unavailable_503_cookie_kept", setup: storeDown, req: api(nil), status: 503, code: "session_store_unavailable", gets: 1, refresh: 0, check: func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
			if deniedHeader(resp, "retry-after") == "" {
				t.Error("no retry-after")
			}
		}},
		{name: "T52_store_down_navigation_no_redirect", setup: storeDown, req: func(e *env) *authv3.CheckRequest {
			h := e.apiHeaders()
			h["sec-fetch-mode"] = "navigate"
			return creq("GET", "/app/home", h, nil)
		}, status: 503, code: "session_store_unavailable", gets: 1},
		{name: "T54_store_down_on_user_or_none_503", setup: storeDown, req: func(e *env) *authv3.CheckRequest { return creq("GET", "/api/public/x", e.apiHeaders(), nil) }, status: 503, code: "session_store_unavailable", gets: 1},

		// Policies from the route.
		{name: "policy_unknown_in_extension_500", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/public/x", e.apiHeaders(), map[string]string{extPolicy: "nonee"})
		}, status: 500, code: "policy_invalid", gets: 0},
		{name: "policy_client_without_client_tokens_500", opts: []envOption{withoutClientTokens()}, req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/api/x", e.apiHeaders(), map[string]string{extPolicy: "client"})
		}, status: 500, code: "client_token_unknown", gets: 0},
		{name: "policy_extension_beats_path_rules", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/public/x", map[string]string{"cookie": ""}, map[string]string{extPolicy: "user"})
		}, status: 403, code: "antiforgery_required", gets: 0},
		{name: "default_policy_is_user", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/unlisted", map[string]string{csrfHeader: "1"}, nil)
		}, status: 401, code: "unauthenticated", gets: 0},
		{name: "no_http_attributes_400", req: func(e *env) *authv3.CheckRequest { return &authv3.CheckRequest{} }, status: 400, code: "invalid_request", gets: 0},

		// Client credentials (path rules: /partner/ client with "billing", /catalog/ user_or_client).
		{name: "client_passes_with_client_token_no_store_call", req: ruled("/partner/x", nil), status: 200, gets: 0, clients: 1, check: wantBearer(testClientToken("billing"))},
		{name: "client_strips_session_cookie", req: ruled("/partner/x", map[string]string{"cookie": cookieName + "=$ID; " + otherCookie}), status: 200, gets: 0, clients: 1, check: wantCookie(otherCookie)},
		{name: "client_needs_antiforgery", req: ruled("/partner/x", map[string]string{csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, clients: 0},
		{name: "client_token_by_extension", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", e.apiHeaders(), map[string]string{extPolicy: "client"})
		}, status: 200, clients: 1, check: wantBearer(testClientToken("default"))},
		{name: "client_token_unknown_500", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/x", e.apiHeaders(), map[string]string{extPolicy: "client", extClientToken: "nope"})
		}, status: 500, code: "client_token_unknown", clients: 1},
		{name: "T59_client_token_unavailable_503", setup: clientTokensFail(oidcflow.ErrProviderUnavailable), req: ruled("/partner/x", nil), status: 503, code: "token_refresh_unavailable", clients: 1},
		{name: "user_or_client_session_user_token", req: ruled("/catalog/x", nil), status: 200, gets: 1, clients: 0, check: wantBearer(testToken)},
		{name: "user_or_client_anonymous_client_token", req: ruled("/catalog/x", map[string]string{"cookie": ""}), status: 200, gets: 0, clients: 1, check: wantBearer(testClientToken("default"))},
		{name: "user_or_client_unknown_session_client_token_cleared", req: ruled("/catalog/x", map[string]string{"cookie": cookieName + "=" + strings.Repeat("A", 43)}), status: 200, gets: 1, clients: 1, clear: true, check: wantBearer(testClientToken("default"))},
		{name: "user_or_client_refresh_rejected_client_token_cleared", setup: refreshFails(-time.Second, oidcflow.ErrRefreshRejected), req: ruled("/catalog/x", nil), status: 200, gets: 1, refresh: 1, clients: 1, clear: true, check: wantBearer(testClientToken("default"))},
		{name: "user_or_client_store_down_503_no_client_token", setup: storeDown, req: ruled("/catalog/x", nil), status: 503, code: "session_store_unavailable", gets: 1, clients: 0},
		{name: "user_or_client_duplicate_cookie_401", req: ruled("/catalog/x", map[string]string{"cookie": cookieName + "=$ID; " + cookieName + "=$ID"}), status: 401, code: "unauthenticated", clients: 0},

		// Navigations.
		{name: "navigation_redirects_to_login", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/app/orders?x=1", map[string]string{"sec-fetch-mode": "navigate", "accept": "text/html"}, nil)
		}, status: 302, gets: 0, check: wantLocation("/bff/login?returnUrl=%2Fapp%2Forders%3Fx%3D1")},
		{name: "navigation_redirect_uses_normalised_path", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/app/x/../orders", map[string]string{"accept": "text/html,application/xhtml+xml"}, nil)
		}, status: 302, gets: 0, check: wantLocation("/bff/login?returnUrl=%2Fapp%2Forders")},
		{name: "navigation_by_extension_redirect", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/somewhere", map[string]string{"sec-fetch-mode": "navigate", csrfHeader: "1"}, map[string]string{extPolicy: "user", extRedirect: "true"})
		}, status: 302, gets: 0, check: wantLocation("/bff/login?returnUrl=%2Fsomewhere")},
		{name: "navigation_unknown_session_redirect_clears", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/app/x", map[string]string{"sec-fetch-mode": "navigate", csrfHeader: "1", "cookie": cookieName + "=" + strings.Repeat("A", 43)}, nil)
		}, status: 302, gets: 1, clear: true, check: wantLocation("/bff/login?returnUrl=%2Fapp%2Fx")},
		{name: "navigation_with_cookie_needs_csrf", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/app/x", map[string]string{"sec-fetch-mode": "navigate", "cookie": e.sessionCookie()}, nil)
		}, status: 403, code: "antiforgery_required", gets: 0},
		{name: "api_fetch_on_redirect_route_gets_401", req: apiTo("GET", "/app/data", map[string]string{"cookie": "", "sec-fetch-mode": "cors"}), status: 401, code: "unauthenticated", gets: 0},
		{name: "navigation_without_redirect_rule_gets_401", req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/api/orders", map[string]string{"sec-fetch-mode": "navigate", csrfHeader: "1"}, nil)
		}, status: 401, code: "unauthenticated", gets: 0},
		{name: "post_is_never_a_navigation", req: func(e *env) *authv3.CheckRequest {
			return creq("POST", "/app/x", map[string]string{"sec-fetch-mode": "navigate", csrfHeader: "1"}, nil)
		}, status: 401, code: "unauthenticated", gets: 0},
	}
	runCases(t, cases)
}

// byRules is a GET whose policy comes from the path rules, not the route.
func byRules(target string, h map[string]string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest { return creq("GET", target, h, nil) }
}

func pathOnly(target string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest {
		return creq("GET", target, map[string]string{csrfHeader: "1"}, nil)
	}
}

func expireToken(in time.Duration) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		rec := validRecord()
		rec.AccessTokenExpiresAtUnixMs = t0.Add(in).UnixMilli()
		e.id = mustID(t, 9)
		e.idStr = e.id.String()
		e.put(t, e.id, rec)
	}
}

func refreshFails(in time.Duration, err error) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		expireToken(in)(t, e)
		e.refresher.err = err
	}
}

func clientTokensFail(err error) func(t *testing.T, e *env) {
	return func(_ *testing.T, e *env) { e.clients.err = err }
}

func storeDown(_ *testing.T, e *env) {
	e.store.fail(fmt.Errorf("get session: %w: %w", session.ErrUnavailable, errFault))
}

func wantLocation(loc string) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
	return func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
		t.Helper()
		if got := deniedHeader(resp, "location"); got != loc {
			t.Errorf("location %q, want %q", got, loc)
		}
	}
}

func manyCookies(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("c%d=v%d", i, i)
	}
	return strings.Join(parts, "; ")
}

// TestPolicySessionMatrix is every policy against every session state.
func TestPolicySessionMatrix(t *testing.T) {
	t.Parallel()
	type state struct {
		name   string
		cookie string // $ID is the valid session
		setup  func(t *testing.T, e *env)
	}
	states := []state{
		{name: "no_cookie"},
		{name: "malformed", cookie: cookieName + "=nope"},
		{name: "duplicate", cookie: cookieName + "=$ID; " + cookieName + "=$ID"},
		{name: "unknown", cookie: cookieName + "=" + strings.Repeat("A", 43)},
		{name: "valid", cookie: cookieName + "=$ID"},
		{name: "refreshed", cookie: cookieName + "=$ID", setup: expireToken(-time.Second)},
		{name: "refresh_rejected", cookie: cookieName + "=$ID", setup: refreshFails(-time.Second, oidcflow.ErrRefreshRejected)},
		{name: "provider_down", cookie: cookieName + "=$ID", setup: refreshFails(-time.Second, oidcflow.ErrProviderUnavailable)},
		{name: "store_down", cookie: cookieName + "=$ID", setup: storeDown},
	}
	// want[policy][state] = "status code" (code "-" for a pass; "token" for a pass with a token).
	want := map[Policy]map[string]string{
		PolicyNone: {"no_cookie": "200 -", "malformed": "200 -", "duplicate": "200 -", "unknown": "200 -", "valid": "200 -",
			"refreshed": "200 -", "refresh_rejected": "200 -", "provider_down": "200 -", "store_down": "200 -"},
		PolicyUser: {"no_cookie": "401 unauthenticated", "malformed": "401 unauthenticated", "duplicate": "401 unauthenticated",
			"unknown": "401 unauthenticated", "valid": "200 token", "refreshed": "200 token", "refresh_rejected": "401 session_expired",
			"provider_down": "503 token_refresh_unavailable", "store_down": "503 session_store_unavailable"},
		PolicyUserOrNone: {"no_cookie": "200 -", "malformed": "200 -", "duplicate": "401 unauthenticated", "unknown": "200 -",
			"valid": "200 token", "refreshed": "200 token", "refresh_rejected": "200 -",
			"provider_down": "503 token_refresh_unavailable", "store_down": "503 session_store_unavailable"},
	}
	for _, p := range []Policy{PolicyNone, PolicyUser, PolicyUserOrNone} {
		for _, st := range states {
			t.Run(string(p)+"/"+st.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				if st.setup != nil {
					st.setup(t, e)
				}
				h := map[string]string{csrfHeader: "1"}
				if st.cookie != "" {
					h["cookie"] = strings.ReplaceAll(st.cookie, "$ID", e.idStr)
				}
				resp := e.check(t, creq("GET", "/x", h, map[string]string{extPolicy: string(p)}))
				got := fmt.Sprintf("%d %s", status(resp), errorCode(t, resp))
				if status(resp) == 200 {
					got = "200 -"
					if _, n := upstreamHeader(resp, "authorization"); n == 1 {
						got = "200 token"
					} else if !removes(resp, "authorization") {
						t.Error("a pass without a token must remove authorization")
					}
				}
				if got != want[p][st.name] {
					t.Errorf("got %q, want %q", got, want[p][st.name])
				}
				if p == PolicyNone && (e.store.gets.Load() != 0 || e.refresher.calls.Load() != 0) {
					t.Error("policy none must not touch the store or the provider")
				}
				assertNoSecrets(t, e, resp)
			})
		}
	}
}
