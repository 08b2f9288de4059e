package oidcflow

import (
	"errors"
	"net/http"

	"github.com/envoy-bff/envoy-bff/session"
)

// Sentinel errors the Refresher returns; callers branch with errors.Is.
var (
	// ErrRefreshRejected means the provider refused the refresh token
	// (invalid_grant), or a refreshed ID token named another user or issuer:
	// the session is over. The Refresher has already deleted it; the caller
	// answers 401 session_expired and clears the cookie.
	ErrRefreshRejected = errors.New("provider rejected the refresh")
	// ErrProviderUnavailable means the provider could not be asked or gave no
	// usable answer (network, timeout, 5xx, non-JSON, oversized, discovery
	// pending). It proves nothing about the session, which is kept.
	ErrProviderUnavailable = errors.New("provider unavailable")
	// ErrClientRejected means the token endpoint refused envoy-bff itself
	// (invalid_client, unauthorized_client and similar): a configuration
	// problem to alert on, not a reason to end anyone's session.
	ErrClientRejected = errors.New("provider rejected the client")
	// errRefreshOutlived means a refresh ended after the access token it
	// obtained had expired: transient, the session is kept.
	errRefreshOutlived = errors.New("the refreshed access token expired before the refresh ended")
	// ErrInvalidReturnURL means a returnUrl is not a local path.
	ErrInvalidReturnURL = errors.New("return url is not a local path")
)

// Decisions of the browser endpoints, each mapped to one answer by denials.
var (
	errAntiforgery      = errors.New("anti-forgery header missing or wrong")
	errUnauthenticated  = errors.New("no valid session")
	errInvalidCallback  = errors.New("malformed callback")
	errInvalidState     = errors.New("unknown, expired or foreign login state")
	errLoginFailed      = errors.New("login failed")
	errInvalidSID       = errors.New("logout sid does not match the session")
	errProviderNotReady = errors.New("provider discovery pending")
	errMethod           = errors.New("method not allowed")
	errNoRoute          = errors.New("no such endpoint")
)

// denial is how one decision answers the browser.
type denial struct {
	err         error
	status      int
	code        string
	description string
	retry       bool // add Retry-After
}

// denials maps decisions to answers; the first entry that matches wins, so
// the more specific ones come first. Anything unlisted is a 500.
var denials = []denial{
	{errAntiforgery, http.StatusForbidden, "antiforgery_required", "the anti-forgery header is missing or wrong", false},
	{errUnauthenticated, http.StatusUnauthorized, "unauthenticated", "no valid session", false},
	{ErrInvalidReturnURL, http.StatusBadRequest, "invalid_return_url", "returnUrl must be a local path", false},
	{errInvalidCallback, http.StatusBadRequest, "invalid_callback", "the callback request is malformed", false},
	{errInvalidState, http.StatusBadRequest, "invalid_state", "the login request is unknown, expired or belongs to another browser; start again", false},
	{errStepUpFailed, http.StatusBadRequest, "step_up_failed", "the identity provider did not reach the requested level or freshness of authentication", false},
	{errLoginFailed, http.StatusBadRequest, "login_failed", "sign-in did not complete; start again", false},
	{errInvalidLoginParam, http.StatusBadRequest, "invalid_request", "a login parameter is not acceptable", false},
	{errInvalidSID, http.StatusBadRequest, "invalid_sid", "the logout request does not carry this session's sid", false},
	{errProviderNotReady, http.StatusServiceUnavailable, "provider_unavailable", "the identity provider is not reachable yet", true},
	{ErrProviderUnavailable, http.StatusServiceUnavailable, "provider_unavailable", "the identity provider did not answer", true},
	{session.ErrUnavailable, http.StatusServiceUnavailable, "session_store_unavailable", "the session store is unavailable", true},
	{errLogoutRequest, http.StatusBadRequest, "invalid_request", "the back-channel logout request is malformed", false},
	{errInvalidLogoutToken, http.StatusBadRequest, "invalid_request", "the logout token is not valid", false},
	{errReplayedJTI, http.StatusBadRequest, "invalid_request", "the logout token was used before", false},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "request_too_large", "the request body is too large", false},
	{errMethod, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed here", false},
	{errNoRoute, http.StatusNotFound, "not_found", "no such endpoint", false},
}

// serverError answers anything the table does not know: fail closed.
var serverError = denial{status: http.StatusInternalServerError, code: "server_error", description: "internal error"}

// denialFor finds err's answer.
func denialFor(err error) denial {
	for _, d := range denials {
		if errors.Is(err, d.err) {
			return d
		}
	}
	return serverError
}
