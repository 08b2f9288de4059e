// Package oidctest is a small, self-contained OpenID Connect provider for the
// demo and the test suites.
//
// It signs in one configured demo user without any form (the authorization
// endpoint approves at once), and implements the parts of OpenID Connect and
// OAuth 2.0 that envoy-bff relies on, strictly enough that a client bug shows
// up as an error: the authorization code flow with mandatory PKCE (S256) and
// RFC 9207 `iss`, the token endpoint (authorization_code, refresh_token with
// rotation and reuse detection that revokes the whole token family,
// client_credentials), userinfo, RFC 7009 revocation, RP-initiated logout and
// back-channel logout.
//
// Tests steer and observe it through hooks that are safe for concurrent use:
// [Provider.Stats], [Provider.IsRevoked], [Provider.SetRefreshDelay],
// [Provider.HoldRefreshes], [Provider.HoldRefreshResponses],
// [Provider.RevocationLog], [Provider.SetDown], [Provider.RotateKey] and
// [Provider.MintLogoutToken].
//
// The caller owns the listener. Either give [ProviderConfig.Issuer] and mount
// [Provider.Handler] yourself, mount it on an httptest.Server and call
// [Provider.SetIssuer] with the server's URL, or let [Provider.Start] listen
// and return the issuer.
package oidctest
