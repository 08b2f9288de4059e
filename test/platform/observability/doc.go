// Package observability checks envoy-bff's Grafana dashboard and Prometheus
// alert rules (envoy/observability) with the real tools: the dashboard is
// decoded strictly into the Grafana Foundation SDK's dashboard types, the
// rules are loaded strictly with Prometheus's rulefmt, every PromQL
// expression in either is parsed by Prometheus's parser, and every metric
// those expressions name must be in a real /metrics scrape of a running
// envoy-bff replica (Redis sessions with the session cache on, the local
// OpenID provider). A misspelled field, a broken expression or a metric
// that envoy-bff does not serve fails the test.
package observability
