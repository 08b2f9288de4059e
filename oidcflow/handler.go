package oidcflow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// Revoker revokes a session's refresh token at the provider (RFC 7009).
// Logout calls it before deleting the record; a failure is logged and the
// record is deleted all the same (T9).
type Revoker interface {
	// Revoke revokes s's refresh token (and with it, at most providers, its grant).
	Revoke(ctx context.Context, s *sessionpb.Session) error
}

// Deps are the Handler's and Refresher's collaborators, injected so tests
// control the clock, randomness, store and network.
type Deps struct {
	// Store keeps sessions and pending logins. Required.
	Store session.Store
	// Cookie names and shapes the session cookie. Required.
	Cookie session.CookieConfig
	// Antiforgery is the header /user requires. Required.
	Antiforgery AntiforgeryConfig
	// Logger receives one line per denial and per provider problem; nil
	// discards. Lines about a request carry its request_id (x-request-id).
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand is the source of session IDs, state, nonce and PKCE verifiers;
	// nil means crypto/rand.Reader.
	Rand io.Reader
	// HTTPClient talks to the provider; nil builds one with the configured
	// ProviderTimeout. Its transport is wrapped to bound response sizes.
	HTTPClient *http.Client
	// WrapTransport, if set, wraps the provider client's base transport
	// (see WithTransportWrapper): for tracing.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// AbsoluteLifetime ends a session this long after login however busy
	// (session.Config.AbsoluteLifetime). Required.
	AbsoluteLifetime time.Duration
	// IdleTimeout ends a session unused this long (session.Config.IdleTimeout);
	// <prefix>session reports it. Required by NewHandler.
	IdleTimeout time.Duration
	// Revoker revokes refresh tokens when sessions end; nil means the
	// provider's RFC 7009 endpoint when Config.RevokeTokens is set.
	Revoker Revoker
	// Metrics records refreshes and lock waits; nil records nothing.
	Metrics *Metrics
	// Provider is the discovered provider; nil makes NewHandler build one
	// from the config and HTTPClient. NewRefresher requires it.
	Provider *Provider
	// Frontend names the app these serve (empty means "default"): every log
	// line carries it as the attribute frontend, and Metrics are bound to it.
	Frontend string
	// AllowedOrigins are the other origins whose pages may call the browser
	// endpoints with credentials (CORS): the frontend's authz.allowed_origins.
	AllowedOrigins Origins
	// Home is the frontend's app path prefix ("/" or "/seg/…/"; empty means
	// "/"): where a login without returnUrl, a logout without a post-logout
	// URL, and the error page's link send the browser.
	Home string
}

// LoginCookieName is the login-transaction cookie of the session cookie
// named sessionCookie: it binds a pending login to the browser that started
// it (T25), and frontends with their own session cookies get their own.
func LoginCookieName(sessionCookie string) string { return sessionCookie + "-login" }

// Handler serves the browser endpoints under the configured prefix:
// login, callback, user, session and logout. It is safe for concurrent use; all it
// needs per request is built by NewHandler and by provider discovery.
type Handler struct {
	cfg         Config
	provider    *Provider
	refresher   *Refresher
	store       session.Store
	cookie      session.CookieConfig
	antiforgery AntiforgeryConfig
	logger      *slog.Logger
	now         func() time.Time
	rand        io.Reader
	lifetime    time.Duration
	idle        time.Duration
	revoker     Revoker
	metrics     *Metrics
	home        string
	loginCookie string // LoginCookieName(cookie.Name)

	sessions *Sessions
	origins  Origins // Deps.AllowedOrigins, for CORS

	loginPath, callbackPath, userPath, sessionPath, logoutPath, backchannelPath string
}

var _ http.Handler = (*Handler)(nil)

// NewHandler validates cfg and deps and builds the handler, its provider
// (unless deps.Provider is given) and the Refresher sharing it. Call Start
// to run discovery.
func NewHandler(cfg Config, deps Deps) (*Handler, error) {
	deps, err := deps.withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	var errs []error
	if deps.Cookie.Name == "" {
		errs = append(errs, errors.New("deps.Cookie.Name: required"))
	}
	if deps.Antiforgery.Header == "" || deps.Antiforgery.Value == "" {
		errs = append(errs, errors.New("deps.Antiforgery: header and value required"))
	}
	if deps.AbsoluteLifetime <= 0 {
		errs = append(errs, errors.New("deps.AbsoluteLifetime: must be positive"))
	}
	if deps.IdleTimeout <= 0 {
		errs = append(errs, errors.New("deps.IdleTimeout: must be positive"))
	}
	if !validRoutePrefix(deps.Home) {
		errs = append(errs, fmt.Errorf(`deps.Home: must start and end with "/" (such as / or /admin/), got %q`, deps.Home))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("oidcflow handler: %w", errors.Join(errs...))
	}
	ref := newRefresher(cfg, deps)
	return &Handler{
		cfg:          cfg,
		provider:     deps.Provider,
		refresher:    ref,
		store:        deps.Store,
		cookie:       deps.Cookie,
		antiforgery:  deps.Antiforgery,
		logger:       deps.Logger,
		now:          deps.Now,
		rand:         deps.Rand,
		lifetime:     deps.AbsoluteLifetime,
		idle:         deps.IdleTimeout,
		revoker:      deps.Revoker,
		metrics:      deps.Metrics,
		home:         deps.Home,
		loginCookie:  LoginCookieName(deps.Cookie.Name),
		origins:      deps.AllowedOrigins,
		loginPath:    cfg.PathPrefix + "/login",
		callbackPath: cfg.PathPrefix + "/callback",
		userPath:     cfg.PathPrefix + "/user",
		sessionPath:  cfg.PathPrefix + "/session",
		logoutPath:   cfg.PathPrefix + "/logout",
		sessions: &Sessions{frontend: deps.Frontend, issuer: cfg.Issuer, store: deps.Store, revoker: deps.Revoker,
			logger: deps.Logger, metrics: deps.Metrics},

		backchannelPath: cfg.PathPrefix + "/backchannel-logout",
	}, nil
}

