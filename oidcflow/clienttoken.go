package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2/clientcredentials"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// ErrUnknownClientToken means a route asked for a client token the config does not define.
var ErrUnknownClientToken = errors.New("no such client token configured")

// defaultClientTokenLifetime paces renewal of a token whose response gave no
// expires_in: without a lifetime it could never be renewed ahead of expiry.
const defaultClientTokenLifetime = time.Minute

// ClientTokens hands out client-credentials access tokens for the client and
// user_or_client policies. Each configured token is cached in the session
// store, shared by every replica, and renewed under the same lock scheme as
// sessions: one token-endpoint call per expiry cluster-wide. A copy is kept
// in memory until it is due, so most checks make no store call for it. It is
// safe for concurrent use and satisfies authz.ClientTokenSource.
type ClientTokens struct {
	cfg      Config
	provider *Provider
	store    session.Store
	locks    lockRunner
	logger   *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	flights  flightGroup[string, *sessionpb.ClientToken]

	mu   sync.RWMutex
	memo map[string]*sessionpb.ClientToken
}

// NewClientTokens builds the client-token source over deps.Store and
// deps.Provider (both required).
func NewClientTokens(cfg Config, deps Deps) (*ClientTokens, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidcflow client tokens: %w", err)
	}
	if deps.Store == nil || deps.Provider == nil {
		return nil, errors.New("oidcflow client tokens: deps.Store and deps.Provider: required")
	}
	deps, err := deps.common()
	if err != nil {
		return nil, fmt.Errorf("oidcflow client tokens: %w", err)
	}
	return &ClientTokens{
		cfg:      cfg,
		provider: deps.Provider,
		store:    deps.Store,
		locks:    lockRunner{store: deps.Store, metrics: deps.Metrics, logger: deps.Logger},
		logger:   deps.Logger,
		metrics:  deps.Metrics,
		now:      deps.Now,
		memo:     map[string]*sessionpb.ClientToken{},
	}, nil
}

// Token returns a usable access token for the client token name. While a
// token is valid, a failed renewal returns it; once none is, the error wraps
// ErrProviderUnavailable, ErrClientRejected, a store error or ctx's error.
func (c *ClientTokens) Token(ctx context.Context, name string) (string, error) {
	if _, ok := c.cfg.ClientTokens[name]; !ok {
		return "", fmt.Errorf("client token %q: %w", name, ErrUnknownClientToken)
	}
	c.mu.RLock()
	cur := c.memo[name]
	c.mu.RUnlock()
	now := c.now()
	if cur != nil && !c.due(cur, now) {
		return cur.GetAccessToken(), nil
	}
	f := c.flights.do(ctx, name, 3*c.cfg.ProviderTimeout, func(ctx context.Context) (*sessionpb.ClientToken, error) {
		return c.fetch(ctx, name, cur)
	})
	var err error
	select {
	case <-f.done:
		err = f.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil && f.val != nil {
		c.mu.Lock()
		if old := c.memo[name]; old == nil || old.GetExpiresAtUnixMs() <= f.val.GetExpiresAtUnixMs() {
			c.memo[name] = f.val
		}
		c.mu.Unlock()
		return f.val.GetAccessToken(), nil
	}
	if err == nil {
		err = errors.New("no token obtained")
	}
	if c.valid(cur, c.now()) {
		c.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: client token renewal failed; the current token is still valid",
			slog.String("client_token", name), slog.Any("error", err))
		return cur.GetAccessToken(), nil
	}
	return "", fmt.Errorf("client token %q: %w", name, err)
}

// fetch reads the shared token and renews it under the lock if it is due.
func (c *ClientTokens) fetch(ctx context.Context, name string, seen *sessionpb.ClientToken) (*sessionpb.ClientToken, error) {
	read := func(ctx context.Context) (*sessionpb.ClientToken, error) {
		t, err := c.store.GetClientToken(ctx, name)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return nil, nil // nothing cached: due, not valid
		case err != nil:
			c.metrics.outcome(kindClient, outcomeStoreError)
			return nil, fmt.Errorf("read cached client token: %w", err)
		}
		return t, nil
	}
	stored, err := read(ctx)
	if err != nil {
		return nil, err
	}
	if stored != nil && !c.due(stored, c.now()) {
		return stored, nil
	}
	if stored != nil {
		seen = stored
	}
	return runLocked(ctx, c.locks, seen, renewal[*sessionpb.ClientToken]{
		kind: kindClient,
		key:  session.ClientTokenLock(name),
		read: read,
		due:  func(t *sessionpb.ClientToken) bool { return c.due(t, c.now()) },
		passable: func(t *sessionpb.ClientToken) bool {
			return c.valid(t, c.now()) && passableAt(c.now(), c.cfg.RefreshLeadTime, t.GetIssuedAtUnixMs(), t.GetExpiresAtUnixMs())
		},
		renew: func(ctx context.Context, _ *sessionpb.ClientToken, _ *session.Lease) (*sessionpb.ClientToken, error) {
			return c.grant(ctx, name)
		},
	})
}

