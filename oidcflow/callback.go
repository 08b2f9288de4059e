package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// maxCallbackParam bounds state, code, iss and error; longer values are
// refused before any store lookup (T27).
const maxCallbackParam = 2048

// callbackParams are the parameters the callback reads; each must appear at most once.
var callbackParams = [...]string{"state", "code", "iss", "error"}

// callback answers GET <prefix>/callback: it checks the provider's answer,
// consumes the pending login (once), checks the browser binding, exchanges
// the code with the PKCE verifier, verifies the ID token, and starts a new
// session under a new ID. Any returnUrl or redirect parameter here is
// ignored: the destination is the one stored at /login (T22).
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	d, err := h.provider.get()
	if err != nil {
		return err
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return fmt.Errorf("%w: query does not parse", errInvalidCallback)
	}
	for _, k := range callbackParams {
		if len(q[k]) > 1 {
			return fmt.Errorf("%w: %s given more than once", errInvalidCallback, k)
		}
		if len(q.Get(k)) > maxCallbackParam {
			return fmt.Errorf("%w: %s longer than %d bytes", errInvalidCallback, k, maxCallbackParam)
		}
	}
	state, code := q.Get("state"), q.Get("code")
	if q.Has("error") {
		// The provider refused: a fixed answer, its description never
		// reflected (T28); the pending login is dropped.
		if state != "" {
			ls, err := h.store.TakeLoginState(ctx, state, h.loginSecret(r))
			switch {
			case err == nil:
				w.Header().Add("Set-Cookie", h.clearLoginCookie())
				if ls.GetPrompt() == "none" && needsUser(q.Get("error")) {
					// A silent login the provider cannot finish without the
					// user: back to the app, which falls back to an
					// interactive login. Only this browser's own pending
					// login gets here.
					redirect(w, withMarker(h.returnURL(ls)))
					return errSilentLoginAnswered
				}
			case !errors.Is(err, session.ErrNotFound):
				h.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: drop pending login failed", slog.Any("error", err))
			}
		}
		return fmt.Errorf("%w: provider answered error %s", errLoginFailed, safeCode(q.Get("error")))
	}
	if state == "" || code == "" {
		return fmt.Errorf("%w: state or code missing", errInvalidCallback)
	}
	// RFC 9207: the answer must name the configured issuer exactly, and must
	// name it at all when the provider says it always does (T29).
	if iss, ok := q["iss"]; ok && iss[0] != h.cfg.Issuer {
		return fmt.Errorf("%w: iss is not the configured issuer", errInvalidCallback)
	} else if !ok && d.issParam {
		return fmt.Errorf("%w: iss missing although the provider sends it", errInvalidCallback)
	}

	// One step checks the browser binding and consumes the state (GETDEL
	// of a key only this browser's login cookie names): a callback from
	// another browser, or without the cookie, finds nothing and leaves the
	// pending login to its owner (T25, T71). A cookie of another pending
	// login of this browser is kept.
	ls, err := h.store.TakeLoginState(ctx, state, h.loginSecret(r))
	switch {
	case errors.Is(err, session.ErrNotFound):
		return fmt.Errorf("%w: state unknown, used, expired or not this browser's", errInvalidState)
	case err != nil:
		return fmt.Errorf("take login state: %w", err)
	}
	w.Header().Add("Set-Cookie", h.clearLoginCookie())

	rec, err := h.redeem(ctx, d, code, ls)
	if err != nil {
		return err
	}
	id, err := session.NewID(h.rand) // a new ID at every login (T7)
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	if err := h.store.Create(ctx, id, rec); err != nil {
		if errors.Is(err, session.ErrNotWritten) && h.revoker != nil {
			// No session holds these tokens, and none ever will: revoke
			// them rather than leave a live refresh token behind. After a
			// timeout the session may exist, so they stay.
			if rerr := h.revoker.Revoke(ctx, rec); rerr != nil {
				h.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: revoke the tokens of a login that could not be stored failed", slog.Any("error", rerr))
			}
		}
		return fmt.Errorf("create session: %w", err)
	}
	// Whatever session this browser had before is over (fixation).
	if old, err := h.cookie.ReadIDFromRequest(r); err == nil {
		if err := h.store.Delete(ctx, old); err != nil {
			h.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: delete previous session failed",
				slog.String("session", idTag(old)), slog.Any("error", err))
		}
	}
	h.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: login",
		slog.String("session", idTag(id)), slog.String("sub", rec.GetSubject()), slog.Bool("sid_from_provider", rec.GetSidFromProvider()))
	w.Header().Add("Set-Cookie", h.cookie.SetCookie(id))
	redirect(w, h.returnURL(ls))
	return nil
}

