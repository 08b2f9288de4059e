// Package oidctest is a small, self-contained OpenID Connect provider for the
// demo and the test suites.
//
// It signs in one configured demo user without any form (the authorization
// endpoint approves at once), and implements the parts of OpenID Connect and
// OAuth 2.0 that envoy-bff relies on, strictly enough that a client bug shows
// up as an error: the authorization code flow with mandatory PKCE (S256) and
// RFC 9207 `iss`, the token endpoint (authorization_code, refresh_token with
// rotation and reuse detection that revokes the whole token family, RFC 8707
// resource, client_credentials, and RFC 8693 token exchange of a user access
// token for another audience), userinfo, RFC 7009 revocation, RP-initiated
// logout and back-channel logout.
//
// Token exchange follows Keycloak's standard token exchange: the client needs
// [Client.TokenExchange], the subject token must be a live user access token
// issued to it (or naming it in `aud`), and the targets and their scopes are
// [ProviderConfig.Audiences]. An exchanged token belongs to the subject
// token's session and family: it is revoked with them and never outlives the
// session ([ProviderConfig.SessionMaxLifetime]).
//
// Tests steer and observe it through hooks that are safe for concurrent use:
// [Provider.Stats], [Provider.IsRevoked], [Provider.SetRefreshDelay],
// [Provider.HoldRefreshes], [Provider.HoldRefreshResponses],
// [Provider.RevocationLog], [Provider.SetDown], [Provider.RotateKey],
// [Provider.MintLogoutToken], and for token exchange
// [Provider.ExchangeCounts], [Provider.ExchangeLog], [Provider.SetExchangeError],
// [Provider.FailNextExchanges] and [Provider.HoldExchanges].
//
// The caller owns the listener. Either give [ProviderConfig.Issuer] and mount
// [Provider.Handler] yourself, mount it on an httptest.Server and call
// [Provider.SetIssuer] with the server's URL, or let [Provider.Start] listen
// and return the issuer.
package oidctest
