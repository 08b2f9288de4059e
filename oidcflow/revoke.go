package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// errNoRevocationEndpoint means the provider advertises no RFC 7009 endpoint.
var errNoRevocationEndpoint = errors.New("provider has no revocation endpoint")

// providerRevoker revokes refresh tokens at the provider's RFC 7009
// endpoint, authenticating as the client as at the token endpoint.
type providerRevoker struct {
	cfg      Config
	provider *Provider
}

// Revoke implements Revoker. A session without a refresh token needs nothing.
func (p *providerRevoker) Revoke(ctx context.Context, s *sessionpb.Session) error {
	if s.GetRefreshToken() == "" {
		return nil
	}
	d, err := p.provider.get()
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	if d.revocation == "" {
		return errNoRevocationEndpoint
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProviderTimeout)
	defer cancel()
	dpop := len(s.GetDpopKey()) > 0
	if dpop {
		// A DPoP session's tokens are revoked with a proof by its key
		// (Keycloak's FAPI 2.0 DPoP profile refuses them otherwise).
		key, err := ParseDPoPKey(s.GetDpopKey())
		if err != nil {
			return fmt.Errorf("revoke refresh token: session record: %w", err)
		}
		ctx = WithDPoPKey(ctx, key)
	}
	status, err := p.revoke(ctx, d, s.GetRefreshToken(), "refresh_token")
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	if status == http.StatusBadRequest && dpop && s.GetAccessToken() != "" {
		// Keycloak 26's DPoP profile refuses to revoke a confidential
		// client's refresh token, which it does not bind to the key
		// ("DPoP proof and token binding verification failed"); the bound
		// access token it revokes, and the logout's end_session ends the
		// grant. RFC 7009 lets a client revoke either.
		if status, err = p.revoke(ctx, d, s.GetAccessToken(), "access_token"); err != nil {
			return fmt.Errorf("revoke access token of a DPoP session: %w", err)
		}
	}
	if status != http.StatusOK {
		// The body is the provider's and may echo the token: only the status is kept.
		return fmt.Errorf("revoke refresh token: revocation endpoint answered %d", status)
	}
	return nil
}