// returnURL is where a finished login sends the browser: its stored
// returnUrl (validated when stored, and again here), else the app's home.
func (h *Handler) returnURL(ls *sessionpb.LoginState) string {
	u, err := ValidateReturnURLFor(ls.GetReturnUrl(), h.origins)
	if err != nil || ls.GetReturnUrl() == "" {
		return h.home
	}
	return u
}

// redeem exchanges the code (once, never retried: T31), verifies the ID
// token (T30) and builds the session record. On any failure the tokens are
// dropped.
func (h *Handler) redeem(ctx context.Context, d *discovered, code string, ls *sessionpb.LoginState) (*sessionpb.Session, error) {
	pctx, cancel := context.WithTimeout(h.provider.clientContext(ctx), h.cfg.ProviderTimeout)
	defer cancel()
	if len(ls.GetDpopKey()) > 0 {
		key, err := ParseDPoPKey(ls.GetDpopKey())
		if err != nil {
			return nil, fmt.Errorf("%w: login state: %w", errLoginFailed, err)
		}
		pctx = WithDPoPKey(pctx, key)
	}
	start := h.now()
	tok, err := d.oauth2.Exchange(pctx, code, oauth2.VerifierOption(ls.GetCodeVerifier()))
	if err != nil {
		err = classifyTokenError("exchange code", err)
		if errors.Is(err, ErrProviderUnavailable) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errLoginFailed, err)
	}
	if len(ls.GetDpopKey()) > 0 && !strings.EqualFold(tok.TokenType, TokenTypeDPoP) {
		// Sent with a proof, answered with a bearer token: the provider did
		// not bind it. Passing it on would quietly drop the sender
		// constraint the frontend asked for.
		return nil, fmt.Errorf("%w: %w", errLoginFailed, errDPoPNotBound)
	}
	id, err := verifyIDToken(pctx, d.verifier, tokenString(tok, "id_token"), idCheck{
		clientID:    h.cfg.ClientID,
		nonce:       ls.GetNonce(),
		checkNonce:  true,
		accessToken: tok.AccessToken,
		now:         h.now(),
	})
	switch {
	case errors.Is(err, ErrProviderUnavailable): // the key set could not be fetched: try again later
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("%w: %w", errLoginFailed, err)
	}
	now := h.now()
	if err := checkAsked(ls, id.acr, id.authTime, now); err != nil {
		return nil, err
	}
	claims, err := h.loginClaims(ctx, d, tok.AccessToken, id)
	if err != nil {
		return nil, err
	}
	rec := &sessionpb.Session{
		Issuer:                     h.cfg.Issuer,
		Subject:                    id.token.Subject,
		Sid:                        id.sid,
		SidFromProvider:            id.sid != "",
		AccessToken:                tok.AccessToken,
		RefreshToken:               tok.RefreshToken,
		IdToken:                    tokenString(tok, "id_token"),
		TokenType:                  tok.TokenType,
		AccessTokenExpiresAtUnixMs: tokenExpiry(start, tok),
		AccessTokenIssuedAtUnixMs:  start.UnixMilli(),
		CreatedAtUnixMs:            now.UnixMilli(),
		AbsoluteExpiresAtUnixMs:    now.Add(h.lifetime).UnixMilli(),
		ClaimsJson:                 claims,
		Scope:                      tokenString(tok, "scope"),
		Acr:                        id.acr,
		AuthTimeUnix:               id.authTime,
		DpopKey:                    ls.GetDpopKey(),
	}
	if rec.Sid == "" {
		// No provider sid: mint one, so logout still needs a per-session proof.
		if rec.Sid, err = randomString(h.rand, "sid"); err != nil {
			return nil, fmt.Errorf("start session: %w", err)
		}
	}
	return rec, nil
}
