// Package manifests decodes every sample users apply to a cluster — the
// Kubernetes manifests (envoy/k8s), the Istio samples (envoy/istio) and the
// Envoy Gateway sample (envoy/gateway) — strictly into the real API types
// (k8s.io/api, istio.io/client-go with istio.io/api specs,
// sigs.k8s.io/gateway-api, github.com/envoyproxy/gateway/api), so a
// misspelled field fails; then checks their cross-references with those
// types, and has `envoy-bff serve --check` validate every envoy-bff
// configuration they embed.
package manifests
