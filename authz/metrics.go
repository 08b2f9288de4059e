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
			Help: "ext_authz checks by route policy and answer (ok, or the error code of the denial).",
		}, []string{"policy", "answer"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "envoy_bff_check_duration_seconds",
			Help:    "Time to answer an ext_authz check, by route policy.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"policy"}),
	}
	for _, c := range []prometheus.Collector{m.checks, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register check metrics: %w", err)
		}
	}
	return m, nil
}

// observe records one answered check.
func (m *Metrics) observe(policy Policy, answer string, start time.Time) {
	if m == nil {
		return
	}
	p := policyLabel(policy)
	m.checks.WithLabelValues(p, answer).Inc()
	m.latency.WithLabelValues(p).Observe(time.Since(start).Seconds())
}
