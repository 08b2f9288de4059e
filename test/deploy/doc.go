// Package deploy checks the files users deploy with that need no cluster
// API types — docker-compose.yml and the Envoy config it mounts (rendered
// from the template, accepted by `envoy --mode validate`), each replica's
// environment through `envoy-bff serve --check` — and that every
// SECURITY-TESTS case keeps a test named for it. The Kubernetes, Istio and
// Gateway API samples are decoded strictly into their real types in
// test/platform/manifests.
package deploy
