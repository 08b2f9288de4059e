package oidcflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Members /user adds to the ID token's claims.
const (
	userLogoutURL = "logoutUrl"
	// userSessionExpiresAt is the session's absolute expiry in Unix seconds,
	// like exp and iat beside it. The idle timeout may end it sooner.
	userSessionExpiresAt = "sessionExpiresAt"
)

// user answers GET <prefix>/user: the signed-in user's ID-token claims plus
// logoutUrl and sessionExpiresAt, as one JSON object. It never holds a token
// or the session ID (T11), and requires the anti-forgery header first, so a
// cross-site page cannot read it nor cause a store lookup.
func (h *Handler) user(w http.ResponseWriter, r *http.Request) error {
	if !h.antiforgery.ValidHTTP(r.Header) {
		return errAntiforgery
	}
	id, rec, err := h.currentSession(r.Context(), r)
	if err != nil {
		h.clearDeadCookie(w, err)
		return err
	}
	body, err := userBody(rec, h.logoutPath)
	if err != nil {
		return fmt.Errorf("render user of session %s: %w", idTag(id), err)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Cookie")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// clearDeadCookie clears the session cookie of a request whose cookie
// names no live session (not of one that sent none), so the browser stops
// sending it.
func (h *Handler) clearDeadCookie(w http.ResponseWriter, err error) {
	if errors.Is(err, errUnauthenticated) && !errors.Is(err, session.ErrNoCookie) {
		w.Header().Add("Set-Cookie", h.cookie.ClearCookie())
	}
}

// currentSession reads the session cookie and the live record behind it,
// renewing its idle timeout. Anonymous, malformed, duplicate, unknown or
// expired: errUnauthenticated (wrapping the reason). Store faults: wrapped
// session.ErrUnavailable.
func (h *Handler) currentSession(ctx context.Context, r *http.Request) (session.ID, *sessionpb.Session, error) {
	id, rec, _, err := h.readSession(ctx, r, func(ctx context.Context, id session.ID) (*sessionpb.Session, time.Time, error) {
		rec, err := h.store.Get(ctx, id)
		return rec, time.Time{}, err
	})
	return id, rec, err
}

// sessionReader reads the live record under id and when its idle timeout
// ends it: Store.Inspect, or a Get that renews it.
type sessionReader func(ctx context.Context, id session.ID) (*sessionpb.Session, time.Time, error)

// readSession is currentSession with read as the store lookup, which also
// reports the session's idle expiry.
func (h *Handler) readSession(ctx context.Context, r *http.Request, read sessionReader) (session.ID, *sessionpb.Session, time.Time, error) {
	id, err := h.cookie.ReadIDFromRequest(r)
	if err != nil {
		return session.ID{}, nil, time.Time{}, fmt.Errorf("%w: %w", errUnauthenticated, err)
	}
	rec, idleEnd, err := read(ctx, id)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return session.ID{}, nil, time.Time{}, fmt.Errorf("%w: %w", errUnauthenticated, err)
	case err != nil:
		return session.ID{}, nil, time.Time{}, fmt.Errorf("read session %s: %w", idTag(id), err)
	case rec == nil:
		return session.ID{}, nil, time.Time{}, fmt.Errorf("read session %s: %w: no record", idTag(id), session.ErrUnavailable)
	}
	if abs := rec.GetAbsoluteExpiresAtUnixMs(); abs != 0 && h.now().UnixMilli() >= abs {
		if err := h.store.Delete(ctx, id); err != nil {
			h.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: delete expired session failed",
				slog.String("session", idTag(id)), slog.Any("error", err))
		}
		return session.ID{}, nil, time.Time{}, fmt.Errorf("%w: session past its absolute lifetime", errUnauthenticated)
	}
	return id, rec, idleEnd, nil
}

// userBody renders the claims object. Numbers keep their exact text.
func userBody(rec *sessionpb.Session, logoutPath string) ([]byte, error) {
	claims := map[string]any{}
	if raw := rec.GetClaimsJson(); len(raw) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&claims); err != nil {
			return nil, fmt.Errorf("decode stored claims: %w", err)
		}
	}
	// acr and auth_time as route requirements see them (a refreshed ID
	// token that omits them keeps the login's).
	if rec.GetAcr() != "" {
		claims["acr"] = rec.GetAcr()
	}
	if rec.GetAuthTimeUnix() != 0 {
		claims["auth_time"] = rec.GetAuthTimeUnix()
	}
	claims[userLogoutURL] = logoutURL(logoutPath, rec.GetSid())
	claims[userSessionExpiresAt] = rec.GetAbsoluteExpiresAtUnixMs() / 1000
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	return append(b, '\n'), nil
}

// logoutURL is the logout link that proves the caller knows the sid.
func logoutURL(logoutPath, sid string) string {
	return logoutPath + "?sid=" + url.QueryEscape(sid)
}
