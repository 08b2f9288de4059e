package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Refresher renews a session's access token at the provider's token
// endpoint. Concurrent calls for one session inside this process share one
// attempt; the attempt takes the cross-replica lock (if a RefreshLocker is
// set), re-reads the record, refreshes only if it is still due, and writes
// only if the record's generation is unchanged. With refresh-token rotation
// the provider thus sees one refresh per expiry. It is safe for concurrent
// use and satisfies authz.TokenRefresher.
type Refresher struct {
	cfg      Config
	provider *Provider
	store    session.Store
	locker   RefreshLocker
	revoker  Revoker
	logger   *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	flights map[session.ID]*flight
}

// flight is one shared refresh attempt; rec and err are set before done closes.
type flight struct {
	done chan struct{}
	rec  *sessionpb.Session
	err  error
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
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Refresher{
		cfg:      cfg,
		provider: deps.Provider,
		store:    deps.Store,
		locker:   deps.RefreshLocker,
		revoker:  deps.Revoker,
		logger:   deps.Logger,
		now:      deps.Now,
		flights:  map[session.ID]*flight{},
	}, nil
}

// Refresh returns s itself while its access token is not yet due (within
// RefreshLeadTime of expiry, capped at half the token's lifetime), else a
// record with fresh tokens, or the record another attempt already
// refreshed. Errors: ErrRefreshRejected (session deleted), an error wrapping
// session.ErrNotFound (the session went away meanwhile), or, only when s's
// access token has expired, ErrProviderUnavailable, ErrClientRejected or a
// store error: while the token is still valid those failures return s and
// nil. Each caller waits no longer than its own ctx; the shared attempt
// runs on to its own deadline, so a rotated refresh token is never lost to
// an impatient caller.
func (r *Refresher) Refresh(ctx context.Context, id session.ID, s *sessionpb.Session) (*sessionpb.Session, error) {
	if s == nil {
		return nil, errors.New("refresh: nil session record")
	}
	if !r.due(s, r.now()) {
		return s, nil
	}
	f := r.join(ctx, id)
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("refresh session %s: %w", idTag(id), ctx.Err())
	}
	switch {
	case f.err == nil:
		return proto.CloneOf(f.rec), nil
	case errors.Is(f.err, ErrRefreshRejected), errors.Is(f.err, session.ErrNotFound):
		return nil, f.err
	case stillValid(s, r.now()):
		r.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: refresh failed; the current access token is still valid",
			slog.String("session", idTag(id)), slog.Any("error", f.err))
		return s, nil
	default:
		return nil, f.err
	}
}

// join returns the attempt in flight for id, starting one if there is none.
func (r *Refresher) join(ctx context.Context, id session.ID) *flight {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.flights[id]; ok {
		return f
	}
	f := &flight{done: make(chan struct{})}
	r.flights[id] = f
	// Detached from the first caller's cancellation, bounded by its own deadline:
	// lock wait, one provider call, two store round trips.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*r.cfg.ProviderTimeout)
	go func() {
		defer cancel()
		f.rec, f.err = r.attempt(fctx, id)
		r.mu.Lock()
		delete(r.flights, id)
		r.mu.Unlock()
		close(f.done)
	}()
	return f
}

// attempt is one refresh: lock, re-read, re-check, refresh, compare-and-set.
func (r *Refresher) attempt(ctx context.Context, id session.ID) (*sessionpb.Session, error) {
	tag := idTag(id)
	if r.locker != nil {
		unlock, err := r.locker.Lock(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("lock refresh of session %s: %w", tag, err)
		}
		defer unlock()
	}
	// Another attempt, here or on another replica, may have refreshed
	// already; refreshing again with a rotated-away token would be reuse.
	cur, err := r.store.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("re-read session %s: %w", tag, err)
	}
	if !r.due(cur, r.now()) {
		return cur, nil
	}
	if cur.GetRefreshToken() == "" {
		return nil, r.reject(ctx, id, errors.New("session has no refresh token"))
	}
	d, err := r.provider.get()
	if err != nil {
		return nil, fmt.Errorf("refresh session %s: %w: %w", tag, ErrProviderUnavailable, err)
	}
	next, err := r.redeem(ctx, d, cur)
	switch {
	case errors.Is(err, errGrantRejected), errors.Is(err, errIDToken):
		return nil, r.reject(ctx, id, err)
	case err != nil:
		r.logger.LogAttrs(ctx, alertLevel(err), "oidcflow: refresh failed", slog.String("session", tag), slog.Any("error", err))
		return nil, fmt.Errorf("refresh session %s: %w", tag, err)
	}
	err = r.store.Update(ctx, id, next, cur.GetGeneration())
	switch {
	case err == nil:
		return next, nil
	case errors.Is(err, session.ErrConflict):
		// Someone wrote first; theirs is the record to use.
		stored, gerr := r.store.Get(ctx, id)
		if gerr != nil {
			return nil, fmt.Errorf("re-read session %s after a conflicting write: %w", tag, gerr)
		}
		return stored, nil
	case errors.Is(err, session.ErrNotFound):
		// Logged out meanwhile: it stays deleted, and the new tokens die too.
		r.revokeOrphan(ctx, tag, next)
		return nil, fmt.Errorf("save refreshed session %s: %w", tag, err)
	default:
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
	tok, err := d.oauth2.TokenSource(pctx, &oauth2.Token{RefreshToken: cur.GetRefreshToken()}).Token()
	if err != nil {
		return nil, classifyTokenError("refresh token", err)
	}
	next := proto.CloneOf(cur)
	next.AccessToken = tok.AccessToken
	next.AccessTokenExpiresAtUnixMs = tokenExpiry(r.now(), tok)
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
		id, err := verifyIDToken(pctx, d.verifier, raw, idCheck{clientID: r.cfg.ClientID, accessToken: tok.AccessToken})
		if err != nil {
			return nil, fmt.Errorf("refreshed id token: %w", err)
		}
		if id.token.Issuer != cur.GetIssuer() || id.token.Subject != cur.GetSubject() {
			return nil, fmt.Errorf("%w: refreshed id token names another issuer or subject", errIDToken)
		}
		next.IdToken = raw
		next.ClaimsJson = id.claims
	}
	return next, nil
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

// alertLevel logs a rejected client (a configuration problem) as an error.
func alertLevel(err error) slog.Level {
	if errors.Is(err, ErrClientRejected) {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// due reports whether s's access token should be renewed at now.
func (r *Refresher) due(s *sessionpb.Session, now time.Time) bool {
	if s.GetAccessToken() == "" {
		return true
	}
	exp := s.GetAccessTokenExpiresAtUnixMs()
	if exp == 0 {
		return false // the provider gave no lifetime: nothing to renew ahead of
	}
	return now.UnixMilli() >= exp-refreshLead(r.cfg.RefreshLeadTime, s.GetAccessToken()).Milliseconds()
}

// stillValid reports whether s's access token may still be sent at now.
func stillValid(s *sessionpb.Session, now time.Time) bool {
	exp := s.GetAccessTokenExpiresAtUnixMs()
	return s.GetAccessToken() != "" && (exp == 0 || now.UnixMilli() < exp)
}