// withDefaults validates cfg, fills the optional deps and builds the
// provider if none was given.
func (d Deps) withDefaults(cfg Config) (Deps, error) {
	if err := cfg.Validate(); err != nil {
		return Deps{}, fmt.Errorf("oidcflow: %w", err)
	}
	if d.Store == nil {
		return Deps{}, errors.New("oidcflow: deps.Store: required")
	}
	d, err := d.common()
	if err != nil {
		return Deps{}, err
	}
	if d.Home == "" {
		d.Home = "/"
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.Provider == nil {
		p, err := NewProvider(cfg, d.HTTPClient, d.Logger, d.Now, WithTransportWrapper(d.WrapTransport))
		if err != nil {
			return Deps{}, err
		}
		d.Provider = p
	}
	if d.Revoker == nil && cfg.RevokeTokens {
		d.Revoker = &providerRevoker{cfg: cfg, provider: d.Provider}
	}
	return d, nil
}

// common fills what every constructor needs: the frontend's name, a
// logger and metrics bound to it, and the clock.
func (d Deps) common() (Deps, error) {
	if d.Frontend == "" {
		d.Frontend = defaultFrontend
	}
	if !ValidFrontendName(d.Frontend) {
		return Deps{}, fmt.Errorf("oidcflow: deps.Frontend: must be 1-32 characters of a-z, 0-9 and -, got %q", d.Frontend)
	}
	d.Logger = frontendLogger(d.Logger, d.Frontend)
	d.Metrics = d.Metrics.Frontend(d.Frontend)
	if d.Now == nil {
		d.Now = time.Now
	}
	return d, nil
}

// Start runs provider discovery until it succeeds or ctx ends (see Provider.Start).
func (h *Handler) Start(ctx context.Context) error { return h.provider.Start(ctx) }

// Ready reports whether the provider has been discovered, for /readyz.
func (h *Handler) Ready() bool { return h.provider.Ready() }

// Refresher is the token refresher sharing this handler's provider and store.
func (h *Handler) Refresher() *Refresher { return h.refresher }

// Sessions ends and lists sessions as logout does (for administration).
func (h *Handler) Sessions() *Sessions { return h.sessions }

// Provider is the discovered (or pending) provider the handler uses.
func (h *Handler) Provider() *Provider { return h.provider }

// ServeHTTP routes the endpoints; everything is GET (or HEAD) but
// session's POST and the provider's back-channel logout POST.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = withRequestID(w, r, h.rand)
	w, done := h.cors(w, r)
	if done {
		return // a listed origin's preflight, answered
	}
	var serve func(http.ResponseWriter, *http.Request) error
	page := true // navigations get a page on failure, fetches JSON
	switch r.URL.Path {
	case h.loginPath:
		serve = h.login
	case h.callbackPath:
		serve = h.callback
	case h.userPath:
		serve, page = h.user, false
	case h.logoutPath:
		serve = h.logout
	case h.sessionPath:
		// GET reports, POST extends: its own method rules, JSON errors.
		if err := h.sessionStatus(w, r); err != nil {
			h.deny(w, r, err, false)
		}
		return
	case h.backchannelPath:
		// The provider's server-to-server POST: its own method rules, JSON errors.
		if err := h.backchannelLogout(w, r); err != nil {
			h.deny(w, r, err, false)
		}
		return
	default:
		h.deny(w, r, errNoRoute, false)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.deny(w, r, errMethod, false)
		return
	}
	err := serve(w, r)
	if r.URL.Path == h.callbackPath {
		outcome := loginOK
		switch {
		case errors.Is(err, errSilentLoginAnswered):
			h.metrics.login(loginSilentRequired)
			return // answered with the redirect back to the app
		case err != nil:
			outcome = denialFor(err).code
		}
		h.metrics.login(outcome)
	}
	if err != nil {
		h.deny(w, r, err, page)
	}
}
