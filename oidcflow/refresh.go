package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Refresher renews a session's access token at the provider's token
// endpoint, once per expiry across every replica. Concurrent calls for one
// session inside this process share one attempt; the attempt takes the
// session's refresh lock in the store, re-reads the record under it,
// refreshes only if it is still due, and writes only if the record's
// generation is unchanged (fencing). The lock renews itself while the
// provider call is in flight, so a slow provider never lets a second refresh
// in. It is safe for concurrent use and satisfies authz.TokenRefresher.
type Refresher struct {
	cfg      Config
	provider *Provider
	store    session.Store
	locks    lockRunner
	revoker  Revoker
	logger   *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	flights  flightGroup[session.ID, *sessionpb.Session]
}

// NewRefresher builds a Refresher over deps.Store and deps.Provider (both
// required). Sessions whose refresh the provider rejects are deleted here,
// before ErrRefreshRejected is returned.
func NewRefresher(cfg Config, deps Deps) (*Refresher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidcflow refresher: %w", err)
	}
	if deps.Store == nil || deps.Provider == nil {
		return nil, errors.New("oidcflow refresher: deps.Store and deps.Provider: required")
	}
	deps, err := deps.common()
	if err != nil {
		return nil, fmt.Errorf("oidcflow refresher: %w", err)
	}
	return newRefresher(cfg, deps), nil
}

// newRefresher is NewRefresher for deps already checked and filled (common).
func newRefresher(cfg Config, deps Deps) *Refresher {
	return &Refresher{
		cfg:      cfg,
		provider: deps.Provider,
		store:    deps.Store,
		locks:    lockRunner{store: deps.Store, metrics: deps.Metrics, logger: deps.Logger},
		revoker:  deps.Revoker,
		logger:   deps.Logger,
		metrics:  deps.Metrics,
		now:      deps.Now,
	}
}

// Refresh returns s itself while its access token is not yet due (within
// RefreshLeadTime of expiry, capped at half the token's lifetime), else a
// record with fresh tokens, or the record another replica already
// refreshed. Errors: ErrRefreshRejected (session deleted), an error wrapping
// session.ErrNotFound (the session went away meanwhile), or, only when s's
// access token has expired, ErrProviderUnavailable, ErrClientRejected, a
// store error or ctx's error: while the token is still valid those failures
// return s and nil. Each caller waits no longer than its own ctx; the shared
// attempt runs on to its own deadline.
func (r *Refresher) Refresh(ctx context.Context, id session.ID, s *sessionpb.Session) (*sessionpb.Session, error) {
	if s == nil {
		return nil, errors.New("refresh: nil session record")
	}
	if !r.due(s, r.now()) {
		return s, nil
	}
	// Lock wait, one provider call (two with UserInfo), and the store
	// round trips around it.
	budget := 3 * r.cfg.ProviderTimeout
	if r.cfg.UserinfoClaims {
		budget += r.cfg.ProviderTimeout
	}
	f := r.flights.do(ctx, id, budget, func(ctx context.Context) (*sessionpb.Session, error) {
		return r.attempt(ctx, id, s)
	})
	var err error
	select {
	case <-f.done:
		err = f.err
		if err == nil && !stillValid(f.val, r.now()) {
			// The attempt (a hung store or provider) outlived the token it
			// brought back, or a caller joined it late: an expired token is
			// never handed on. The next request renews it again.
			err = fmt.Errorf("refresh session %s: %w", idTag(id), errRefreshOutlived)
		}
	case <-ctx.Done():
		err = fmt.Errorf("refresh session %s: %w", idTag(id), ctx.Err())
	}
	switch {
	case err == nil:
		return proto.CloneOf(f.val), nil
	case errors.Is(err, ErrRefreshRejected), errors.Is(err, session.ErrNotFound):
		return nil, err
	case stillValid(s, r.now()):
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh failed; the current access token is still valid",
			slog.String("session", idTag(id)), slog.Any("error", err))
		return s, nil
	default:
		return nil, err
	}
}

