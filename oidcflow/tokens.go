package oidcflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Token profile types: what a route naming the profile sends upstream.
const (
	// ProfileSession sends the session's own access token (the default).
	ProfileSession = "session"
	// ProfileExchange sends a token obtained by OAuth 2.0 Token Exchange
	// (RFC 8693) with the session's access token as the subject token.
	ProfileExchange = "exchange"
	// ProfileClient sends a client-credentials token, as the client
	// policies do.
	ProfileClient = "client"
	// ProfileRefresh sends a token obtained with the session's refresh
	// token and a `resource` (RFC 8707) or `scope`, for providers that issue
	// per-API tokens that way.
	ProfileRefresh = "refresh"
)

// Token exchange parameters (RFC 8693).
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
)

// TokenProfile is one API's token: the `tokens:` section maps profile
// names to these.
type TokenProfile struct {
	// Type is session, exchange or client.
	Type string `yaml:"type"`
	// Audience is sent as `audience` (exchange, client): the API's name at
	// the provider; the token's aud.
	Audience string `yaml:"audience"`
	// Resource is sent as `resource` (RFC 8707): the API's absolute URI.
	Resource string `yaml:"resource"`
	// Scopes are requested for the token: only what the API needs.
	Scopes []string `yaml:"scopes"`
}

// TokenProfiles are a frontend's token profiles by name.
type TokenProfiles map[string]TokenProfile

// Validate reports every bad profile, each as "<name>.<field>: <problem>".
// A client profile needs client authentication, like client tokens.
func (p TokenProfiles) Validate(cfg Config) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(p)) {
		tp := p[name]
		field := fmt.Sprintf("%q", name)
		if !session.ValidClientTokenName(name) {
			errs = append(errs, fmt.Errorf("%s: name must be 1-64 characters of a-z, 0-9, _ and -", field))
		}
		if _, clash := cfg.ClientTokens[name]; clash && tp.Type == ProfileClient {
			errs = append(errs, fmt.Errorf("%s: oidc.client_tokens defines %s too; define it once", field, name))
		}
		switch tp.Type {
		case ProfileSession:
			if tp.Audience != "" || tp.Resource != "" || len(tp.Scopes) > 0 {
				errs = append(errs, fmt.Errorf("%s: a session profile sends the session's own token: no audience, resource or scopes", field))
			}
		case ProfileExchange, ProfileClient:
			if cfg.ClientAuth == ClientAuthNone {
				errs = append(errs, fmt.Errorf("%s.type: %s needs client authentication (client_auth: none cannot use it)", field, tp.Type))
			}
			if tp.Type == ProfileExchange && tp.Audience == "" && tp.Resource == "" {
				errs = append(errs, fmt.Errorf("%s: an exchange names the API: set audience or resource", field))
			}
		case ProfileRefresh:
			if tp.Audience != "" {
				errs = append(errs, fmt.Errorf("%s.audience: a refresh profile names the API by resource (RFC 8707) or scopes", field))
			}
			if tp.Resource == "" && len(tp.Scopes) == 0 {
				errs = append(errs, fmt.Errorf("%s: a refresh profile names the API: set resource or scopes", field))
			}
		default:
			errs = append(errs, fmt.Errorf("%s.type: must be session, exchange, refresh or client, got %q", field, tp.Type))
		}
		if strings.ContainsFunc(tp.Audience, isCtl) {
			errs = append(errs, fmt.Errorf("%s.audience: must not contain control characters", field))
		}
		if tp.Resource != "" {
			if u, err := url.Parse(tp.Resource); err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsFunc(tp.Resource, isCtlOrSpace) {
				errs = append(errs, fmt.Errorf("%s.resource: must be an absolute URI without a fragment (RFC 8707)", field))
			}
		}
		for i, sc := range tp.Scopes {
			if !validScope(sc) {
				errs = append(errs, fmt.Errorf("%s.scopes[%d]: must be a non-empty scope token without spaces, quotes or backslashes", field, i))
			}
		}
	}
	return errors.Join(errs...)
}

