package oidcflow

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// errGrantRejected means the token endpoint answered invalid_grant: the
// code or refresh token is dead (used, expired, revoked, PKCE mismatch).
var errGrantRejected = errors.New("token endpoint rejected the grant")

// classifyTokenError turns a token-endpoint failure into errGrantRejected,
// ErrClientRejected or ErrProviderUnavailable. The result names the status
// and the RFC 6749 error code only: x/oauth2's own error quotes the response
// body, which must not reach a log.
func classifyTokenError(op string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		// Network failure, timeout, oversized or unparsable answer; none of
		// these errors quotes a body.
		return fmt.Errorf("%s: %w: %w", op, ErrProviderUnavailable, err)
	}
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	code := safeCode(re.ErrorCode)
	switch {
	case re.ErrorCode == "invalid_grant":
		return fmt.Errorf("%s: %w: status %d, error %s", op, errGrantRejected, status, code)
	case status >= 500, status == http.StatusTooManyRequests, status == 0,
		re.ErrorCode == "temporarily_unavailable", re.ErrorCode == "server_error":
		return fmt.Errorf("%s: %w: status %d, error %s", op, ErrProviderUnavailable, status, code)
	case status >= 400 || re.ErrorCode != "":
		return fmt.Errorf("%s: %w: status %d, error %s", op, ErrClientRejected, status, code)
	default:
		return fmt.Errorf("%s: %w: status %d", op, ErrProviderUnavailable, status)
	}
}

// safeCode keeps an RFC 6749 error code fit for a log line: a short word of
// lower-case letters, digits and underscores, or "other".
func safeCode(s string) string {
	if s == "" {
		return "none"
	}
	if len(s) > 40 {
		return "other"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return "other"
		}
	}
	return s
}

// tokenExpiry is when an access token expires, on the injected clock:
// x/oauth2 computes Token.Expiry with time.Now, so expires_in is preferred.
// Zero means the provider did not say.
func tokenExpiry(now time.Time, tok *oauth2.Token) int64 {
	// x/oauth2's clientcredentials drops ExpiresIn; the raw member remains.
	in := tok.ExpiresIn
	if in <= 0 {
		if f, ok := tok.Extra("expires_in").(float64); ok && f > 0 && f < 1<<31 {
			in = int64(f)
		}
	}
	switch {
	case in > 0:
		return now.Add(time.Duration(in) * time.Second).UnixMilli()
	case !tok.Expiry.IsZero():
		return tok.Expiry.UnixMilli()
	default:
		return 0
	}
}

// tokenString reads a string member of the token response (id_token, scope).
func tokenString(tok *oauth2.Token, key string) string {
	s, _ := tok.Extra(key).(string)
	return s
}
