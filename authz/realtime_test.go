package authz

import (
	"net/http"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Origins of the realtime tests: creq's request is addressed to
// https://app.example.com.
const (
	ownOrigin     = "https://app.example.com"
	listedOrigin  = "https://spa.example.com"
	foreignOrigin = "https://evil.example"
)

// withRealtime adds realtime path rules and one listed origin.
func withRealtime() envOption {
	return func(c *Config, _ *Deps) {
		c.PathRules = append(c.PathRules,
			PathRule{Prefix: "/api/ws", Policy: PolicyUser, Realtime: true},
			PathRule{Prefix: "/api/events", Policy: PolicyUser, Realtime: true},
			PathRule{Prefix: "/api/public/events", Policy: PolicyUserOrNone, Realtime: true},
		)
		c.AllowedOrigins = []string{listedOrigin}
	}
}

// wsHeaders is a browser's WebSocket handshake as Envoy hands it to
// ext_authz: no anti-forgery header, Origin always, no Sec-Fetch-* (Chromium).
func wsHeaders(e *env) map[string]string {
	return map[string]string{
		"cookie":                e.sessionCookie(),
		"upgrade":               "websocket",
		"connection":            "Upgrade",
		"sec-websocket-key":     "dGhlIHNhbXBsZSBub25jZQ==",
		"sec-websocket-version": "13",
		"origin":                ownOrigin,
	}
}

// sseHeaders is a same-origin EventSource request as Chromium sends it: no
// Origin, Sec-Fetch-Site same-origin.
func sseHeaders(e *env) map[string]string {
	return map[string]string{
		"cookie":         e.sessionCookie(),
		"accept":         "text/event-stream",
		"cache-control":  "no-cache",
		"sec-fetch-site": "same-origin",
		"sec-fetch-mode": "cors",
		"sec-fetch-dest": "empty",
	}
}

// stream builds a request from base with changes ("" deletes), routed by
// the path rules unless ext is given.
func stream(method, target string, base func(*env) map[string]string, change map[string]string, ext map[string]string) func(e *env) *authv3.CheckRequest {
	return func(e *env) *authv3.CheckRequest {
		h := base(e)
		for k, v := range change {
			if v == "" {
				delete(h, k)
				continue
			}
			h[k] = v
		}
		return creq(method, target, h, ext)
	}
}

func ws(change map[string]string) func(e *env) *authv3.CheckRequest {
	return stream(http.MethodGet, "/api/ws", wsHeaders, change, nil)
}

func sse(change map[string]string) func(e *env) *authv3.CheckRequest {
	return stream(http.MethodGet, "/api/events", sseHeaders, change, nil)
}

// TestRealtimeOriginRule is T76 at the Check: WebSocket and EventSource
// requests on routes that opted in pass on the origin rule instead of the
// anti-forgery header, and on nothing else.
func TestRealtimeOriginRule(t *testing.T) {
	t.Parallel()
	rt := []envOption{withRealtime()}
	passes := func(t *testing.T, e *env, resp *authv3.CheckResponse) {
		t.Helper()
		wantBearer(testToken)(t, e, resp)
		wantCookie(otherCookie)(t, e, resp) // the session cookie never goes upstream
	}
	cases := []tcase{
		// WebSocket handshakes.
		{name: "T76_ws_own_origin", opts: rt, req: ws(nil), status: 200, gets: 1, check: passes},
		{name: "T76_ws_upgrade_any_case", opts: rt, req: ws(map[string]string{"upgrade": "WebSocket"}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_listed_origin", opts: rt, req: ws(map[string]string{"origin": listedOrigin}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_foreign_origin", opts: rt, req: ws(map[string]string{"origin": foreignOrigin}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_suffix_of_own_origin", opts: rt, req: ws(map[string]string{"origin": ownOrigin + ".evil.example"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_other_scheme", opts: rt, req: ws(map[string]string{"origin": "http://app.example.com"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_null_origin", opts: rt, req: ws(map[string]string{"origin": "null"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_missing_origin", opts: rt, req: ws(map[string]string{"origin": ""}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_merged_origins", opts: rt, req: ws(map[string]string{"origin": ownOrigin + "," + ownOrigin}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_two_origin_entries", opts: rt, req: func(e *env) *authv3.CheckRequest {
			return rawReq("GET", "/api/ws", [][2]string{{"cookie", e.sessionCookie()}, {"upgrade", "websocket"}, {"origin", ownOrigin}, {"origin", ownOrigin}}, nil)
		}, status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_own_origin_cross_site", opts: rt, req: ws(map[string]string{"sec-fetch-site": "cross-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_own_origin_same_origin", opts: rt, req: ws(map[string]string{"sec-fetch-site": "same-origin"}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_listed_origin_same_site", opts: rt, req: ws(map[string]string{"origin": listedOrigin, "sec-fetch-site": "same-site"}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_own_origin_same_site_unlisted", opts: rt, req: ws(map[string]string{"sec-fetch-site": "same-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_listed_origin_cross_site", opts: rt, req: ws(map[string]string{"origin": listedOrigin, "sec-fetch-site": "cross-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_listed_origin_none", opts: rt, req: ws(map[string]string{"origin": listedOrigin, "sec-fetch-site": "none"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ws_no_origin_same_origin", opts: rt, req: ws(map[string]string{"origin": "", "sec-fetch-site": "same-origin"}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_foreign_origin_with_csrf", opts: rt, req: ws(map[string]string{"origin": foreignOrigin, csrfHeader: "1"}), status: 200, gets: 1, check: passes},
		{name: "T76_ws_no_session", opts: rt, req: ws(map[string]string{"cookie": ""}), status: 401, code: "unauthenticated", gets: 0},
		{name: "T76_ws_http_scheme_own_origin", opts: rt, req: func(e *env) *authv3.CheckRequest {
			r := ws(map[string]string{"origin": "http://app.example.com"})(e)
			r.Attributes.Request.Http.Scheme = "http"
			return r
		}, status: 200, gets: 1, check: passes},

		// EventSource requests.
		{name: "T76_sse_same_origin_no_origin", opts: rt, req: sse(nil), status: 200, gets: 1, check: passes},
		{name: "T76_sse_accept_list", opts: rt, req: sse(map[string]string{"accept": "text/html, TEXT/EVENT-STREAM"}), status: 200, gets: 1, check: passes},
		{name: "T76_sse_own_origin_same_origin", opts: rt, req: sse(map[string]string{"origin": ownOrigin}), status: 200, gets: 1, check: passes},
		{name: "T76_sse_listed_origin_same_site", opts: rt, req: sse(map[string]string{"origin": listedOrigin, "sec-fetch-site": "same-site"}), status: 200, gets: 1, check: passes},
		{name: "T76_sse_cross_site", opts: rt, req: sse(map[string]string{"sec-fetch-site": "cross-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_foreign_origin_cross_site", opts: rt, req: sse(map[string]string{"origin": foreignOrigin, "sec-fetch-site": "cross-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_foreign_origin_same_origin", opts: rt, req: sse(map[string]string{"origin": foreignOrigin}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_same_site_without_origin", opts: rt, req: sse(map[string]string{"sec-fetch-site": "same-site"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_none", opts: rt, req: sse(map[string]string{"sec-fetch-site": "none"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_neither_header", opts: rt, req: sse(map[string]string{"sec-fetch-site": ""}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_sse_user_or_none_anonymous", opts: rt, req: stream("GET", "/api/public/events", sseHeaders, map[string]string{"cookie": ""}, nil), status: 200, gets: 0, check: wantAnonymous},
		{name: "T76_sse_user_or_none_cross_site", opts: rt, req: stream("GET", "/api/public/events", sseHeaders, map[string]string{"sec-fetch-site": "cross-site"}, nil), status: 403, code: "origin_not_allowed", gets: 0},

		// Where the anti-forgery rule stands.
		{name: "T76_ws_route_not_opted_in", opts: rt, req: stream("GET", "/api/orders", wsHeaders, nil, nil), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_sse_route_not_opted_in", opts: rt, req: stream("GET", "/api/orders", sseHeaders, nil, nil), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_ws_without_realtime_config", req: ws(nil), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_realtime_route_plain_fetch", opts: rt, req: stream("GET", "/api/ws", sseHeaders, map[string]string{"accept": "application/json", "origin": ownOrigin}, nil), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_realtime_route_POST", opts: rt, req: stream("POST", "/api/events", sseHeaders, nil, nil), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_realtime_route_POST_upgrade", opts: rt, req: stream("POST", "/api/ws", wsHeaders, nil, nil), status: 403, code: "antiforgery_required", gets: 0},

		// The route opts in by context extension.
		{name: "T76_ext_realtime", req: stream("GET", "/x/ws", wsHeaders, nil, map[string]string{extPolicy: "user", extRealtime: "true"}), status: 200, gets: 1, check: passes},
		{name: "T76_ext_realtime_foreign", req: stream("GET", "/x/ws", wsHeaders, map[string]string{"origin": foreignOrigin}, map[string]string{extPolicy: "user", extRealtime: "true"}), status: 403, code: "origin_not_allowed", gets: 0},
		{name: "T76_ext_realtime_not_true", req: stream("GET", "/x/ws", wsHeaders, nil, map[string]string{extPolicy: "user", extRealtime: "yes"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_ext_realtime_client_policy", req: stream("GET", "/x/ws", wsHeaders, nil, map[string]string{extPolicy: "client", extRealtime: "true"}), status: 403, code: "antiforgery_required", gets: 0},
		{name: "T76_ext_listed_origin_per_frontend", opts: rt, req: stream("GET", "/x/ws", wsHeaders, map[string]string{"origin": listedOrigin}, map[string]string{extPolicy: "user", extRealtime: "true"}), status: 200, gets: 1, check: passes},
	}
	runCases(t, cases)
}

// TestRealtimeDenialBody: origin_not_allowed is a JSON denial like the others.
func TestRealtimeDenialBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withRealtime())
	resp := e.check(t, ws(map[string]string{"origin": foreignOrigin})(e))
	body := resp.GetDeniedResponse().GetBody()
	if !strings.Contains(body, `"error":"origin_not_allowed"`) || deniedHeader(resp, "content-type") != "application/json" {
		t.Fatalf("denial %q content-type %q", body, deniedHeader(resp, "content-type"))
	}
}