// ClientTokenConfigs are the client profiles as client tokens, to merge
// into Config.ClientTokens: a client profile is served by ClientTokens.
func (p TokenProfiles) ClientTokenConfigs() map[string]ClientTokenConfig {
	out := map[string]ClientTokenConfig{}
	for name, tp := range p {
		if tp.Type == ProfileClient {
			out[name] = ClientTokenConfig{Scopes: tp.Scopes, Audience: tp.Audience, Resource: tp.Resource}
		}
	}
	return out
}

// ErrExchangeRefused means the provider refused to issue a profile's token
// (invalid_grant, invalid_target, invalid_scope, unauthorized_client…): a
// configuration or permission problem. The session is kept; the route is
// refused, and never served with another token instead (T74).
var ErrExchangeRefused = errors.New("the provider refused the token exchange")

// ErrUnknownProfile means a route names a token profile the config does not define.
var ErrUnknownProfile = errors.New("no such token profile configured")

// DerivedStore is what DerivedTokens needs of the session store.
type DerivedStore interface {
	LockStore
	// Get re-reads the session under its lock (a refresh profile needs its latest refresh token).
	Get(ctx context.Context, id session.ID) (*sessionpb.Session, error)
	// Update stores a rotated refresh token, fenced by generation.
	Update(ctx context.Context, id session.ID, s *sessionpb.Session, prevGeneration uint64) error
	// GetDerivedToken returns the session's cached token for profile; session.ErrNotFound when absent or expired.
	GetDerivedToken(ctx context.Context, id session.ID, profile string) (*sessionpb.ClientToken, error)
	// PutDerivedToken caches t for the session and profile until t expires.
	PutDerivedToken(ctx context.Context, id session.ID, profile string, t *sessionpb.ClientToken) error
}

// DerivedTokens obtains the token an exchange or refresh profile sends, per session:
// cached in the store beside the session (sealed, dropped with it), shared
// by every replica, renewed ahead of expiry under the lock protocol of the
// session's own refresh, so the provider sees one exchange per expiry per
// session and profile. It is safe for concurrent use.
type DerivedTokens struct {
	cfg      Config
	profiles TokenProfiles
	provider *Provider
	store    DerivedStore
	locks    lockRunner
	logger   *slog.Logger
	metrics  *Metrics
	now      func() time.Time
	flights  flightGroup[derivedKey, *sessionpb.ClientToken]
}

// derivedKey names one session's token for one profile, for flights.
type derivedKey struct {
	id      session.ID
	profile string
}

// NewDerivedTokens builds the exchange profiles' token source over
// deps.Store and deps.Provider (both required).
func NewDerivedTokens(cfg Config, profiles TokenProfiles, deps Deps) (*DerivedTokens, error) {
	if err := profiles.Validate(cfg); err != nil {
		return nil, fmt.Errorf("oidcflow token profiles: %w", err)
	}
	store, ok := deps.Store.(DerivedStore)
	if deps.Store == nil || !ok || deps.Provider == nil {
		return nil, errors.New("oidcflow token profiles: deps.Store (with derived tokens) and deps.Provider: required")
	}
	deps, err := deps.common()
	if err != nil {
		return nil, fmt.Errorf("oidcflow token profiles: %w", err)
	}
	return &DerivedTokens{
		cfg:      cfg,
		profiles: profiles,
		provider: deps.Provider,
		store:    store,
		locks:    lockRunner{store: store, metrics: deps.Metrics, logger: deps.Logger},
		logger:   deps.Logger,
		metrics:  deps.Metrics,
		now:      deps.Now,
	}, nil
}

// Type is the type of profile name; false when no such profile exists.
func (d *DerivedTokens) Type(name string) (string, bool) {
	if d == nil {
		return "", false
	}
	p, ok := d.profiles[name]
	return p.Type, ok
}

// Due reports whether cached, a profile's token from the store, must be
// renewed before it is sent (nil is due).
func (d *DerivedTokens) Due(cached *sessionpb.ClientToken) bool {
	return cached == nil || d.due(cached, d.now())
}

