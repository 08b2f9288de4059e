// Package authz is envoy-bff's answer to Envoy's ext_authz gRPC
// envoy.service.auth.v3.Authorization/Check, called for every API request.
//
// A Check runs in three steps, each small enough to read on its own:
//
//   - parse (pure): the CheckRequest becomes a plain request — normalised path,
//     the route's policy, and the few headers a decision needs. Malformed input
//     (encoded slashes, control characters, non-UTF-8) is denied here.
//   - decide: anti-forgery header first, then the session cookie, then one
//     store Get, then a token refresh only when one is due. Every failure is a
//     sentinel error; nothing on a protected route fails open.
//   - render (pure): an OK response that sets `authorization: Bearer <access
//     token>`, strips the session cookie and client-sent identity headers, or a
//     denied response taken from one error → (status, code) table. Denials that
//     do not depend on the request are built once, at construction.
//
// Known conditions are answers, never gRPC errors, so Envoy's failure mode
// never decides for us.
//
// # Policy source
//
// The route's check_settings.context_extensions["bff.policy"] wins (with
// "bff.redirect": "true" to allow login redirects); otherwise the path rules
// (exact, then longest prefix) on the normalised path; otherwise
// Config.DefaultPolicy. An unknown name in the route is a 500 policy_invalid:
// never a pass. client and user_or_client send the client token the route
// names ("bff.client_token" or the rule's client_token, else "default"); a
// name the server does not define is a 500 client_token_unknown.
//
// # Choices where the design is silent
//
//   - A CORS preflight (OPTIONS with access-control-request-method) on any
//     policy but none is answered by Check itself: 204 with no
//     Access-Control-* header, no store lookup, nothing upstream. It carries
//     no credential in a browser, so it can earn no token; a same-origin SPA
//     never sends one, and an origin that must be allowed is Envoy's CORS
//     filter's to answer before ext_authz runs.
//   - A browser navigation (GET with sec-fetch-mode: navigate or an Accept of
//     text/html) cannot carry the anti-forgery header. On a `user` route that
//     allows redirects, one without any session cookie gets the 302 to login
//     (it carries no credential to forge); with a cookie it still needs the
//     header, so a cross-site navigation never reaches upstream with a token.
//   - user_or_none treats "no usable session" (no cookie, malformed or unknown
//     ID, refresh rejected, expired token without a refresher) as anonymous and
//     passes without a token, clearing a dead cookie through
//     response_headers_to_add. Faults (store or provider unreachable) and a
//     duplicate session cookie deny on every policy but none.
//   - A malformed or unknown cookie, or a rejected refresh, gets a clearing
//     Set-Cookie; a duplicate cookie, a store fault or an expired token without
//     a refresher does not, since they do not prove the session dead.
//   - While the access token is still valid, a refresh that fails for any
//     reason but rejection keeps the old token; only after expiry is it a 503.
//
// # Envoy configuration this package relies on
//
// Since Envoy 1.37 a denied response's `location` reaches the client only if
// listed in the filter's allowed_client_headers (shared/SECURITY-TESTS.md);
// the redirect for navigations needs it there. With
// encode_raw_headers: true, repeated headers arrive unmerged and non-UTF-8 is
// visible, which makes the T13 and T50 checks exact.
package authz
