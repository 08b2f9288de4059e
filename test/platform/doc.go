// Package platform checks what platform teams install — the Helm chart, the
// Gateway API, Istio and Kubernetes samples, the Grafana dashboard and the
// Prometheus alert rules — with the real tools and API types (Helm's Go
// library, k8s.io/api, sigs.k8s.io/gateway-api, istio.io/client-go, the
// Prometheus PromQL parser), decoding strictly so a misspelled field fails.
//
// It is a Go module of its own, so those heavy dependencies never reach the
// envoy-bff module that users build; `make test` runs it with the rest.
package platform
