package authz

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count and time every Check, by route policy and answer. A nil
// *Metrics records nothing.
type Metrics struct {
	checks  *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

// NewMetrics registers the Check metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "envoy_bff_checks_total",
			Help: "ext_authz checks by frontend, route policy and answer (ok, or the error code of the denial); frontend \"unknown\" when none took the request.",
		}, []string{"frontend", "policy", "answer"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envoy_bff_check_duration_seconds",
			Help:    "Time to answer an ext_authz check, by frontend and route policy.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"frontend", "policy"}),
	}
	for _, c := range []prometheus.Collector{m.checks, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register check metrics: %w", err)
		}
	}
	return m, nil
}

// frontendMetrics are Metrics with one frontend's label bound, built when
// the frontend is; the zero value records nothing. The series of a pass
// are resolved up front for every policy, so the hot path allocates
// nothing for them.
type frontendMetrics struct {
	checks  *prometheus.CounterVec
	latency prometheus.ObserverVec
	ok      map[Policy]prometheus.Counter
	took    map[Policy]prometheus.Observer
}

// frontend binds the frontend label; a nil *Metrics records nothing.
func (m *Metrics) frontend(name string) frontendMetrics {
	if m == nil {
		return frontendMetrics{}
	}
	l := prometheus.Labels{"frontend": name}
	f := frontendMetrics{
		checks:  m.checks.MustCurryWith(l),
		latency: m.latency.MustCurryWith(l),
		ok:      map[Policy]prometheus.Counter{},
		took:    map[Policy]prometheus.Observer{},
	}
	for _, p := range []Policy{PolicyNone, PolicyUser, PolicyUserOrNone, PolicyClient, PolicyUserOrClient} {
		f.ok[p] = f.checks.WithLabelValues(policyLabel(p), "ok")
		f.took[p] = f.latency.WithLabelValues(policyLabel(p))
	}
	return f
}

// observe records one answered check.
func (m frontendMetrics) observe(policy Policy, answer string, start time.Time) {
	if m.checks == nil {
		return
	}
	took := time.Since(start).Seconds()
	if c, ok := m.ok[policy]; ok && answer == "ok" {
		c.Inc()
		m.took[policy].Observe(took)
		return
	}
	p := policyLabel(policy)
	m.checks.WithLabelValues(p, answer).Inc()
	m.latency.WithLabelValues(p).Observe(took)
}
