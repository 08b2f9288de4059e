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
	e := newEnv(t, withDeps(func(d *Deps) { d.Metrics = m }))
	// The frontend's series exist from the start (a rate needs no absent case).
	if n := testutil.CollectAndCount(m.vecs.logouts); n != 3 {
		t.Fatalf("%d logout series before any logout, want 3 (one per kind)", n)
	}
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want int
	}{
		{"refresh outcomes of kind session", m.vecs.refreshes, len(sessionOutcomes)},
		{"lock waits", m.vecs.lockWaits, 1},
		{"lock wait time", m.vecs.lockWaitTime, 1},
		{"grant time", m.vecs.grantTime, 1},
	} {
		if n := testutil.CollectAndCount(tc.c); n != tc.want {
			t.Fatalf("%d series of %s before any refresh, want %d", n, tc.name, tc.want)
		}
	}

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
	admin := AdminHandler(oneFrontend(e.h.Sessions()), "", nil)
	rec := adminDelete(t, admin, "/admin/sessions?sub="+d.GetSubject())
	if rec != http.StatusOK {
		t.Fatalf("admin end: %d", rec)
	}

	for _, tc := range []struct {
		vec         *prometheus.CounterVec
		label, want string
		n           float64
	}{
		{m.vecs.logins, "outcome", loginOK, 4},
		{m.vecs.logins, "outcome", "invalid_state", 1},
		{m.vecs.logouts, "kind", logoutUser, 1},
		{m.vecs.logouts, "kind", logoutBackchannel, 1},
		{m.vecs.logouts, "kind", logoutAdmin, 1},
	} {
		if got := testutil.ToFloat64(tc.vec.WithLabelValues(defaultFrontend, tc.want)); got != tc.n {
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

// TestMetricsPerFrontend: two frontends record into one registry without a
// clash, each series labelled with its own frontend, and a nil Metrics binds
// to nil.
func TestMetricsPerFrontend(t *testing.T) {
	t.Parallel()
	if (*Metrics)(nil).Frontend("shop") != nil {
		t.Fatal("a nil Metrics bound to a frontend is not nil")
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	shop := newEnv(t, withClientTokens(), withDeps(func(d *Deps) { d.Metrics = m; d.Frontend = "shop" }))
	admin := newEnv(t, withDeps(func(d *Deps) { d.Metrics = m; d.Frontend = "admin" }))
	shop.loggedIn()
	shop.loggedIn()
	admin.loggedIn()
	ct := shop.clientTokensWith(func(d *Deps) { d.Metrics = m; d.Frontend = "shop" })
	if _, err := ct.Token(t.Context(), DefaultClientToken); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		series string
		c      prometheus.Collector
		want   float64
	}{
		{"logins{shop,ok}", m.vecs.logins.WithLabelValues("shop", loginOK), 2},
		{"logins{admin,ok}", m.vecs.logins.WithLabelValues("admin", loginOK), 1},
		{"refreshes{shop,client,refreshed}", m.vecs.refreshes.WithLabelValues("shop", kindClient, outcomeRefreshed), 1},
		{"refreshes{admin,client,refreshed}", m.vecs.refreshes.WithLabelValues("admin", kindClient, outcomeRefreshed), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.series, got, tc.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			fe := ""
			for _, lp := range metric.GetLabel() {
				if lp.GetName() == FrontendAttr {
					fe = lp.GetValue()
				}
			}
			if fe != "shop" && fe != "admin" {
				t.Errorf("%s %v: frontend label %q", mf.GetName(), metric.GetLabel(), fe)
			}
		}
	}
}
