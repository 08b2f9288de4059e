// Package sampleapi is the demo's protected API, the upstream that Envoy
// forwards /api/* to after envoy-bff's ext_authz check.
//
// Its one real endpoint, GET /api/whoami, reports what actually reached the
// upstream: the subject of a verified bearer token (RS256, issuer and expiry
// checked against the provider's JWKS), whether an Authorization header and
// the session cookie were present, and the names (never the values) of the
// cookies it saw. The integration suites use it to prove that envoy-bff
// injected the user's token and stripped the session cookie.
package sampleapi