// grant runs one client_credentials grant and shares the token through the store.
func (c *ClientTokens) grant(ctx context.Context, name string) (*sessionpb.ClientToken, error) {
	d, err := c.provider.get()
	if err != nil {
		c.metrics.outcome(kindClient, outcomeUnavailable)
		return nil, fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
	}
	set := c.cfg.ClientTokens[name]
	t, err := requestToken(ctx, c.provider, d, c.cfg, set.Scopes, withTarget(url.Values{}, set.Audience, set.Resource), c.now, c.metrics, kindClient)
	if err != nil {
		err = classifyTokenError("client credentials", err)
		if errors.Is(err, errGrantRejected) || errors.Is(err, ErrClientRejected) {
			// Nothing of a user's ends here: a refused client is a configuration problem.
			c.metrics.outcome(kindClient, outcomeClientRejected)
			c.logger.LogAttrs(ctx, slog.LevelError, "oidcflow: client credentials grant refused",
				slog.String("client_token", name), slog.Any("error", err))
			return nil, fmt.Errorf("%w: %w", ErrClientRejected, err)
		}
		c.metrics.outcome(kindClient, outcomeUnavailable)
		return nil, err
	}
	if err := c.store.PutClientToken(ctx, name, t); err != nil {
		// This replica can still use it; the others fetch their own.
		c.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: client token could not be shared through the store",
			slog.String("client_token", name), slog.Any("error", err))
	}
	c.metrics.outcome(kindClient, outcomeRefreshed)
	return t, nil
}

// withTarget adds the API a token is for: `audience` (RFC 8693, and what
// Auth0, Okta and others read for client credentials) and RFC 8707's
// `resource`, each when set.
func withTarget(params url.Values, audience, resource string) url.Values {
	if audience != "" {
		params.Set("audience", audience)
	}
	if resource != "" {
		params.Set("resource", resource)
	}
	return params
}

// requestToken makes one token request authenticated as the client, with
// params (grant_type defaults to client_credentials) and scopes, and
// returns the token as it is cached. x/oauth2's client-credentials request
// serves every grant here: grant_type may be overridden, and the answer is
// read, bounded and classified like every other token response. Its
// errors are x/oauth2's, for classifyTokenError.
func requestToken(ctx context.Context, p *Provider, d *discovered, cfg Config, scopes []string, params url.Values, now func() time.Time, m *Metrics, kind string) (*sessionpb.ClientToken, error) {
	t, _, err := requestTokenWithRefresh(ctx, p, d, cfg, scopes, params, now, m, kind)
	return t, err
}

// requestTokenWithRefresh is requestToken that also returns the answer's
// refresh_token ("" when none): a refresh grant's rotated one.
func requestTokenWithRefresh(ctx context.Context, p *Provider, d *discovered, cfg Config, scopes []string, params url.Values, now func() time.Time, m *Metrics, kind string) (*sessionpb.ClientToken, string, error) {
	cc := clientcredentials.Config{
		ClientID:       cfg.ClientID,
		ClientSecret:   cfg.ClientSecret,
		TokenURL:       d.oauth2.Endpoint.TokenURL,
		Scopes:         scopes,
		EndpointParams: params,
		AuthStyle:      d.oauth2.Endpoint.AuthStyle,
	}
	pctx, cancel := context.WithTimeout(p.clientContext(ctx), cfg.ProviderTimeout)
	defer cancel()
	start, began := now(), time.Now()
	tok, err := cc.Token(pctx)
	m.granted(kind, time.Since(began))
	if err != nil {
		return nil, "", err
	}
	exp := tokenExpiry(start, tok)
	if exp == 0 {
		exp = start.Add(defaultClientTokenLifetime).UnixMilli()
	}
	t := &sessionpb.ClientToken{
		SchemaVersion:   1,
		AccessToken:     tok.AccessToken,
		TokenType:       tok.TokenType,
		Scope:           tokenString(tok, "scope"),
		ExpiresAtUnixMs: exp,
		IssuedAtUnixMs:  start.UnixMilli(),
	}
	if t.Scope == "" {
		t.Scope = strings.Join(scopes, " ")
	}
	return t, tok.RefreshToken, nil
}

// due reports whether t should be renewed at now (a missing token is due).
func (c *ClientTokens) due(t *sessionpb.ClientToken, now time.Time) bool {
	return t.GetAccessToken() == "" || dueAt(now, c.cfg.RefreshLeadTime, t.GetIssuedAtUnixMs(), t.GetExpiresAtUnixMs())
}

// valid reports whether t may still be sent at now.
func (c *ClientTokens) valid(t *sessionpb.ClientToken, now time.Time) bool {
	return t.GetAccessToken() != "" && now.UnixMilli() < t.GetExpiresAtUnixMs()
}
