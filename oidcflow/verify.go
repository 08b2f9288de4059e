package oidcflow

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// maxIDTokenLen bounds an ID token before any parsing (T40).
const maxIDTokenLen = 16 << 10

// idTokenLeeway is how far in the future an ID token's iat may lie: the
// clock skew tolerated between envoy-bff and the provider, as go-oidc
// tolerates for nbf. A token issued later than that comes from a clock that
// is wrong, and its exp cannot be trusted either (T41, T62).
const idTokenLeeway = 5 * time.Minute

// errIDToken is every reason an ID token is refused.
var errIDToken = errors.New("id token rejected")

// verifiedID is an ID token that passed every check.
type verifiedID struct {
	token  *oidc.IDToken
	claims json.RawMessage // the whole claim set, served by /user
	sid    string          // the provider's session ID claim, "" if none
	// acr and authTime (Unix seconds) are the token's claims of how and
	// when the user authenticated; "" and 0 when absent.
	acr      string
	authTime int64
}

// idExtra is what go-oidc's IDToken does not expose.
type idExtra struct {
	AuthorizedParty string          `json:"azp"`
	SID             string          `json:"sid"`
	ACR             json.RawMessage `json:"acr"`
	AuthTime        json.RawMessage `json:"auth_time"`
}

// authClaims reads acr (a string) and auth_time (a JSON number of seconds);
// any other form counts as absent.
func (e idExtra) authClaims() (acr string, authTime int64) {
	var s string
	if json.Unmarshal(e.ACR, &s) == nil {
		acr = s
	}
	var f float64
	if json.Unmarshal(e.AuthTime, &f) == nil && f > 0 && f < 1e11 {
		authTime = int64(f)
	}
	return acr, authTime
}

// idCheck says what a verification expects beyond signature, issuer,
// audience and expiry (go-oidc's checks).
type idCheck struct {
	clientID string
	// nonce, when checkNonce, must equal the token's nonce (login). A
	// refreshed ID token is not checked against a nonce.
	nonce      string
	checkNonce bool
	// accessToken, if the token has at_hash, must match it.
	accessToken string
	// now is envoy-bff's clock, for the iat check.
	now time.Time
}

// verifyIDToken runs go-oidc's verifier (signature by the provider's JWKS,
// exact issuer, audience containing client_id, expiry), then compares the
// nonce in constant time and checks azp: if present it must be client_id,
// and a token for several audiences must carry it. A refusal wraps
// errIDToken; a key set that could not be fetched wraps
// ErrProviderUnavailable and errKeysUnavailable instead.
func verifyIDToken(ctx context.Context, v *oidc.IDTokenVerifier, raw string, c idCheck) (*verifiedID, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: none in the token response", errIDToken)
	}
	if len(raw) > maxIDTokenLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errIDToken, maxIDTokenLen)
	}
	ctx, keyErr := withKeyErrors(ctx)
	tok, err := v.Verify(ctx, raw)
	var expired *oidc.TokenExpiredError
	switch {
	case err != nil && keyErr.err != nil:
		// The provider's key set could not be fetched: its failure, not the token's.
		return nil, fmt.Errorf("%w: verify id token: %w", ErrProviderUnavailable, keyErr.err)
	case errors.As(err, &expired):
		// Just issued and already expired: the provider's clock is behind ours.
		return nil, fmt.Errorf("%w: expired %s before our clock's now; if the provider just issued it, its clock and ours differ by more than its lifetime: %w",
			errIDToken, c.now.Sub(expired.Expiry).Round(time.Second), err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errIDToken, err)
	}
	if ahead := tok.IssuedAt.Sub(c.now); ahead > idTokenLeeway {
		return nil, fmt.Errorf("%w: issued %s after our clock's now, beyond the %s leeway: the provider's clock and ours differ",
			errIDToken, ahead.Round(time.Second), idTokenLeeway)
	}
	if c.checkNonce && (c.nonce == "" || subtle.ConstantTimeCompare([]byte(tok.Nonce), []byte(c.nonce)) != 1) {
		return nil, fmt.Errorf("%w: nonce missing or wrong", errIDToken)
	}
	var extra idExtra
	if err := tok.Claims(&extra); err != nil {
		return nil, fmt.Errorf("%w: read claims: %w", errIDToken, err)
	}
	if extra.AuthorizedParty != "" && extra.AuthorizedParty != c.clientID {
		return nil, fmt.Errorf("%w: azp is not this client", errIDToken)
	}
	if len(tok.Audience) > 1 && extra.AuthorizedParty == "" {
		return nil, fmt.Errorf("%w: several audiences and no azp", errIDToken)
	}
	if !slices.Contains(tok.Audience, c.clientID) {
		return nil, fmt.Errorf("%w: audience lacks this client", errIDToken) // go-oidc checked; belt and braces
	}
	if tok.AccessTokenHash != "" && c.accessToken != "" {
		if err := tok.VerifyAccessToken(c.accessToken); err != nil {
			return nil, fmt.Errorf("%w: at_hash does not match the access token", errIDToken)
		}
	}
	var claims json.RawMessage
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: read claims: %w", errIDToken, err)
	}
	acr, authTime := extra.authClaims()
	return &verifiedID{token: tok, claims: claims, sid: extra.SID, acr: acr, authTime: authTime}, nil
}
