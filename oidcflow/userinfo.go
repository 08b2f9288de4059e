package oidcflow

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// UserInfo errors. A provider that cannot be reached or answers 5xx/429
// wraps ErrProviderUnavailable instead of errUserinfo.
var (
	// errNoUserinfoEndpoint keeps the provider not ready: the option asks
	// for something the provider cannot give, and a session without the
	// claims the config promises would pass requirements and headers wrong.
	errNoUserinfoEndpoint = errors.New("oidc.userinfo_claims: true, but the provider's discovery document lists no userinfo_endpoint")
	// errUserinfo is a UserInfo answer that cannot be used: refused,
	// malformed, or about another subject.
	errUserinfo = errors.New("userinfo answer unusable")
)

// protectedClaim reports the ID token's protocol claims: who issued it, for
// whom, about whom, when and how the user authenticated. UserInfo is not
// signed like the ID token and says nothing about the authentication, so it
// never overrides them; logout, acr/auth_time requirements and identity
// headers rely on them.
func protectedClaim(name string) bool {
	switch name {
	case "iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "auth_time", "acr", "amr", "azp", "sid", "at_hash", "c_hash":
		return true
	}
	return false
}

// userInfo asks the UserInfo endpoint about the user of accessToken and
// returns its claims once their sub is subject (OpenID Connect Core
// §5.3.2: otherwise the answer must not be used). The access token goes in
// the Authorization header only and is never part of an error.
func (p *Provider) userInfo(ctx context.Context, d *discovered, accessToken, subject string) (map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProviderTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.userinfo, nil)
	if err != nil {
		return nil, fmt.Errorf("userinfo: build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("userinfo: %w: %w", ErrProviderUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("userinfo: read answer: %w: %w", ErrProviderUnavailable, err)
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return nil, fmt.Errorf("userinfo: %w: answered %d", ErrProviderUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%w: answered %d", errUserinfo, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			return nil, fmt.Errorf("%w: content type %q, want application/json (signed or encrypted UserInfo is not supported)", errUserinfo, mt)
		}
	}
	claims, err := jsonObject(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUserinfo, err)
	}
	var sub string
	if json.Unmarshal(claims["sub"], &sub) != nil || sub != subject {
		return nil, fmt.Errorf("%w: its sub is not the ID token's", errUserinfo)
	}
	return claims, nil
}

// mergeClaims returns the claims object base with extra's claims added or
// updated, the protected ones excepted. Values keep their exact JSON.
func mergeClaims(base json.RawMessage, extra map[string]json.RawMessage) (json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if len(base) > 0 {
		var err error
		if out, err = jsonObject(base); err != nil {
			return nil, fmt.Errorf("merge claims: %w", err)
		}
	}
	for k, v := range extra {
		if !protectedClaim(k) {
			out[k] = v
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("merge claims: %w", err)
	}
	return b, nil
}

// jsonObject decodes a JSON object, refusing null and anything else.
func jsonObject(b []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("not a JSON object: null")
	}
	return m, nil
}

// idTokenClaims is the claim set of an ID token verified when it was
// stored: after a refresh without a new ID token, the base UserInfo is
// merged onto, so a claim UserInfo stops sending goes away.
func idTokenClaims(raw string) (json.RawMessage, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("id token: not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("id token payload: %w", err)
	}
	if _, err := jsonObject(payload); err != nil {
		return nil, fmt.Errorf("id token payload: %w", err)
	}
	return bytes.TrimSpace(payload), nil
}

// loginClaims is what a new session stores as its claims: the verified ID
// token's, merged with UserInfo's when the option is on. A provider that
// cannot answer fails the login as unavailable (503, try again); an answer
// that cannot be used fails it as login_failed.
func (h *Handler) loginClaims(ctx context.Context, d *discovered, accessToken string, id *verifiedID) (json.RawMessage, error) {
	if !h.cfg.UserinfoClaims {
		return id.claims, nil
	}
	ui, err := h.provider.userInfo(ctx, d, accessToken, id.token.Subject)
	switch {
	case errors.Is(err, ErrProviderUnavailable):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errLoginFailed, err)
	}
	claims, err := mergeClaims(id.claims, ui)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errLoginFailed, err)
	}
	return claims, nil
}

// refreshClaims merges fresh UserInfo claims into next, the record a
// refresh grant of cur just built, onto the claims of next's ID token. When
// UserInfo fails or names another subject, the refresh stands and cur's
// claims are kept (protected ones from next's ID token), with a warning.
func (r *Refresher) refreshClaims(ctx context.Context, d *discovered, tag string, cur, next *sessionpb.Session) {
	base, err := idTokenClaims(next.GetIdToken())
	if err != nil {
		base = next.GetClaimsJson()
	}
	ui, err := r.provider.userInfo(ctx, d, next.GetAccessToken(), cur.GetSubject())
	if err != nil {
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: userinfo after refresh failed; keeping the previous claims",
			slog.String("session", tag), slog.Any("error", err))
		if ui, err = jsonObject(cur.GetClaimsJson()); err != nil {
			return // next keeps the claims the grant left it
		}
	}
	merged, err := mergeClaims(base, ui)
	if err != nil {
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: userinfo claims not merged after refresh",
			slog.String("session", tag), slog.Any("error", err))
		return
	}
	next.ClaimsJson = merged
}
