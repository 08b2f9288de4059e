package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// TestDenialTable is the one error → (status, code) table, row by row.
func TestDenialTable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err         error
		status      int
		code        string
		clear       bool
		retryAfter  bool
		redirectble bool
	}{
		{errInvalidRequest, 400, "invalid_request", false, false, false},
		{errInvalidPath, 400, "invalid_path", false, false, false},
		{errFrontendUnknown, 403, "frontend_unknown", false, false, false},
		{errInsufficientClaims, 403, "insufficient_claims", false, false, false},
		{errProfileUnknown, 500, "token_profile_unknown", false, false, false},
		{errExchangeRefused, 403, "token_exchange_refused", false, false, false},
		{errExchangeFailed, 503, "token_exchange_unavailable", false, true, false},
		{&stepUpError{acr: []string{"gold"}}, 401, "step_up_required", false, false, false},
		{errPolicyInvalid, 500, "policy_invalid", false, false, false},
		{errClientTokenUnknown, 500, "client_token_unknown", false, false, false},
		{errAntiforgery, 403, "antiforgery_required", false, false, false},
		{errOriginNotAllowed, 403, "origin_not_allowed", false, false, false},
		{errPreflight, 204, "preflight", false, false, false},
		{errNoSession, 401, "unauthenticated", false, false, true},
		{errSessionUnknown, 401, "unauthenticated", true, false, true},
		{errDuplicateCookie, 401, "unauthenticated", false, false, false},
		{errSessionExpired, 401, "session_expired", false, false, true},
		{errRefreshRejected, 401, "session_expired", true, false, true},
		{errStoreUnavailable, 503, "session_store_unavailable", false, true, false},
		{errRefreshFailed, 503, "token_refresh_unavailable", false, true, false},
		{errors.New("something new"), 500, "internal_error", false, false, false},
	}
	if got, want := len(denials()), len(cases)-1; got != want {
		t.Fatalf("the table has %d rows, this test %d: test every row", got, want)
	}
	r := newResponses(nil, "__Host-bff=; Path=/; Max-Age=0")
	for _, tc := range cases {
		t.Run(tc.code+"/"+tc.err.Error(), func(t *testing.T) {
			t.Parallel()
			for _, err := range []error{tc.err, fmt.Errorf("context: %w", tc.err)} {
				d, resp := r.denied(err)
				if d.status != tc.status || d.code != tc.code || d.clearCookie != tc.clear ||
					d.retryAfter != tc.retryAfter || d.redirectable != tc.redirectble {
					t.Errorf("%v → %+v", err, d)
				}
				if status(resp) != tc.status || resp.GetStatus().GetCode() == 0 {
					t.Errorf("%v → response status %d / grpc %d", err, status(resp), resp.GetStatus().GetCode())
				}
				if resp.GetStatus().GetMessage() != tc.code {
					t.Errorf("grpc message %q, want %q (the metric's answer label)", resp.GetStatus().GetMessage(), tc.code)
				}
				if deniedHeader(resp, "cache-control") != "no-store" {
					t.Errorf("headers %v", resp.GetDeniedResponse().GetHeaders())
				}
				if tc.status == 204 { // no content, so no JSON either
					if b := resp.GetDeniedResponse().GetBody(); b != "" || deniedHeader(resp, "content-type") != "" {
						t.Errorf("a 204 carries body %q, content-type %q", b, deniedHeader(resp, "content-type"))
					}
					continue
				}
				var body errorBody
				if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil || body.Error != tc.code || body.Description == "" {
					t.Errorf("body %q", resp.GetDeniedResponse().GetBody())
				}
				if deniedHeader(resp, "content-type") != "application/json" {
					t.Errorf("headers %v", resp.GetDeniedResponse().GetHeaders())
				}
				if (deniedHeader(resp, "retry-after") != "") != tc.retryAfter {
					t.Errorf("retry-after %q", deniedHeader(resp, "retry-after"))
				}
				if (deniedHeader(resp, "set-cookie") != "") != tc.clear {
					t.Errorf("set-cookie %q", deniedHeader(resp, "set-cookie"))
				}
			}
		})
	}
}
