// Package integration drives a browser-like client through real Envoy to
// real envoy-bff processes, a real redis-server, the local OpenID provider and
// the sample API. It needs Envoy and redis-server (installed by `make
// bootstrap`) and the built envoy-bff binary ($ENVOY_BFF_BIN, or it builds
// one); a missing part fails the suite, it never skips.
package integration