// revoke posts one RFC 7009 revocation with the client's authentication
// (and a DPoP proof when ctx carries a key) and returns the status.
func (p *providerRevoker) revoke(ctx context.Context, d *discovered, token, hint string) (int, error) {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	// The same client authentication as at the token endpoint.
	req, err := newClientPost(ctx, p.cfg, d, d.revocation, form)
	if err != nil {
		return 0, err
	}
	resp, err := p.provider.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// endRecord ends one session the way every logout does (T9, T66): its
// refresh token is revoked first, and any a racing refresh saved meanwhile
// (revokeLatest, when rv is set), then the record is removed. Revocation
// failures are logged; remove's error is the caller's.
func endRecord(ctx context.Context, rv Revoker, rec *sessionpb.Session, reread func(context.Context) (*sessionpb.Session, error),
	remove func(context.Context) error, logger *slog.Logger, tag slog.Attr) error {
	if rv != nil {
		revokeLatest(ctx, rv, rec, reread, logger, tag)
	}
	return remove(ctx)
}

// maxRevokeRounds bounds how often an ending session's record is read again
// for a refresh token saved while the previous one was being revoked.
const maxRevokeRounds = 3

// revokeLatest revokes rec's refresh token and then, for as long as a
// refresh replaced the record while that call was out, the newer token too:
// the refresher's fenced write succeeds until the record is deleted, so a
// refresh racing a logout would otherwise leave a live refresh token in the
// record the logout deletes next (T66). What is left is a write landing
// between the last read and the delete, one store round trip instead of a
// provider call; a write after the delete is the refresher's to revoke.
// Failures are logged, never fatal (T9).
func revokeLatest(ctx context.Context, rv Revoker, rec *sessionpb.Session, reread func(context.Context) (*sessionpb.Session, error), logger *slog.Logger, tag slog.Attr) {
	for range maxRevokeRounds {
		if err := rv.Revoke(ctx, rec); err != nil {
			logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh token revocation failed; deleting the session anyway", tag, slog.Any("error", err))
		}
		cur, err := reread(ctx)
		if err != nil || cur.GetRefreshToken() == "" || cur.GetRefreshToken() == rec.GetRefreshToken() {
			return
		}
		logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: the session was refreshed while it was ending; revoking the new refresh token too", tag)
		rec = cur
	}
}

// Sessions ends and lists sessions the way logout does, for back-channel
// logout and administration: each session's refresh token is revoked at the
// provider first (a failure is logged, never fatal), then its record is
// deleted, which every replica sees on its next read.
type Sessions struct {
	frontend string
	issuer   string
	store    session.Store
	revoker  Revoker
	logger   *slog.Logger
	metrics  *Metrics
}

// Frontend names the frontend whose sessions these are, as the admin API's
// ?frontend= does.
func (s *Sessions) Frontend() string { return s.frontend }

// SessionInfo is what administration sees of a session: never a token or
// the cookie value.
type SessionInfo struct {
	// Ref names the stored session (a keyed hash; not usable as a cookie).
	Ref string `json:"ref"`
	// Subject is the user.
	Subject string `json:"sub"`
	// SID is the provider session.
	SID string `json:"sid,omitempty"`
	// CreatedAtUnixMs is when the user logged in.
	CreatedAtUnixMs int64 `json:"created_at_unix_ms"`
	// ExpiresAtUnixMs is the session's absolute expiry.
	ExpiresAtUnixMs int64 `json:"expires_at_unix_ms"`
}

// List returns the live sessions of subject at the configured issuer.
func (s *Sessions) List(ctx context.Context, subject string) ([]SessionInfo, error) {
	refs, err := s.store.FindSessions(ctx, s.issuer, subject, "")
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	out := []SessionInfo{}
	for _, ref := range refs {
		rec, err := s.store.GetByRef(ctx, ref)
		if errors.Is(err, session.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		out = append(out, SessionInfo{Ref: string(ref), Subject: rec.GetSubject(), SID: rec.GetSid(),
			CreatedAtUnixMs: rec.GetCreatedAtUnixMs(), ExpiresAtUnixMs: rec.GetAbsoluteExpiresAtUnixMs()})
	}
	return out, nil
}

// EndMatching ends every session of the provider session sid (when set),
// else of subject, at issuer, and reports how many it ended. With both set,
// only sessions of that sid whose subject matches end.
func (s *Sessions) EndMatching(ctx context.Context, issuer, subject, sid string) (int, error) {
	refs, err := s.store.FindSessions(ctx, issuer, subject, sid)
	if err != nil {
		return 0, fmt.Errorf("find sessions: %w", err)
	}
	n := 0
	for _, ref := range refs {
		ended, err := s.end(ctx, ref, subject)
		if err != nil {
			return n, err
		}
		if ended {
			n++
		}
	}
	return n, nil
}

// End revokes the session's refresh token and deletes it; false when it was already gone.
func (s *Sessions) End(ctx context.Context, ref session.Ref) (bool, error) {
	return s.end(ctx, ref, "")
}

// end is End for a session of subject ("" for any).
func (s *Sessions) end(ctx context.Context, ref session.Ref, subject string) (bool, error) {
	rec, err := s.store.GetByRef(ctx, ref)
	if errors.Is(err, session.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("end session: %w", err)
	}
	if subject != "" && rec.GetSubject() != subject {
		return false, nil
	}
	tag := string(ref)
	if len(tag) > 8 {
		tag = tag[:8] // enough to follow in logs, too little to name the key
	}
	if err := endRecord(ctx, s.revoker, rec,
		func(ctx context.Context) (*sessionpb.Session, error) { return s.store.GetByRef(ctx, ref) },
		func(ctx context.Context) error { return s.store.DeleteByRef(ctx, ref) },
		s.logger, slog.String("session_ref", tag)); err != nil {
		return false, fmt.Errorf("end session: %w", err)
	}
	s.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: session ended", slog.String("session_ref", tag), slog.String("sub", rec.GetSubject()))
	return true, nil
}
