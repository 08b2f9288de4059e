package oidcflow

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"
)

// maxLeadTokenLen bounds the access tokens whose lifetime refreshLead reads.
const maxLeadTokenLen = 16 << 10

// refreshLead is how long before expiry an access token is renewed: the
// configured lead, but never more than half the token's lifetime, so short
// tokens are not refreshed on every request. The record keeps no issue
// time, so the lifetime is read from a JWT access token's iat and exp; the
// token is not verified, as this only paces refreshes. For an opaque token
// the configured lead applies.
func refreshLead(lead time.Duration, accessToken string) time.Duration {
	if life, ok := jwtLifetime(accessToken); ok && life/2 < lead {
		return life / 2
	}
	return lead
}

// jwtLifetime reads exp − iat from a compact JWS's payload.
func jwtLifetime(tok string) (time.Duration, bool) {
	if len(tok) > maxLeadTokenLen || strings.Count(tok, ".") != 2 {
		return 0, false
	}
	_, rest, _ := strings.Cut(tok, ".")
	payload, _, _ := strings.Cut(rest, ".")
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return 0, false
	}
	var c struct {
		IssuedAt int64 `json:"iat"`
		Expiry   int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil || c.IssuedAt <= 0 || c.Expiry <= c.IssuedAt {
		return 0, false
	}
	return time.Duration(c.Expiry-c.IssuedAt) * time.Second, true
}
