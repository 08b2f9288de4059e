// Package oidcflow is everything that talks to the OpenID provider: the
// browser endpoints (login, callback, user, session, logout) served by Handler, and
// token refresh by Refresher, and client-credentials tokens by ClientTokens.
// All share one Provider, discovered in the background (Handler.Start) and
// built once: the OAuth 2.0 client with PKCE and the go-oidc ID-token
// verifier. Refreshes run once per expiry across replicas under the session
// store's refresh locks (runLocked); revocation at logout (Revoker) plugs in
// through Deps.
//
// One Handler (with its Refresher, ClientTokens and Sessions) serves one
// frontend, one app with its own client, cookie and store view, named by
// Deps.Frontend in every log line and metric. Selector and Router pick the
// frontend for a request by host, then longest path_prefix; AdminHandler
// serves every frontend's sessions.
package oidcflow
