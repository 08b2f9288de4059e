// Package spa is the demo's single-page app: one static index.html with
// plain JavaScript and no build step, embedded in the binary.
//
// The page never sees a token. It asks /bff/user who is signed in, calls
// /api/whoami through Envoy, and navigates to /bff/login and the logoutUrl
// that /bff/user returns; every fetch carries `X-CSRF: 1`. It shows which
// app it is: the name Handler was given for the request's host (#app-name),
// and the host itself (#app-host). An app under a path prefix
// (App.PathPrefix "/partner/") gets the page with the prefix in the body's
// data-base, and the page then uses /partner/bff/… and /partner/api/….
// Signed in, it shows when the session ends (GET /bff/session, which does
// not extend it), warns in the last two minutes with a "Stay signed in"
// button (POST /bff/session), follows the API's Server-Sent Events
// (/api/events) and opens a WebSocket (/api/ws) on request. With
// App.SilentLogin, a load without a session first tries a silent login
// (/bff/login?prompt=none), once a minute at most; envoy-bff's
// ?bff_login=required marker ends it with the Log in button.
// Element IDs (#login, #logout, #call-api, #user-name, #api-result,
// #status, #app-name, #app-host, #session-info, #session-warning, #extend,
// #feed, #open-ws, #ws-result) and the body's data-state ("loading",
// "anonymous", "authenticated") are stable for browser tests.
package spa
