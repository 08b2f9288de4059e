package authz

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
)

// Reasons for a denial. parseRequest and decide return them, wrapped with %w
// where a cause exists; denialFor maps each to one answer. Anything else is
// an internal error: a deny, never a pass.
var (
	errInvalidRequest     = errors.New("malformed check request")
	errInvalidPath        = errors.New("request path is not acceptable")
	errPolicyInvalid      = errors.New("route names an unknown policy")
	errClientTokenUnknown = errors.New("route names a client token that is not configured")
	errAntiforgery        = errors.New("anti-forgery header missing or wrong")
	errOriginNotAllowed   = errors.New("realtime request from an origin not allowed")
	errPreflight          = errors.New("CORS preflight: answered here, never passed upstream")
	errNoSession          = errors.New("no session cookie")
	errSessionUnknown     = errors.New("session cookie names no live session")
	errDuplicateCookie    = errors.New("more than one session cookie")
	errSessionExpired     = errors.New("access token expired and cannot be refreshed")
	errRefreshRejected    = errors.New("provider rejected the refresh")
	errStoreUnavailable   = errors.New("session store unavailable")
	errRefreshFailed      = errors.New("token refresh unavailable")
	// errDPoPKeyMissing is a DPoP-bound token whose session holds no usable
	// key: it answers internal_error, never a pass with a bearer token.
	errDPoPKeyMissing     = errors.New("dpop-bound token without a usable session key")
	errFrontendUnknown    = errors.New("no frontend serves this route")
	errInsufficientClaims = errors.New("the session lacks a claim the route requires")
	errProfileUnknown     = errors.New("route names a token profile that is not configured")
	errExchangeRefused    = errors.New("the provider refused the route's token")
	errExchangeFailed     = errors.New("the route's token could not be obtained")
)

// denial is one row of the error → answer table.
type denial struct {
	err         error
	status      int
	grpcCode    codes.Code
	code        string // the JSON "error" member
	description string // the JSON "error_description" member; fixed text, never request data
	// clearCookie adds a Set-Cookie that deletes the session cookie: only
	// where the cookie is proven useless, since a session must survive every
	// fault that does not prove it invalid.
	clearCookie bool
	// retryAfter adds `retry-after`: the fault is ours and passing.
	retryAfter bool
	// bodyless answers with the status alone: no JSON body, no content-type.
	bodyless bool
	// redirectable lets a browser navigation on a route that allows it get a
	// 302 to the login page instead.
	redirectable bool
}

// denials is the one table from error to answer. Order matters only for
// errors that wrap two sentinels; none do today.
func denials() []denial {
	return []denial{
		{err: errInvalidRequest, status: http.StatusBadRequest, grpcCode: codes.InvalidArgument,
			code: "invalid_request", description: "The request carries a header value that is not allowed."},
		{err: errInvalidPath, status: http.StatusBadRequest, grpcCode: codes.InvalidArgument,
			code: "invalid_path", description: "The request path is not acceptable."},
		// A session lacking a required claim never reaches the route (T75):
		// a permission problem, so 403, and the session stays.
		{err: errInsufficientClaims, status: http.StatusForbidden, grpcCode: codes.PermissionDenied,
			code: "insufficient_claims", description: "The session lacks a claim this route requires."},
		// A login too weak or too old for the route: the answer is built per
		// request (the challenge names what to ask for); this row gives the
		// status, code and log level.
		{err: errStepUp, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "step_up_required", description: "This route requires a stronger or more recent login."},
		{err: errProfileUnknown, status: http.StatusInternalServerError, grpcCode: codes.Internal,
			code: "token_profile_unknown", description: "The route names a token profile that is not configured."},
		// The provider will not issue this API's token: a configuration or
		// permission problem. Never another token instead (T74); the
		// session stays.
		{err: errExchangeRefused, status: http.StatusForbidden, grpcCode: codes.PermissionDenied,
			code: "token_exchange_refused", description: "The identity provider refused a token for this API."},
		{err: errExchangeFailed, status: http.StatusServiceUnavailable, grpcCode: codes.Unavailable,
			code: "token_exchange_unavailable", description: "A token for this API could not be obtained; try again.", retryAfter: true},
		// Fail closed: a protected route no frontend claims has no session
		// cookie, routes or provider to decide with (T73).
		{err: errFrontendUnknown, status: http.StatusForbidden, grpcCode: codes.PermissionDenied,
			code: "frontend_unknown", description: "No application is configured for this route."},
		{err: errPolicyInvalid, status: http.StatusInternalServerError, grpcCode: codes.Internal,
			code: "policy_invalid", description: "The route names an unknown policy."},
		{err: errClientTokenUnknown, status: http.StatusInternalServerError, grpcCode: codes.Internal,
			code: "client_token_unknown", description: "The route names a client token this server does not define."},
		{err: errAntiforgery, status: http.StatusForbidden, grpcCode: codes.PermissionDenied,
			code: "antiforgery_required", description: "The anti-forgery header is missing or wrong."},
		// A WebSocket or EventSource from another site, or without the
		// headers that prove where it comes from (T76).
		{err: errOriginNotAllowed, status: http.StatusForbidden, grpcCode: codes.PermissionDenied,
			code: "origin_not_allowed", description: "This origin may not open this route."},
		// A preflight carries no credential, so it earns no token and no
		// identity; answered without any Access-Control-Allow-* header, it
		// grants no origin anything (T70).
		{err: errPreflight, status: http.StatusNoContent, grpcCode: codes.PermissionDenied,
			code: "preflight", bodyless: true},
		{err: errNoSession, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "unauthenticated", description: "Sign in to continue.", redirectable: true},
		{err: errSessionUnknown, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "unauthenticated", description: "Sign in to continue.", clearCookie: true, redirectable: true},
		{err: errDuplicateCookie, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "unauthenticated", description: "Sign in to continue."},
		{err: errSessionExpired, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "session_expired", description: "The session has expired; sign in again.", redirectable: true},
		{err: errRefreshRejected, status: http.StatusUnauthorized, grpcCode: codes.Unauthenticated,
			code: "session_expired", description: "The session has expired; sign in again.", clearCookie: true, redirectable: true},
		{err: errStoreUnavailable, status: http.StatusServiceUnavailable, grpcCode: codes.Unavailable,
			code: "session_store_unavailable", description: "Sessions are unavailable; try again shortly.", retryAfter: true},
		{err: errRefreshFailed, status: http.StatusServiceUnavailable, grpcCode: codes.Unavailable,
			code: "token_refresh_unavailable", description: "The access token could not be renewed; try again shortly.", retryAfter: true},
	}
}

// internalDenial answers an error the table does not know: fail closed.
func internalDenial() denial {
	return denial{status: http.StatusInternalServerError, grpcCode: codes.Internal,
		code: "internal_error", description: "The request could not be authorized."}
}
