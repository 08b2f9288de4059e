// Package deploy checks the files users deploy with — docker-compose.yml,
// the Dockerfile, the Envoy and Kubernetes/Istio samples under envoy/ —
// against each other and against envoy-bff's own configuration, since no
// Docker engine or cluster runs here; and that every SECURITY-TESTS case
// keeps a test named for it.
package deploy
