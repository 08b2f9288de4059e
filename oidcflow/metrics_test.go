package oidcflow

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// TestLoginLogoutMetrics: every login callback counts by outcome, and every
// session a logout ends counts by kind, so an operator sees sign-in
// failures and logout storms on /metrics.
func TestLoginLogoutMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{logoutUser, logoutBackchannel, logoutAdmin} {
		if got := testutil.ToFloat64(m.logouts.WithLabelValues(kind)); got != 0 {
			t.Fatalf("logouts{kind=%s} starts at %v", kind, got)
		}
	}
	e := newEnv(t, withDeps(func(d *Deps) { d.Metrics = m }))

	// Logins: two that start sessions, one with an unknown state.
	b := e.browser()
	b.login("/")
	_, a := e.loggedIn()
	_, c := e.loggedIn()
	if r := e.browser().get("/bff/callback?state=unknown&code=x&iss=" + url.QueryEscape(e.cfg.Issuer)); r.Status != http.StatusBadRequest {
		t.Fatalf("callback with an unknown state: %d", r.Status)
	}

	// Logouts: the user's, the provider's (one session), the admin's (one).
	if r := b.get(b.api("/bff/user").json(t)["logoutUrl"].(string)); r.Status != http.StatusFound {
		t.Fatalf("user logout: %d %s", r.Status, r.Body)
	}
	if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: a.GetSid()})); r.Status != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", r.Status, r.Body)
	}
	if n, err := e.h.Sessions().EndMatching(t.Context(), e.cfg.Issuer, c.GetSubject(), ""); err != nil || n != 1 {
		t.Fatalf("end the rest directly: %d %v", n, err) // not through AdminHandler: not counted
	}
	_, d := e.loggedIn()
	admin := AdminHandler(e.h.Sessions(), "", nil)
	rec := adminDelete(t, admin, "/admin/sessions?sub="+d.GetSubject())
	if rec != http.StatusOK {
		t.Fatalf("admin end: %d", rec)
	}

	for _, tc := range []struct {
		vec         *prometheus.CounterVec
		label, want string
		n           float64
	}{
		{m.logins, "outcome", loginOK, 4},
		{m.logins, "outcome", "invalid_state", 1},
		{m.logouts, "kind", logoutUser, 1},
		{m.logouts, "kind", logoutBackchannel, 1},
		{m.logouts, "kind", logoutAdmin, 1},
	} {
		if got := testutil.ToFloat64(tc.vec.WithLabelValues(tc.want)); got != tc.n {
			t.Errorf("{%s=%s} = %v, want %v", tc.label, tc.want, got, tc.n)
		}
	}
}

func adminDelete(t *testing.T, h http.Handler, target string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodDelete, target, nil))
	return rec.Code
}
