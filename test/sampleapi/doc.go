// Package sampleapi is the demo's protected API, the upstream that Envoy
// forwards /api/* to after envoy-bff's ext_authz check.
//
// Its one real endpoint, GET /api/whoami, reports what actually reached the
// upstream: the subject of a verified bearer token (RS256, issuer and expiry
// checked against the provider's JWKS), whether an Authorization header and
// the session cookie were present, and the names (never the values) of the
// cookies it saw. The integration suites use it to prove that envoy-bff
// injected the user's token and stripped the session cookie.
//
// Built for an audience (Config.Audience), it stands for one of several APIs
// behind the gateway: whoami then serves only a bearer token whose `aud`
// contains that audience and answers 401 invalid_token to anything else,
// counting the rejections (API.Stats), so a test proves each API received
// the token made for it (T74). whoami reports the token's `aud`,
// `client_id` and `azp`.
package sampleapi
