// Package harness starts the real parts of an envoy-bff deployment on free
// loopback ports — redis-server, Envoy, envoy-bff replicas (the built binary),
// the local OpenID provider, the sample API and SPA — and stops every process
// it started. FaultProxy sits between a client and redis-server to inject the
// network faults a server cannot produce itself (latency, refused or dropped
// connections, a switch to another server). The integration suites and the demo (`make run`) both use it.
package harness
