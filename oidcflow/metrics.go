package oidcflow

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the refresh, login and logout counters and histograms
// envoy-bff serves on its admin listener, every series labelled with its
// frontend. NewMetrics registers them once; Frontend binds the label for one
// frontend (Deps does so from Deps.Frontend). A nil *Metrics records
// nothing, so tests may leave it out.
type Metrics struct {
	vecs     *metricVecs
	frontend string
}

// metricVecs are the registered collectors every frontend's Metrics share.
type metricVecs struct {
	refreshes    *prometheus.CounterVec
	lockWaits    *prometheus.CounterVec
	lockWaitTime *prometheus.HistogramVec
	grantTime    *prometheus.HistogramVec
	logins       *prometheus.CounterVec
	logouts      *prometheus.CounterVec
}

// Logout kinds, the `kind` label of envoy_bff_logouts_total.
const (
	logoutUser        = "user"        // the browser's /logout with the session's sid
	logoutBackchannel = "backchannel" // the provider's back-channel logout token
	logoutAdmin       = "admin"       // the admin API
)

// loginOK is the `outcome` of a callback that started a session; a failed
// one is counted under its error code (invalid_state, login_failed, …).
const loginOK = "ok"

// loginSilentRequired is the outcome of a prompt=none login the provider
// could not finish without the user (sent back with bff_login=required).
const loginSilentRequired = "login_required"

// Token kinds, the `kind` label of every refresh metric.
const (
	kindSession = "session" // a user's access token, renewed with the refresh token
	kindClient  = "client"  // a client-credentials token
	// kindExchange is a token profile's token obtained by token exchange,
	// per session and profile (outcome "rejected": the provider refused it).
	kindExchange = "exchange"
	// kindResource is a refresh profile's token: a refresh grant with a
	// resource or scope, per session and profile.
	kindResource = "resource"
)

// Refresh outcomes, the `outcome` label of envoy_bff_token_refreshes_total.
const (
	outcomeRefreshed      = "refreshed"            // new tokens stored by this replica
	outcomeAlreadyFresh   = "already_fresh"        // another replica had refreshed before the lock was ours
	outcomeLockBusy       = "lock_busy"            // another replica holds the lock; the still-valid token was used
	outcomeConflict       = "conflict"             // the generation changed under us; the newer record was kept
	outcomeStaleGrant     = "stale_grant"          // invalid_grant after another replica rotated the token; kept theirs
	outcomeRejected       = "rejected"             // the provider refused; the session was ended
	outcomeUnavailable    = "provider_unavailable" // network, timeout, 5xx, discovery pending
	outcomeClientRejected = "client_rejected"      // invalid_client: a configuration problem
	outcomeSessionGone    = "session_gone"         // logged out while refreshing; new tokens revoked
	outcomeStoreError     = "store_error"          // the session store failed
	outcomeTimeout        = "timeout"              // the wait for another holder ran out of time
)

// NewMetrics registers the flow metrics with reg, once for every frontend.
// The result records for the frontend "default"; Frontend binds another.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	v := &metricVecs{
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envoy_bff_token_refreshes_total",
			Help: "Token refresh attempts by frontend, kind (session, client, exchange, resource) and outcome.",
		}, []string{FrontendAttr, "kind", "outcome"}),
		lockWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envoy_bff_refresh_lock_waits_total",
			Help: "Times a refresh waited for another holder of the token's lock, by frontend and kind.",
		}, []string{FrontendAttr, "kind"}),
		lockWaitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envoy_bff_refresh_lock_wait_seconds",
			Help:    "How long refreshes waited for another holder of the token's lock.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{FrontendAttr, "kind"}),
		grantTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envoy_bff_token_grant_duration_seconds",
			Help:    "Latency of token-endpoint calls made to refresh tokens, by frontend and kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{FrontendAttr, "kind"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envoy_bff_logins_total",
			Help: "Login callbacks by frontend and outcome: ok, or the error code the browser was answered with.",
		}, []string{FrontendAttr, "outcome"}),
		logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envoy_bff_logouts_total",
			Help: "Sessions ended by logout, by frontend and kind (user, backchannel, admin).",
		}, []string{FrontendAttr, "kind"}),
	}
	for _, c := range []prometheus.Collector{v.refreshes, v.lockWaits, v.lockWaitTime, v.grantTime, v.logins, v.logouts} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register flow metrics: %w", err)
		}
	}
	return &Metrics{vecs: v, frontend: defaultFrontend}, nil
}

// sessionOutcomes are the refresh outcomes a session's refresh can have,
// created at zero with each frontend.
var sessionOutcomes = [...]string{outcomeRefreshed, outcomeAlreadyFresh, outcomeLockBusy,
	outcomeConflict, outcomeStaleGrant, outcomeRejected, outcomeUnavailable,
	outcomeClientRejected, outcomeSessionGone, outcomeStoreError, outcomeTimeout}

// Frontend is m recording for the frontend name, sharing m's collectors;
// nil for a nil m. It creates that frontend's login and logout series, and
// its session refresh, lock-wait and grant-latency series, at zero, so a
// rate over them (a dashboard panel, an alert's ratio) needs no absent case.
func (m *Metrics) Frontend(name string) *Metrics {
	if m == nil {
		return nil
	}
	b := &Metrics{vecs: m.vecs, frontend: name}
	b.vecs.logins.WithLabelValues(name, loginOK)
	for _, k := range []string{logoutUser, logoutBackchannel, logoutAdmin} {
		b.vecs.logouts.WithLabelValues(name, k)
	}
	for _, o := range sessionOutcomes {
		b.vecs.refreshes.WithLabelValues(name, kindSession, o)
	}
	b.vecs.lockWaits.WithLabelValues(name, kindSession)
	b.vecs.lockWaitTime.WithLabelValues(name, kindSession)
	b.vecs.grantTime.WithLabelValues(name, kindSession)
	return b
}

// login counts one callback's outcome.
func (m *Metrics) login(outcome string) {
	if m != nil {
		m.vecs.logins.WithLabelValues(m.frontend, outcome).Inc()
	}
}

// loggedOut counts n sessions ended by a logout of kind.
func (m *Metrics) loggedOut(kind string, n int) {
	if m != nil && n > 0 {
		m.vecs.logouts.WithLabelValues(m.frontend, kind).Add(float64(n))
	}
}

// outcome counts one refresh attempt's result.
func (m *Metrics) outcome(kind, outcome string) {
	if m != nil {
		m.vecs.refreshes.WithLabelValues(m.frontend, kind, outcome).Inc()
	}
}

// waited records one wait for another holder of a lock.
func (m *Metrics) waited(kind string, d time.Duration) {
	if m != nil {
		m.vecs.lockWaits.WithLabelValues(m.frontend, kind).Inc()
		m.vecs.lockWaitTime.WithLabelValues(m.frontend, kind).Observe(d.Seconds())
	}
}

// granted records one token-endpoint call's latency.
func (m *Metrics) granted(kind string, d time.Duration) {
	if m != nil {
		m.vecs.grantTime.WithLabelValues(m.frontend, kind).Observe(d.Seconds())
	}
}