// Due reports whether Refresh would renew s now rather than return it as
// it is: the access token is within the lead time of its expiry.
func (r *Refresher) Due(s *sessionpb.Session) bool { return s == nil || r.due(s, r.now()) }

// attempt is one cluster-wide refresh of session id, seen being the record
// the first caller read.
func (r *Refresher) attempt(ctx context.Context, id session.ID, seen *sessionpb.Session) (*sessionpb.Session, error) {
	tag := idTag(id)
	return runLocked(ctx, r.locks, seen, renewal[*sessionpb.Session]{
		kind: kindSession,
		key:  session.SessionLock(id),
		read: func(ctx context.Context) (*sessionpb.Session, error) {
			s, err := r.store.Get(ctx, id)
			if err != nil {
				if !errors.Is(err, session.ErrNotFound) {
					r.metrics.outcome(kindSession, outcomeStoreError)
				}
				return nil, fmt.Errorf("re-read session %s: %w", tag, err)
			}
			return s, nil
		},
		due: func(s *sessionpb.Session) bool { return r.due(s, r.now()) },
		passable: func(s *sessionpb.Session) bool {
			return passableAt(r.now(), r.cfg.RefreshLeadTime, s.GetAccessTokenIssuedAtUnixMs(), s.GetAccessTokenExpiresAtUnixMs()) && s.GetAccessToken() != ""
		},
		renew: func(ctx context.Context, cur *sessionpb.Session, lease *session.Lease) (*sessionpb.Session, error) {
			return r.renew(ctx, id, cur, lease)
		},
	})
}

// renew runs under the lock for a record that is still due: one refresh at
// the provider, then a write fenced by the generation read under the lock.
func (r *Refresher) renew(ctx context.Context, id session.ID, cur *sessionpb.Session, lease *session.Lease) (*sessionpb.Session, error) {
	tag := idTag(id)
	if cur.GetRefreshToken() == "" {
		r.metrics.outcome(kindSession, outcomeRejected)
		return nil, r.reject(ctx, id, errors.New("session has no refresh token"))
	}
	d, err := r.provider.get()
	if err != nil {
		r.metrics.outcome(kindSession, outcomeUnavailable)
		return nil, fmt.Errorf("refresh session %s: %w: %w", tag, ErrProviderUnavailable, err)
	}
	start := time.Now()
	next, err := r.redeem(ctx, d, cur)
	r.metrics.granted(kindSession, time.Since(start))
	switch {
	case errors.Is(err, errGrantRejected):
		// A holder whose lock lapsed (paused, partitioned, lock lost in a
		// failover) presents a refresh token that another replica has rotated
		// since: that proves nothing against the session.
		if latest := r.newer(ctx, id, cur); latest != nil {
			r.metrics.outcome(kindSession, outcomeStaleGrant)
			r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh token was rotated by another replica meanwhile; keeping its tokens",
				slog.String("session", tag))
			return latest, nil
		}
		r.metrics.outcome(kindSession, outcomeRejected)
		return nil, r.reject(ctx, id, err)
	case errors.Is(err, errIDToken), errors.Is(err, errDPoPKey), errors.Is(err, errDPoPNotBound):
		r.metrics.outcome(kindSession, outcomeRejected)
		return nil, r.reject(ctx, id, err)
	case errors.Is(err, ErrClientRejected):
		r.metrics.outcome(kindSession, outcomeClientRejected)
		r.logger.LogAttrs(ctx, slog.LevelError, "oidcflow: refresh failed", slog.String("session", tag), slog.Any("error", err))
		return nil, fmt.Errorf("refresh session %s: %w", tag, err)
	case err != nil:
		r.metrics.outcome(kindSession, outcomeUnavailable)
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh failed", slog.String("session", tag), slog.Any("error", err))
		if latest := r.newer(ctx, id, cur); latest != nil {
			return latest, nil // another replica got through while our call hung
		}
		return nil, fmt.Errorf("refresh session %s: %w", tag, err)
	}
	if r.cfg.UserinfoClaims {
		r.refreshClaims(ctx, d, tag, cur, next)
	}
	select {
	case <-lease.Lost():
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh lock lapsed during the provider call; the write is fenced by generation",
			slog.String("session", tag))
	default:
	}
	err = r.store.Update(ctx, id, next, cur.GetGeneration())
	switch {
	case err == nil:
		r.metrics.outcome(kindSession, outcomeRefreshed)
		return next, nil
	case errors.Is(err, session.ErrConflict):
		// A stale holder lost the race: the newer tokens stay, and ours are
		// dropped unstored (revoking them could revoke the grant the newer
		// ones belong to).
		r.metrics.outcome(kindSession, outcomeConflict)
		stored, gerr := r.store.Get(ctx, id)
		if gerr != nil {
			return nil, fmt.Errorf("re-read session %s after a conflicting write: %w", tag, gerr)
		}
		return stored, nil
	case errors.Is(err, session.ErrNotFound):
		// Logged out meanwhile: it stays deleted, and the new tokens die too.
		r.metrics.outcome(kindSession, outcomeSessionGone)
		r.revokeOrphan(ctx, tag, next)
		return nil, fmt.Errorf("save refreshed session %s: %w", tag, err)
	default:
		r.metrics.outcome(kindSession, outcomeStoreError)
		r.logger.LogAttrs(ctx, slog.LevelError, "oidcflow: refreshed tokens could not be saved",
			slog.String("session", tag), slog.Any("error", err))
		return nil, fmt.Errorf("save refreshed session %s: %w", tag, err)
	}
}

