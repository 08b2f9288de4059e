package authz

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/encoding/prototext"
)

// TestRequestHeadersAreWhatCheckReads: RequestHeaders is exactly what
// Check reads, so Envoy's allowed_headers built from it drops nothing
// Check needs (each listed header changes some answer, log line or span
// when it is missing) and sends nothing it ignores (a browser request full
// of other headers, some of them forged, gets the same answer with only
// the listed ones).
func TestRequestHeadersAreWhatCheckReads(t *testing.T) {
	t.Parallel()
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	// Headers a browser, a proxy or an attacker may send that Check must
	// not act on (valid values: T50 is about the headers Check reads).
	noise := map[string]string{
		"user-agent":             "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0",
		"accept-language":        "en-GB,en;q=0.9",
		"accept-encoding":        "gzip, deflate, br",
		"referer":                "https://evil.example/attack",
		"sec-fetch-dest":         "document",
		"sec-ch-ua-platform":     `"Linux"`,
		"cache-control":          "no-cache",
		"authorization":          "Bearer forged",
		"x-csrf-token":           "1",
		"x-xsrf-token":           "1",
		"x-forwarded-host":       "evil.example",
		"x-forwarded-proto":      "http",
		"x-forwarded-for":        "10.0.0.1",
		"forwarded":              "host=evil.example;proto=http",
		"x-original-url":         "/api/admin",
		"x-envoy-original-path":  "/public/x",
		"x-http-method-override": "DELETE",
		"cookie2":                cookieName + "=forged",
		"baggage":                "user=admin",
		"connection":             "Upgrade",
		"sec-websocket-key":      "dGhlIHNhbXBsZSBub25jZQ==",
	}
	with := func(base func(*env) *authv3.CheckRequest, change map[string]string) func(*env) *authv3.CheckRequest {
		return func(e *env) *authv3.CheckRequest {
			in := base(e)
			h := in.Attributes.Request.Http.Headers
			for k, v := range change {
				h[k] = v
			}
			return in
		}
	}
	navigation := func(change map[string]string) func(*env) *authv3.CheckRequest {
		return func(*env) *authv3.CheckRequest {
			return creq(http.MethodGet, "/app/home", change, nil)
		}
	}
	// Each case shows that Check reads header: its outcome with the header
	// differs from its outcome without.
	cases := []struct {
		header string
		req    func(*env) *authv3.CheckRequest
	}{
		{"cookie", api(nil)},
		{csrfHeader, api(nil)},
		{"x-request-id", api(map[string]string{csrfHeader: ""})}, // the denial's log line names it
		{"accept", navigation(map[string]string{"accept": "text/html"})},
		{"sec-fetch-mode", navigation(map[string]string{"sec-fetch-mode": "navigate"})},
		{"origin", ws(nil)},
		{"sec-fetch-site", sse(nil)},
		{"upgrade", ws(nil)},
		{"access-control-request-method", preflightFrom(listedOrigin, "PUT", "")},
		{"access-control-request-headers", preflightFrom(listedOrigin, "PUT", "x-csrf, content-type")},
		{"traceparent", api(map[string]string{"traceparent": traceparent})},
		{"tracestate", api(map[string]string{"traceparent": traceparent, "tracestate": "vendor=x"})},
	}
	listed := RequestHeaders("X-CSRF")
	var covered []string
	for _, tc := range cases {
		covered = append(covered, tc.header)
	}
	slices.Sort(covered)
	if !slices.Equal(slices.Compact(covered), listed) {
		t.Fatalf("RequestHeaders = %v, but the cases show Check reading %v", listed, covered)
	}
	only := func(base func(*env) *authv3.CheckRequest, keep func(string) bool) func(*env) *authv3.CheckRequest {
		return func(e *env) *authv3.CheckRequest {
			in := base(e)
			h := in.Attributes.Request.Http.Headers
			for k := range h {
				if !keep(k) {
					delete(h, k)
				}
			}
			return in
		}
	}
	for _, tc := range cases {
		t.Run(tc.header, func(t *testing.T) {
			t.Parallel()
			full := observeCheck(t, with(tc.req, noise))
			sent := observeCheck(t, only(with(tc.req, noise), func(k string) bool { return slices.Contains(listed, k) }))
			if full != sent {
				t.Errorf("Check answers differently once headers outside RequestHeaders are dropped:\nall headers:\n%s\nlisted only:\n%s", full, sent)
			}
			missing := observeCheck(t, only(tc.req, func(k string) bool { return k != tc.header }))
			if missing == sent {
				t.Errorf("without %s the outcome is the same: Check does not read it here\n%s", tc.header, sent)
			}
		})
	}
}

// observeCheck runs one Check in a fresh env (realtime routes, a listed
// origin, a tracer) and describes everything a request's headers can
// change: the answer, the request IDs its log lines name, and its span's
// remote parent.
func observeCheck(t *testing.T, req func(*env) *authv3.CheckRequest) string {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	e := newEnv(t, withRealtime(), withTracer(rec))
	resp := e.check(t, req(e))
	var b strings.Builder
	b.WriteString(prototext.Format(resp))
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("not a JSON log line: %s", sc.Text())
		}
		fmt.Fprintf(&b, "log request_id=%v\n", line["request_id"])
	}
	for _, s := range rec.Ended() {
		if p := s.Parent(); p.IsRemote() {
			fmt.Fprintf(&b, "span parent=%s state=%q\n", p.TraceID(), p.TraceState().String())
		}
	}
	return b.String()
}
