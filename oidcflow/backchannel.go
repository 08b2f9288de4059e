package oidcflow

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"time"
)

// maxLogoutBody bounds a back-channel logout request body (T36).
const maxLogoutBody = 16 << 10

// Back-channel logout refusals, each mapped to one answer by denials.
var (
	errLogoutRequest = errors.New("malformed back-channel logout request")
	errBodyTooLarge  = errors.New("request body too large")
	errReplayedJTI   = errors.New("logout token already used")
)

// logoutTokenLifetime bounds how long a logout token's jti is remembered:
// its exp, or as long as its iat keeps it acceptable.
const logoutTokenLifetime = 2*time.Minute + time.Minute

// backchannelLogout answers POST <prefix>/backchannel-logout (OpenID Connect
// Back-Channel Logout 1.0). A verified, unused logout token ends every
// session of its sid (or, without one, of its sub): refresh tokens revoked,
// records deleted, so every replica denies them on their next request. A
// bad token is a 400 that changes nothing; a token for sessions already gone
// is a 200.
func (h *Handler) backchannelLogout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	raw, err := logoutTokenFrom(w, r)
	if err != nil {
		return err
	}
	d, err := h.provider.get()
	if err != nil {
		return err
	}
	claims, err := d.logout.verify(ctx, raw)
	if err != nil {
		return err
	}
	ttl := logoutTokenLifetime
	if !claims.Expiry.IsZero() {
		ttl = max(ttl, claims.Expiry.Sub(h.now()))
	}
	first, err := h.store.UseOnce(ctx, "logout-jti\x00"+claims.Issuer+"\x00"+claims.JTI, ttl)
	switch {
	case err != nil:
		return fmt.Errorf("remember logout token: %w", err)
	case !first:
		return fmt.Errorf("%w: jti seen before", errReplayedJTI)
	}
	n, err := h.sessions.EndMatching(ctx, claims.Issuer, claims.Subject, claims.SID)
	if err != nil {
		return fmt.Errorf("back-channel logout: %w", err)
	}
	h.metrics.loggedOut(logoutBackchannel, n)
	h.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: back-channel logout",
		slog.String("sub", claims.Subject), slog.Bool("by_sid", claims.SID != ""), slog.Int("sessions_ended", n))
	noStore(w)
	w.WriteHeader(http.StatusOK)
	return nil
}

// logoutTokenFrom reads the one logout_token of a form-encoded POST body of
// at most 16 KiB; duplicates, other encodings and bigger bodies are refused.
func logoutTokenFrom(w http.ResponseWriter, r *http.Request) (string, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return "", errMethod
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return "", fmt.Errorf("%w: content type must be application/x-www-form-urlencoded", errLogoutRequest)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLogoutBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return "", errBodyTooLarge
	case err != nil:
		return "", fmt.Errorf("%w: read body: %w", errLogoutRequest, err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", fmt.Errorf("%w: body is not a form", errLogoutRequest)
	}
	if v := form["logout_token"]; len(v) != 1 || v[0] == "" {
		return "", fmt.Errorf("%w: want exactly one logout_token", errLogoutRequest)
	}
	return form.Get("logout_token"), nil
}