// redeem calls the token endpoint once and builds the next record. A
// response without refresh_token keeps the old one (T61); a new ID token
// must verify and name the same issuer and subject (T42).
func (r *Refresher) redeem(ctx context.Context, d *discovered, cur *sessionpb.Session) (*sessionpb.Session, error) {
	pctx, cancel := context.WithTimeout(r.provider.clientContext(ctx), r.cfg.ProviderTimeout)
	defer cancel()
	if len(cur.GetDpopKey()) > 0 {
		key, err := ParseDPoPKey(cur.GetDpopKey())
		if err != nil {
			return nil, fmt.Errorf("session record: %w", err)
		}
		pctx = WithDPoPKey(pctx, key)
	}
	start := r.now()
	tok, err := d.oauth2.TokenSource(pctx, &oauth2.Token{RefreshToken: cur.GetRefreshToken()}).Token()
	if err != nil {
		return nil, classifyTokenError("refresh token", err)
	}
	if len(cur.GetDpopKey()) > 0 && !strings.EqualFold(tok.TokenType, TokenTypeDPoP) {
		return nil, errDPoPNotBound
	}
	next := proto.CloneOf(cur)
	next.AccessToken = tok.AccessToken
	next.AccessTokenExpiresAtUnixMs = tokenExpiry(start, tok)
	next.AccessTokenIssuedAtUnixMs = start.UnixMilli()
	if tok.TokenType != "" {
		next.TokenType = tok.TokenType
	}
	if tok.RefreshToken != "" {
		next.RefreshToken = tok.RefreshToken
	}
	if sc := tokenString(tok, "scope"); sc != "" {
		next.Scope = sc
	}
	if raw := tokenString(tok, "id_token"); raw != "" {
		id, err := verifyIDToken(pctx, d.verifier, raw, idCheck{clientID: r.cfg.ClientID, accessToken: tok.AccessToken, now: r.now()})
		switch {
		case errors.Is(err, errKeysUnavailable):
			// The provider has rotated the refresh token already; dropping its
			// answer would lose the new one and end the session at the next
			// refresh. The answer came from the token endpoint for this
			// session's own grant, so its tokens are kept, and the ID token
			// and claims verified before stay until one can be checked.
			r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refreshed id token not checked: the provider's key set is unavailable; keeping the previous id token",
				slog.Any("error", err))
			return next, nil
		case err != nil:
			return nil, fmt.Errorf("refreshed id token: %w", err)
		}
		if id.token.Issuer != cur.GetIssuer() || id.token.Subject != cur.GetSubject() {
			return nil, fmt.Errorf("%w: refreshed id token names another issuer or subject", errIDToken)
		}
		next.IdToken = raw
		next.ClaimsJson = id.claims
		// A refreshed ID token speaks for the same authentication; where it
		// omits acr or auth_time, the login's stay.
		if id.acr != "" {
			next.Acr = id.acr
		}
		if id.authTime != 0 {
			next.AuthTimeUnix = id.authTime
		}
	}
	return next, nil
}

