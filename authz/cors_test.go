package authz

import (
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// browserHeaders are the headers the browser sees: a denial's, or those
// Envoy adds to the upstream's answer on a pass.
func browserHeaders(resp *authv3.CheckResponse) map[string][]string {
	out := map[string][]string{}
	for _, h := range append(resp.GetDeniedResponse().GetHeaders(), resp.GetOkResponse().GetResponseHeadersToAdd()...) {
		k := h.GetHeader().GetKey()
		out[k] = append(out[k], h.GetHeader().GetValue())
	}
	return out
}

// wantCORS: the answer grants exactly origin, with credentials and Vary:
// Origin; or, for "", carries no Access-Control-* header at all.
func wantCORS(origin string) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
	return func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
		t.Helper()
		h := browserHeaders(resp)
		if origin == "" {
			for k := range h {
				if strings.HasPrefix(k, "access-control-") {
					t.Errorf("%s: %q for an origin not listed", k, h[k])
				}
			}
			return
		}
		if got := h["access-control-allow-origin"]; len(got) != 1 || got[0] != origin {
			t.Errorf("access-control-allow-origin %q, want %q", got, origin)
		}
		if got := h["access-control-allow-credentials"]; len(got) != 1 || got[0] != "true" {
			t.Errorf("access-control-allow-credentials %q", got)
		}
		if got := h["vary"]; len(got) != 1 || got[0] != "Origin" {
			t.Errorf("vary %q, want Origin", got)
		}
	}
}

func both(checks ...func(t *testing.T, e *env, resp *authv3.CheckResponse)) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
	return func(t *testing.T, e *env, resp *authv3.CheckResponse) {
		t.Helper()
		for _, c := range checks {
			c(t, e, resp)
		}
	}
}

// preflightFrom is a browser's preflight from origin for method with
// the requested headers.
func preflightFrom(origin, method, headers string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest {
		h := map[string]string{"origin": origin, "access-control-request-method": method}
		if headers != "" {
			h["access-control-request-headers"] = headers
		}
		return creq(http.MethodOptions, "/api/orders", h, userRoute())
	}
}

