package oidcflow

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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

// tokenExpiry is when an access token expires, on the injected clock,
// counted from start, the moment the token was asked for (the provider
// counts its lifetime from a later moment, so this errs early). x/oauth2
// computes Token.Expiry with time.Now, so expires_in is preferred. A JWT
// access token's own exp caps it: providers truncate exp to the second, and
// a resource server checks exp, not expires_in. Zero means nobody said.
func tokenExpiry(start time.Time, tok *oauth2.Token) int64 {
	// x/oauth2's clientcredentials drops ExpiresIn; the raw member remains.
	in := tok.ExpiresIn
	if in <= 0 {
		if f, ok := tok.Extra("expires_in").(float64); ok && f > 0 && f < 1<<31 {
			in = int64(f)
		}
	}
	var exp int64
	switch {
	case in > 0:
		exp = start.Add(time.Duration(in) * time.Second).UnixMilli()
	case !tok.Expiry.IsZero():
		exp = tok.Expiry.UnixMilli()
	}
	if jwt, ok := jwtExpiry(tok.AccessToken); ok && (exp == 0 || jwt < exp) {
		exp = jwt
	}
	return exp
}

// maxJWTExpiryLen bounds the access tokens whose exp claim is read.
const maxJWTExpiryLen = 16 << 10

// jwtExpiry reads the exp claim (in ms) of a compact JWS, unverified: it
// only makes envoy-bff renew earlier, never trust a token more.
func jwtExpiry(tok string) (int64, bool) {
	if len(tok) > maxJWTExpiryLen || strings.Count(tok, ".") != 2 {
		return 0, false
	}
	_, rest, _ := strings.Cut(tok, ".")
	payload, _, _ := strings.Cut(rest, ".")
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return 0, false
	}
	var c struct {
		Expiry json.RawMessage `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || len(c.Expiry) == 0 || len(c.Expiry) > 12 {
		return 0, false
	}
	var sec int64
	for _, d := range c.Expiry { // a plain integer: no string, fraction or exponent
		if d < '0' || d > '9' {
			return 0, false
		}
		sec = sec*10 + int64(d-'0')
	}
	if sec <= 0 {
		return 0, false
	}
	return sec * 1000, true
}

// tokenString reads a string member of the token response (id_token, scope).
func tokenString(tok *oauth2.Token, key string) string {
	s, _ := tok.Extra(key).(string)
	return s
}