// newer returns the stored record if another writer has replaced cur since
// it was read, else nil.
func (r *Refresher) newer(ctx context.Context, id session.ID, cur *sessionpb.Session) *sessionpb.Session {
	latest, err := r.store.Get(ctx, id)
	if err != nil || latest.GetGeneration() == cur.GetGeneration() {
		return nil
	}
	return latest
}

// reject deletes a session the provider will not renew and returns
// ErrRefreshRejected wrapping why.
func (r *Refresher) reject(ctx context.Context, id session.ID, why error) error {
	tag := idTag(id)
	if err := r.store.Delete(ctx, id); err != nil {
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: delete rejected session failed", slog.String("session", tag), slog.Any("error", err))
	}
	r.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: refresh rejected; session ended", slog.String("session", tag), slog.Any("error", why))
	return fmt.Errorf("refresh session %s: %w: %w", tag, ErrRefreshRejected, why)
}

// revokeOrphan revokes tokens refreshed for a session deleted meanwhile.
func (r *Refresher) revokeOrphan(ctx context.Context, tag string, rec *sessionpb.Session) {
	if r.revoker == nil {
		return
	}
	if err := r.revoker.Revoke(ctx, rec); err != nil {
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: revoke tokens of a deleted session failed", slog.String("session", tag), slog.Any("error", err))
	}
}

// due reports whether s's access token should be renewed at now: within
// the configured lead of its expiry, the lead being at most half the
// token's lifetime so short-lived tokens are not renewed on every request.
func (r *Refresher) due(s *sessionpb.Session, now time.Time) bool {
	if s.GetAccessToken() == "" {
		return true
	}
	return dueAt(now, r.cfg.RefreshLeadTime, s.GetAccessTokenIssuedAtUnixMs(), s.GetAccessTokenExpiresAtUnixMs())
}

// passableAt reports whether a due token may still be passed on while
// another replica renews it: until half the lead is left. The rest of the
// lead is for the request to reach the API before the token expires; a
// request later than that waits for the new token instead (a slow holder
// on a loaded machine otherwise lets tokens expire in flight).
func passableAt(now time.Time, lead time.Duration, issued, exp int64) bool {
	if exp == 0 {
		return true
	}
	return now.UnixMilli() < exp-effectiveLead(lead, issued, exp)/2
}

// effectiveLead is the configured lead in ms, capped at half the lifetime.
func effectiveLead(lead time.Duration, issued, exp int64) int64 {
	l := lead.Milliseconds()
	if issued > 0 && exp > issued && (exp-issued)/2 < l {
		l = (exp - issued) / 2
	}
	return l
}

// dueAt reports whether a token issued at issued and expiring at exp (unix
// ms; 0 when unknown) is within lead of its expiry at now. A token without
// an expiry is never due.
func dueAt(now time.Time, lead time.Duration, issued, exp int64) bool {
	if exp == 0 {
		return false
	}
	return now.UnixMilli() >= exp-effectiveLead(lead, issued, exp)
}

// stillValid reports whether s's access token may still be sent at now.
func stillValid(s *sessionpb.Session, now time.Time) bool {
	exp := s.GetAccessTokenExpiresAtUnixMs()
	return s.GetAccessToken() != "" && (exp == 0 || now.UnixMilli() < exp)
}
