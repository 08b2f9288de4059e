package oidcflow

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// sessionStatusAllow is the Allow header of a 405 from <prefix>session.
const sessionStatusAllow = "GET, HEAD, POST"

// sessionStatusBody is what <prefix>session answers: times only (Unix
// seconds), never a token or the session ID, so a page can warn before
// the session ends.
type sessionStatusBody struct {
	// IdleExpiresAt is when the session ends unless used (or extended)
	// before; never later than AbsoluteExpiresAt.
	IdleExpiresAt int64 `json:"idleExpiresAt"`
	// AbsoluteExpiresAt is when the session ends however busy.
	AbsoluteExpiresAt int64 `json:"absoluteExpiresAt"`
	// AccessTokenExpiresAt is the stored access token's expiry; absent when
	// the provider did not say. The next API call after it refreshes.
	AccessTokenExpiresAt int64 `json:"accessTokenExpiresAt,omitempty"`
	// IdleTimeout is the frontend's idle timeout in seconds: how far each
	// use or extension pushes IdleExpiresAt.
	IdleTimeout int64 `json:"idleTimeout"`
	// Now is envoy-bff's clock, so a page can correct for its own.
	Now int64 `json:"now"`
}

// sessionStatus answers <prefix>session. GET (and HEAD) report the
// session's expiries WITHOUT renewing the idle timeout, so a page polling
// "your session ends in 2 minutes" does not keep an unused session alive;
// POST renews it (the explicit "stay signed in") and reports the same.
// Both require the anti-forgery header before any store read, as /user
// does; a POST without it cannot be sent cross-site without a preflight.
func (h *Handler) sessionStatus(w http.ResponseWriter, r *http.Request) error {
	read := h.store.Inspect
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		read = h.getSliding
	default:
		w.Header().Set("Allow", sessionStatusAllow)
		return errMethod
	}
	if !h.antiforgery.ValidHTTP(r.Header) {
		return errAntiforgery
	}
	id, rec, idleEnd, err := h.readSession(r.Context(), r, read)
	if err != nil {
		h.clearDeadCookie(w, err)
		return err
	}
	body, err := json.Marshal(sessionStatusBody{
		IdleExpiresAt:        idleEnd.Unix(),
		AbsoluteExpiresAt:    rec.GetAbsoluteExpiresAtUnixMs() / 1000,
		AccessTokenExpiresAt: rec.GetAccessTokenExpiresAtUnixMs() / 1000,
		IdleTimeout:          int64(h.idle / time.Second),
		Now:                  h.now().Unix(),
	})
	if err != nil {
		return fmt.Errorf("render status of session %s: %w", idTag(id), err)
	}
	noStore(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Vary", "Cookie")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// getSliding is Get (which renews the idle timeout) with the idle expiry
// that renewal set: now plus the idle timeout, cut short by the absolute
// expiry.
func (h *Handler) getSliding(ctx context.Context, id session.ID) (*sessionpb.Session, time.Time, error) {
	rec, err := h.store.Get(ctx, id)
	if err != nil || rec == nil {
		return rec, time.Time{}, err
	}
	end := h.now().Add(h.idle)
	if abs := time.UnixMilli(rec.GetAbsoluteExpiresAtUnixMs()); abs.Before(end) {
		end = abs
	}
	return rec, end, nil
}
