package main

import "github.com/prometheus/client_golang/prometheus"

// readyCollector serves envoy_bff_frontend_ready: /readyz's line per
// frontend as a gauge, so an alert can see a frontend whose provider is not
// discovered, or a replica with no ready frontend, without probing /readyz.
// It reads the frontends at scrape time, so a config reload that adds or
// removes one needs no re-registration.
type readyCollector struct {
	frontends func() []frontendReady
	desc      *prometheus.Desc
}

var _ prometheus.Collector = (*readyCollector)(nil)

// newReadyCollector reports frontends() on every scrape.
func newReadyCollector(frontends func() []frontendReady) *readyCollector {
	return &readyCollector{
		frontends: frontends,
		desc: prometheus.NewDesc("envoy_bff_frontend_ready",
			"1 while the frontend's provider is discovered (its /readyz line says ready), else 0.",
			[]string{"frontend"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *readyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *readyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, f := range c.frontends() {
		v := 0.0
		if f.ready {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, f.name)
	}
}