// Token returns the access token exchange profile name sends for the
// session id, whose record (with a valid access token) is sess. cached is
// the profile's token read with the session, or nil. While a token is
// valid, a failed renewal returns it; once none is, the error wraps
// ErrExchangeRefused, ErrProviderUnavailable, a store error or ctx's.
func (d *DerivedTokens) Token(ctx context.Context, id session.ID, sess *sessionpb.Session, name string, cached *sessionpb.ClientToken) (string, error) {
	p, ok := d.profiles[name]
	if !ok || (p.Type != ProfileExchange && p.Type != ProfileRefresh) {
		return "", fmt.Errorf("token profile %q: %w", name, ErrUnknownProfile)
	}
	if cached != nil && !d.due(cached, d.now()) {
		return cached.GetAccessToken(), nil
	}
	f := d.flights.do(ctx, derivedKey{id: id, profile: name}, 3*d.cfg.ProviderTimeout, func(ctx context.Context) (*sessionpb.ClientToken, error) {
		return d.fetch(ctx, id, sess, name, p, cached)
	})
	var err error
	select {
	case <-f.done:
		err = f.err
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil && f.val != nil {
		return f.val.GetAccessToken(), nil
	}
	if err == nil {
		err = errors.New("no token obtained")
	}
	if d.valid(cached, d.now()) && !errors.Is(err, ErrExchangeRefused) {
		d.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: token exchange failed; the current token is still valid",
			slog.String("token_profile", name), slog.Any("error", err))
		return cached.GetAccessToken(), nil
	}
	return "", fmt.Errorf("token profile %q: %w", name, err)
}

// fetch renews the session's token for the profile under the lock.
func (d *DerivedTokens) fetch(ctx context.Context, id session.ID, sess *sessionpb.Session, name string, p TokenProfile, seen *sessionpb.ClientToken) (*sessionpb.ClientToken, error) {
	read := func(ctx context.Context) (*sessionpb.ClientToken, error) {
		t, err := d.store.GetDerivedToken(ctx, id, name)
		switch {
		case errors.Is(err, session.ErrNotFound):
			return nil, nil
		case err != nil:
			d.metrics.outcome(kindExchange, outcomeStoreError)
			return nil, fmt.Errorf("read cached %s token: %w", name, err)
		}
		return t, nil
	}
	// A refresh profile spends the session's refresh token, which a
	// provider may rotate: it shares the session's own refresh lock, so no
	// two grants ever present the same refresh token.
	kind, key := kindExchange, session.DerivedTokenLock(id, name)
	if p.Type == ProfileRefresh {
		kind, key = kindResource, session.SessionLock(id)
	}
	return runLocked(ctx, d.locks, seen, renewal[*sessionpb.ClientToken]{
		kind: kind,
		key:  key,
		read: read,
		due:  func(t *sessionpb.ClientToken) bool { return t == nil || d.due(t, d.now()) },
		passable: func(t *sessionpb.ClientToken) bool {
			return d.valid(t, d.now()) && passableAt(d.now(), d.cfg.RefreshLeadTime, t.GetIssuedAtUnixMs(), t.GetExpiresAtUnixMs())
		},
		renew: func(ctx context.Context, _ *sessionpb.ClientToken, _ *session.Lease) (*sessionpb.ClientToken, error) {
			if p.Type == ProfileRefresh {
				return d.refreshFor(ctx, id, name, p)
			}
			return d.exchange(ctx, id, sess, name, p)
		},
	})
}

// exchange runs one RFC 8693 exchange and stores its token beside the session.
func (d *DerivedTokens) exchange(ctx context.Context, id session.ID, sess *sessionpb.Session, name string, p TokenProfile) (*sessionpb.ClientToken, error) {
	disc, err := d.provider.get()
	if err != nil {
		d.metrics.outcome(kindExchange, outcomeUnavailable)
		return nil, fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
	}
	params := withTarget(url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {sess.GetAccessToken()},
		"subject_token_type":   {tokenTypeAccess},
		"requested_token_type": {tokenTypeAccess},
	}, p.Audience, p.Resource)
	t, err := requestToken(ctx, d.provider, disc, d.cfg, p.Scopes, params, d.now, d.metrics, kindExchange)
	if err != nil {
		return nil, d.grantFailed(ctx, kindExchange, "token exchange", name, id, err)
	}
	if err := d.store.PutDerivedToken(ctx, id, name, t); err != nil {
		// This replica can still use it; the others exchange their own.
		d.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: exchanged token could not be shared through the store",
			slog.String("token_profile", name), slog.String("session", idTag(id)), slog.Any("error", err))
	}
	d.metrics.outcome(kindExchange, outcomeRefreshed)
	return t, nil
}

