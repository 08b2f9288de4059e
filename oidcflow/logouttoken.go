package oidcflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// errInvalidLogoutToken wraps every reason a logout token is refused.
var errInvalidLogoutToken = errors.New("invalid logout token")

// Logout-token limits (T34, T40).
const (
	maxLogoutTokenLen = 16 << 10
	logoutMaxAge      = 2 * time.Minute
	logoutSkew        = 30 * time.Second
	backchannelEvent  = "http://schemas.openid.net/event/backchannel-logout"
)

// logoutAlgs are the signature algorithms a logout token may use: never
// none or a MAC keyed with something public.
var logoutAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// logoutClaims is what a verified back-channel logout token says.
type logoutClaims struct {
	Issuer, Subject, SID, JTI string
	IssuedAt, Expiry          time.Time // Expiry zero when the token has no exp
}

// logoutVerifier checks OpenID Connect Back-Channel Logout 1.0 tokens.
type logoutVerifier struct {
	issuer, clientID string
	keys             *jwksCache
	algs             []jose.SignatureAlgorithm
	now              func() time.Time
}

// newLogoutVerifier allows the provider's advertised ID-token algorithms
// that are also asymmetric (RS256 alone when none are).
func newLogoutVerifier(issuer, clientID string, keys *jwksCache, algs []string, now func() time.Time) *logoutVerifier {
	return &logoutVerifier{issuer: issuer, clientID: clientID, keys: keys, algs: allowedAlgs(algs), now: now}
}

// verify returns the token's claims, or an error wrapping
// errInvalidLogoutToken that says why (never the token).
func (v *logoutVerifier) verify(ctx context.Context, raw string) (logoutClaims, error) {
	bad := func(format string, args ...any) (logoutClaims, error) {
		return logoutClaims{}, fmt.Errorf("%w: "+format, append([]any{errInvalidLogoutToken}, args...)...)
	}
	// Cheap shape checks first: JWE (five parts), dot floods, huge tokens (T39, T40).
	if len(raw) > maxLogoutTokenLen || strings.Count(raw, ".") != 2 {
		return bad("not a compact JWS of at most %d bytes", maxLogoutTokenLen)
	}
	jws, err := jose.ParseSignedCompact(raw, v.algs)
	if err != nil {
		return bad("parse: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return bad("want one signature")
	}
	h := jws.Signatures[0].Header
	if h.KeyID == "" {
		return bad("no kid")
	}
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		s, _ := typ.(string)
		if s = strings.ToLower(s); s != "logout+jwt" && s != "application/logout+jwt" {
			return bad("typ is not logout+jwt")
		}
	}
	// jku, x5u and jwk headers are never consulted: only the provider's set (T38).
	key, err := v.keys.key(ctx, h.KeyID)
	if err != nil {
		return bad("key: %v", err)
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return bad("alg does not match the key's")
	}
	payload, err := jws.Verify(key.Key) // also refuses unknown crit headers (T38)
	if err != nil {
		return bad("signature: %v", err)
	}
	return v.checkClaims(payload)
}

// rawLogoutClaims keeps numbers and objects raw so their types are checked
// exactly (T41): a string or fractional exp is refused, not coerced.
type rawLogoutClaims struct {
	Issuer   string          `json:"iss"`
	Audience json.RawMessage `json:"aud"`
	Subject  string          `json:"sub"`
	SID      string          `json:"sid"`
	JTI      string          `json:"jti"`
	IssuedAt json.RawMessage `json:"iat"`
	Expiry   json.RawMessage `json:"exp"`
	Events   json.RawMessage `json:"events"`
	Nonce    json.RawMessage `json:"nonce"`
}

func (v *logoutVerifier) checkClaims(payload []byte) (logoutClaims, error) {
	bad := func(format string, args ...any) (logoutClaims, error) {
		return logoutClaims{}, fmt.Errorf("%w: "+format, append([]any{errInvalidLogoutToken}, args...)...)
	}
	if dup, err := duplicateMember(payload); err != nil || dup != "" {
		return bad("claims are not one JSON object with unique members")
	}
	var c rawLogoutClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return bad("claims: wrong types")
	}
	now := v.now()
	switch {
	case c.Issuer != v.issuer:
		return bad("iss is not the provider")
	case !audienceHas(c.Audience, v.clientID):
		return bad("aud lacks this client")
	case c.JTI == "":
		return bad("no jti")
	case c.Subject == "" && c.SID == "":
		return bad("neither sub nor sid")
	case len(c.Nonce) > 0:
		return bad("a nonce: this is not a logout token")
	case !hasLogoutEvent(c.Events):
		return bad("no back-channel logout event")
	}
	iat, ok := numericDate(c.IssuedAt)
	switch {
	case !ok:
		return bad("iat missing or not an integer date")
	case iat.Before(now.Add(-logoutMaxAge - logoutSkew)):
		return bad("iat too old")
	case iat.After(now.Add(logoutSkew)):
		return bad("iat in the future")
	}
	out := logoutClaims{Issuer: c.Issuer, Subject: c.Subject, SID: c.SID, JTI: c.JTI, IssuedAt: iat}
	if len(c.Expiry) > 0 {
		exp, ok := numericDate(c.Expiry)
		if !ok {
			return bad("exp not an integer date")
		}
		if !now.Before(exp.Add(logoutSkew)) {
			return bad("expired")
		}
		out.Expiry = exp
	}
	return out, nil
}

// numericDate reads a JSON integer of seconds (not a string, fraction or exponent).
func numericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || len(raw) > 12 {
		return time.Time{}, false
	}
	var sec int64
	for _, d := range raw {
		if d < '0' || d > '9' {
			return time.Time{}, false
		}
		sec = sec*10 + int64(d-'0')
	}
	return time.Unix(sec, 0), true
}

// audienceHas reports whether aud (a string or an array of strings) names clientID.
func audienceHas(raw json.RawMessage, clientID string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == clientID
	}
	var many []string
	return json.Unmarshal(raw, &many) == nil && slices.Contains(many, clientID)
}

// hasLogoutEvent reports whether events is an object whose back-channel
// logout member is itself an object.
func hasLogoutEvent(raw json.RawMessage) bool {
	var events map[string]json.RawMessage
	if json.Unmarshal(raw, &events) != nil {
		return false
	}
	ev := bytes.TrimSpace(events[backchannelEvent])
	return len(ev) > 0 && ev[0] == '{'
}

// duplicateMember returns the first member name that appears twice in the
// top-level object of b ("" if none); encoding/json would silently keep the
// last, letting a signer's view and ours differ (T41).
func duplicateMember(b []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return "", errors.New("not an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		name, _ := tok.(string)
		if seen[name] {
			return name, nil
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", err
		}
	}
	return "", nil
}
