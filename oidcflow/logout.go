package oidcflow

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// logout answers GET <prefix>/logout?sid=…. The sid must be this session's
// (compared in constant time), so a cross-site link cannot log anyone out
// (T16). On a match it revokes the refresh token if a Revoker is set, and
// any refresh token a racing refresh saved meanwhile (T66; a
// failure is logged, never fatal: T9), deletes the session, clears the
// cookie and sends the browser to the provider's end_session_endpoint. An
// anonymous caller is simply sent home.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	d, err := h.provider.get()
	if err != nil {
		return err
	}
	id, rec, err := h.currentSession(ctx, r)
	if errors.Is(err, errUnauthenticated) {
		if !errors.Is(err, session.ErrNoCookie) {
			w.Header().Add("Set-Cookie", h.cookie.ClearCookie())
		}
		redirect(w, h.afterLogout())
		return nil
	}
	if err != nil {
		return err
	}
	sids := r.URL.Query()["sid"]
	if len(sids) != 1 || rec.GetSid() == "" || subtle.ConstantTimeCompare([]byte(sids[0]), []byte(rec.GetSid())) != 1 {
		return fmt.Errorf("%w: session %s", errInvalidSID, idTag(id))
	}
	if err := endRecord(ctx, h.revoker, rec,
		func(ctx context.Context) (*sessionpb.Session, error) { return h.store.Get(ctx, id) },
		func(ctx context.Context) error { return h.store.Delete(ctx, id) },
		h.logger, slog.String("session", idTag(id))); err != nil {
		// Keep the cookie: the user can retry, and no one is told they are out while the record lives.
		return fmt.Errorf("delete session %s: %w", idTag(id), err)
	}
	h.metrics.loggedOut(logoutUser, 1)
	h.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: logout", slog.String("session", idTag(id)))
	w.Header().Add("Set-Cookie", h.cookie.ClearCookie())
	if d.endSession == "" {
		redirect(w, h.afterLogout())
		return nil
	}
	redirect(w, h.endSessionURL(d.endSession, rec.GetIdToken()))
	return nil
}

// afterLogout is where a browser goes when the provider is not involved.
func (h *Handler) afterLogout() string {
	if h.cfg.PostLogoutRedirectURL != "" {
		return h.cfg.PostLogoutRedirectURL
	}
	return h.home
}

// endSessionURL is the RP-initiated logout request. The ID token travels as
// id_token_hint: the one token the protocol hands the browser, and one that
// is no bearer credential for any API.
func (h *Handler) endSessionURL(endpoint, idToken string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return h.afterLogout()
	}
	q := u.Query()
	if idToken != "" {
		q.Set("id_token_hint", idToken)
	}
	if h.cfg.PostLogoutRedirectURL != "" {
		q.Set("post_logout_redirect_uri", h.cfg.PostLogoutRedirectURL)
	}
	q.Set("client_id", h.cfg.ClientID)
	u.RawQuery = q.Encode()
	return u.String()
}
