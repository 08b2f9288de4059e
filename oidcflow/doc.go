// Package oidcflow is everything that talks to the OpenID provider: the
// browser endpoints (login, callback, user, logout) served by Handler, and
// token refresh by Refresher. Both share one Provider, discovered in the
// background (Handler.Start) and built once: the OAuth 2.0 client with PKCE
// and the go-oidc ID-token verifier. Revocation at logout (Revoker) and the
// cross-replica refresh lock (RefreshLocker) plug in through Deps.
package oidcflow