// refreshFor runs one refresh grant with the profile's resource and scope
// under the session's lock: the access token goes to the profile, and a
// rotated refresh token into the session (fenced by generation), so the
// session's own refresh goes on with the live one.
func (d *DerivedTokens) refreshFor(ctx context.Context, id session.ID, name string, p TokenProfile) (*sessionpb.ClientToken, error) {
	disc, err := d.provider.get()
	if err != nil {
		d.metrics.outcome(kindResource, outcomeUnavailable)
		return nil, fmt.Errorf("%w: %w", ErrProviderUnavailable, err)
	}
	cur, err := d.store.Get(ctx, id)
	if err != nil {
		d.metrics.outcome(kindResource, outcomeStoreError)
		return nil, fmt.Errorf("re-read session for the %s token: %w", name, err)
	}
	if cur.GetRefreshToken() == "" {
		d.metrics.outcome(kindResource, outcomeRejected)
		return nil, fmt.Errorf("%w: the session has no refresh token", ErrExchangeRefused)
	}
	params := withTarget(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cur.GetRefreshToken()}}, "", p.Resource)
	t, rotated, err := requestTokenWithRefresh(ctx, d.provider, disc, d.cfg, p.Scopes, params, d.now, d.metrics, kindResource)
	if err != nil {
		return nil, d.grantFailed(ctx, kindResource, "refresh with resource", name, id, err)
	}
	if rotated != "" && rotated != cur.GetRefreshToken() {
		next := proto.CloneOf(cur)
		next.RefreshToken = rotated
		if err := d.store.Update(ctx, id, next, cur.GetGeneration()); err != nil {
			// The provider has rotated the token; if it cannot be kept the
			// session's next refresh will be refused, as after a lost write.
			d.metrics.outcome(kindResource, outcomeStoreError)
			d.logger.LogAttrs(ctx, slog.LevelError, "oidcflow: the rotated refresh token of a token profile's grant could not be saved",
				slog.String("token_profile", name), slog.String("session", idTag(id)), slog.Any("error", err))
			return nil, fmt.Errorf("save rotated refresh token: %w", err)
		}
	}
	if err := d.store.PutDerivedToken(ctx, id, name, t); err != nil {
		d.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: profile token could not be shared through the store",
			slog.String("token_profile", name), slog.String("session", idTag(id)), slog.Any("error", err))
	}
	d.metrics.outcome(kindResource, outcomeRefreshed)
	return t, nil
}

// grantFailed classifies a profile grant's error: the provider saying no
// (nothing transient, nothing to retry, and the session itself not at
// fault) is ErrExchangeRefused, logged at error; anything else is
// transient. Either is counted under kind.
func (d *DerivedTokens) grantFailed(ctx context.Context, kind, op, name string, id session.ID, err error) error {
	err = classifyTokenError(op, err)
	if errors.Is(err, errGrantRejected) || errors.Is(err, ErrClientRejected) {
		d.metrics.outcome(kind, outcomeRejected)
		d.logger.LogAttrs(ctx, slog.LevelError, "oidcflow: "+op+" refused by the provider",
			slog.String("token_profile", name), slog.String("session", idTag(id)), slog.Any("error", err))
		return fmt.Errorf("%w: %w", ErrExchangeRefused, err)
	}
	d.metrics.outcome(kind, outcomeUnavailable)
	return err
}

// due reports whether t should be renewed at now.
func (d *DerivedTokens) due(t *sessionpb.ClientToken, now time.Time) bool {
	return t.GetAccessToken() == "" || dueAt(now, d.cfg.RefreshLeadTime, t.GetIssuedAtUnixMs(), t.GetExpiresAtUnixMs())
}

// valid reports whether t may still be sent at now.
func (d *DerivedTokens) valid(t *sessionpb.ClientToken, now time.Time) bool {
	return t.GetAccessToken() != "" && now.UnixMilli() < t.GetExpiresAtUnixMs()
}
