// Package harness starts the real parts of an envoy-bff deployment on free
// loopback ports — redis-server, Envoy, envoy-bff replicas (the built binary),
// the local OpenID provider, the sample API and SPA — and stops every process
// it started. The integration suites and the demo (`make run`) both use it.
package harness