// TestCORS: envoy-bff answers CORS for the origins a frontend lists, and
// only for them (T70 for the others).
func TestCORS(t *testing.T) {
	t.Parallel()
	rt := []envOption{withRealtime()} // lists listedOrigin
	grantedPreflight := func(method, headers string) func(t *testing.T, e *env, resp *authv3.CheckResponse) {
		return func(t *testing.T, _ *env, resp *authv3.CheckResponse) {
			t.Helper()
			wantCORS(listedOrigin)(t, nil, resp)
			h := browserHeaders(resp)
			if got := strings.Join(h["access-control-allow-methods"], "|"); got != method {
				t.Errorf("allow-methods %q, want %q", got, method)
			}
			if got := strings.Join(h["access-control-allow-headers"], "|"); got != headers {
				t.Errorf("allow-headers %q, want %q", got, headers)
			}
			if got := strings.Join(h["access-control-max-age"], "|"); got != "600" {
				t.Errorf("max-age %q, want 600", got)
			}
			if resp.GetDeniedResponse().GetBody() != "" {
				t.Error("a preflight's answer has a body")
			}
		}
	}
	cases := []tcase{
		{name: "preflight_listed", opts: rt, req: preflightFrom(listedOrigin, "GET", "X-CSRF, content-type, x-other"), status: 204, gets: 0,
			check: grantedPreflight("GET", "x-csrf, content-type")},
		{name: "preflight_listed_DELETE_no_headers", opts: rt, req: preflightFrom(listedOrigin, "DELETE", ""), status: 204, gets: 0,
			check: grantedPreflight("DELETE", "")},
		{name: "preflight_listed_with_cookie", opts: rt, req: func(e *env) *authv3.CheckRequest {
			r := preflightFrom(listedOrigin, "POST", "x-csrf")(e)
			r.Attributes.Request.Http.Headers["cookie"] = e.sessionCookie()
			return r
		}, status: 204, gets: 0, check: grantedPreflight("POST", "x-csrf")},
		{name: "preflight_listed_method_not_granted", opts: rt, req: preflightFrom(listedOrigin, "TRACE", "x-csrf"), status: 204, gets: 0, check: both(wantPreflightAnswer, wantCORS(""))},
		{name: "T70_preflight_unlisted", opts: rt, req: preflightFrom(foreignOrigin, "GET", "x-csrf"), status: 204, gets: 0, check: both(wantPreflightAnswer, wantCORS(""))},
		{name: "T70_preflight_own_origin", opts: rt, req: preflightFrom(ownOrigin, "GET", "x-csrf"), status: 204, gets: 0, check: both(wantPreflightAnswer, wantCORS(""))},
		{name: "T70_preflight_without_config", req: preflightFrom(listedOrigin, "GET", "x-csrf"), status: 204, gets: 0, check: both(wantPreflightAnswer, wantCORS(""))},

		{name: "call_listed", opts: rt, req: api(map[string]string{"origin": listedOrigin}), status: 200, gets: 1, check: both(wantBearer(testToken), wantCORS(listedOrigin))},
		{name: "call_unlisted", opts: rt, req: api(map[string]string{"origin": foreignOrigin}), status: 200, gets: 1, check: both(wantBearer(testToken), wantCORS(""))},
		{name: "call_own_origin", opts: rt, req: api(map[string]string{"origin": ownOrigin}), status: 200, gets: 1, check: wantCORS("")},
		{name: "call_listed_anonymous", opts: rt, req: ruled("/api/public/x", map[string]string{"origin": listedOrigin, "cookie": ""}), status: 200, gets: 0,
			check: both(wantAnonymous, wantCORS(listedOrigin))},
		{name: "call_listed_none_route", opts: rt, req: func(e *env) *authv3.CheckRequest {
			return creq("GET", "/public/x", map[string]string{"origin": listedOrigin}, map[string]string{extPolicy: "none"})
		}, status: 200, gets: 0, check: wantCORS("")},

		{name: "denial_listed_401", opts: rt, req: api(map[string]string{"origin": listedOrigin, "cookie": ""}), status: 401, code: "unauthenticated", gets: 0, check: wantCORS(listedOrigin)},
		{name: "denial_listed_403", opts: rt, req: api(map[string]string{"origin": listedOrigin, csrfHeader: ""}), status: 403, code: "antiforgery_required", gets: 0, check: wantCORS(listedOrigin)},
		{name: "denial_listed_503", opts: rt, setup: storeDown, req: api(map[string]string{"origin": listedOrigin}), status: 503, code: "session_store_unavailable", gets: 1, check: wantCORS(listedOrigin)},
		{name: "denial_unlisted_401", opts: rt, req: api(map[string]string{"origin": foreignOrigin, "cookie": ""}), status: 401, code: "unauthenticated", gets: 0, check: wantCORS("")},
		{name: "denial_merged_origins", opts: rt, req: api(map[string]string{"origin": listedOrigin + "," + listedOrigin, "cookie": ""}), status: 401, code: "unauthenticated", gets: 0, check: wantCORS("")},
	}
	runCases(t, cases)
}

// TestCORSNeverChangesSharedAnswers: granting one origin must not leak
// into the precomputed answers every other request gets.
func TestCORSNeverChangesSharedAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRealtime())
	listed := []func(e *env) *authv3.CheckRequest{
		api(map[string]string{"origin": listedOrigin, "cookie": ""}),
		ruled("/api/public/x", map[string]string{"origin": listedOrigin, "cookie": ""}),
		preflightFrom(listedOrigin, "GET", "x-csrf"),
	}
	unlisted := []func(e *env) *authv3.CheckRequest{
		api(map[string]string{"cookie": ""}),
		ruled("/api/public/x", map[string]string{"cookie": ""}),
		preflightFrom(foreignOrigin, "GET", "x-csrf"),
	}
	for i := range listed {
		_ = e.check(t, listed[i](e))
		wantCORS("")(t, e, e.check(t, unlisted[i](e)))
	}
}
