package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// SessionReader is what Check needs from the session store: one Get per
// Check, and Delete for a record found past its absolute lifetime.
// session.Store satisfies it. Get must return session.ErrNotFound, and only
// that, when no live session exists.
type SessionReader interface {
	// Get returns the live session under id (renewing its idle timeout).
	Get(ctx context.Context, id session.ID) (*sessionpb.Session, error)
	// Delete removes the session; deleting an absent session is not an error.
	Delete(ctx context.Context, id session.ID) error
}

// SharedSessionReader is a SessionReader that can hand Check the record it
// keeps instead of a copy (the memory store): Check never modifies a
// record, so it asks this when it can.
type SharedSessionReader interface {
	// GetShared is Get, returning a record the caller must not modify.
	GetShared(ctx context.Context, id session.ID) (*sessionpb.Session, error)
}

// SessionPeeker is a SessionReader that can answer from memory without I/O
// (session.Cache): Check asks it first, and arms its store deadline only
// when it must go to the store.
type SessionPeeker interface {
	// Peek returns the session under id when it can without I/O.
	Peek(id session.ID) (*sessionpb.Session, bool)
}

// TokenRefresher renews a session's access token at the provider, under the
// distributed lock (oidcflow.Refresher). It returns the record to use, and
// oidcflow.ErrRefreshRejected when the provider refuses the refresh token or
// oidcflow.ErrProviderUnavailable when it cannot be reached.
type TokenRefresher interface {
	// Refresh returns s with fresh tokens, or the record another request already refreshed.
	Refresh(ctx context.Context, id session.ID, s *sessionpb.Session) (*sessionpb.Session, error)
}

// dueReporter is a TokenRefresher that can say, without a call that might
// block, whether Refresh would do anything for a record (oidcflow.Refresher).
type dueReporter interface {
	// Due reports whether s's access token is due for a refresh now.
	Due(s *sessionpb.Session) bool
}

// ClientTokenSource hands out client-credentials tokens by name
// (oidcflow.ClientTokens): cached, shared by replicas, renewed under a lock.
type ClientTokenSource interface {
	// Token returns a usable access token for the named client token.
	Token(ctx context.Context, name string) (string, error)
}

// TokenProfileSource knows a frontend's token profiles and obtains the
// tokens of exchange profiles per session (oidcflow.DerivedTokens).
type TokenProfileSource interface {
	// Type is the profile's type (oidcflow.ProfileSession, ProfileExchange,
	// ProfileRefresh or ProfileClient); false when no such profile is configured.
	Type(name string) (string, bool)
	// Due reports whether a cached profile token must be renewed before
	// it is sent (nil is due), without I/O.
	Due(cached *sessionpb.ClientToken) bool
	// Token returns the access token the exchange profile sends for the
	// session id (record sess); cached is its token read with the session.
	Token(ctx context.Context, id session.ID, sess *sessionpb.Session, name string, cached *sessionpb.ClientToken) (string, error)
}

// DerivedReader reads a session and one profile's cached token in one
// round trip (the session store).
type DerivedReader interface {
	// GetWithDerived is Get plus the profile's token (nil when none is cached).
	GetWithDerived(ctx context.Context, id session.ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error)
}

// DerivedPeeker serves a session and one profile's token without I/O
// (the session cache).
type DerivedPeeker interface {
	// PeekDerived returns both when it can without I/O.
	PeekDerived(id session.ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, bool)
}

// Deps are the Server's collaborators, injected so tests control time and I/O.
type Deps struct {
	// Sessions reads session records. Required by NewServer; NewFrontendServer
	// takes each frontend's own.
	Sessions SessionReader
	// Refresher renews access tokens; nil disables refresh, and an expired
	// access token then answers 401 session_expired. NewServer only.
	Refresher TokenRefresher
	// ClientTokens serves the client and user_or_client policies; nil makes
	// those routes answer 500 client_token_unknown. NewServer only.
	ClientTokens ClientTokenSource
	// Tokens are the token profiles; nil: routes naming one answer 500
	// token_profile_unknown. NewServer only.
	Tokens TokenProfileSource
	// Cookie names the session cookie and reads, strips and clears it.
	// Required by NewServer.
	Cookie session.CookieConfig
	// Antiforgery is the header every non-none policy requires.
	Antiforgery oidcflow.AntiforgeryConfig
	// Logger receives one line per denial (debug for expected ones); nil
	// discards. Each frontend's lines carry its name as "frontend".
	Logger *slog.Logger
	// Now is the clock. Required.
	Now func() time.Time
	// Metrics counts and times checks; nil records nothing.
	Metrics *Metrics
	// Tracer makes one span per Check, a child of the trace context Envoy
	// sent (gRPC metadata, else the request's traceparent); nil makes none
	// and costs Check nothing.
	Tracer trace.Tracer
}

// Frontend is one app as Check sees it: where it lives, its routes, its
// session cookie, and what reads its sessions. Nothing of one frontend is
// ever consulted for a request of another.
type Frontend struct {
	// Route is its name, hosts and path prefix.
	Route oidcflow.Route
	// Config is its `authz:` section.
	Config Config
	// Sessions reads its sessions (its own view of the store). Required.
	Sessions SessionReader
	// Refresher renews its access tokens; nil: as in Deps.
	Refresher TokenRefresher
	// ClientTokens serves its client policies; nil: as in Deps.
	ClientTokens ClientTokenSource
	// Cookie is its session cookie. Required.
	Cookie session.CookieConfig
	// Tokens are its token profiles; nil: routes naming one answer 500
	// token_profile_unknown.
	Tokens TokenProfileSource
}

// DefaultFrontend names the one frontend of NewServer (and of a config
// without `frontends:`).
const DefaultFrontend = "default"

// unknownFrontend labels metrics, logs and spans of requests no frontend took.
const unknownFrontend = "unknown"

// Server answers envoy.service.auth.v3.Authorization/Check. It is safe for
// concurrent use; SetFrontends swaps the frontends while it serves.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	parser      parser
	antiforgery oidcflow.AntiforgeryConfig
	logger      *slog.Logger
	unknownLog  *slog.Logger // logger, for requests no frontend took
	now         func() time.Time
	metrics     *Metrics
	tracer      trace.Tracer
	// dpopKeys are the parsed DPoP keys of recent sessions, kept across
	// reloads so a Check signs without parsing its session's key.
	dpopKeys *oidcflow.DPoPKeys
	// frontends is swapped whole by SetFrontends: a Check sees one
	// consistent set, for one atomic load.
	frontends atomic.Pointer[frontendSet]
}

// frontendSet is one generation of frontends, immutable once built.
type frontendSet struct {
	sel *oidcflow.Selector[*frontend]
	// unknown renders the answers of requests no frontend took.
	unknown responses
	// cookies are every frontend's cookies: a `none` route no frontend
	// claims still sends none of them upstream.
	cookies []session.CookieConfig
	metrics frontendMetrics
	list    []*frontend // in configuration order
}

// frontend is everything Check needs for one frontend, built by SetFrontends.
type frontend struct {
	name     string
	routes   routeTable
	sessions SessionReader
	// get is sessions' GetShared when it has one, else its Get.
	get         func(ctx context.Context, id session.ID) (*sessionpb.Session, error)
	peeker      SessionPeeker // sessions, when it can answer without I/O
	refresher   TokenRefresher
	due         dueReporter // the refresher, when it reports Due
	clients     ClientTokenSource
	tokens      TokenProfileSource
	derived     DerivedReader // sessions, when it reads a profile's token in the same round trip
	derivedPeek DerivedPeeker // sessions, when it serves both without I/O
	cookie      session.CookieConfig
	antiforgery oidcflow.AntiforgeryConfig
	origins     oidcflow.Origins // Config.AllowedOrigins
	// antiforgeryName is the anti-forgery header's name in lower case, as
	// a preflight names it.
	antiforgeryName string
	// strip are the cookies removed from every request passed upstream:
	// its own session and login cookies and those of every frontend whose
	// hosts overlap its own, so no upstream sees another app's session.
	strip     []session.CookieConfig
	logger    *slog.Logger
	now       func() time.Time
	metrics   frontendMetrics
	loginPath string
	claims    *claimsCache     // decoded claims, for routes that require some
	timeout   time.Duration    // Config.CheckTimeout
	identity  []identityHeader // sorted by header name
	responses responses
	dpopKeys  *oidcflow.DPoPKeys // the Server's, shared by every frontend set
}

// identityHeader is one configured identity header, lower-cased.
type identityHeader struct {
	header string
	claim  string
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer is a Server for one frontend, DefaultFrontend on every host and
// path, with deps' Sessions, Refresher, ClientTokens and Cookie.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	var errs []error
	if deps.Sessions == nil {
		errs = append(errs, errors.New("deps.Sessions: required"))
	}
	if deps.Cookie.Name == "" {
		errs = append(errs, errors.New("deps.Cookie.Name: required"))
	}
	s, err := NewFrontendServer(deps, []Frontend{{
		Route:        oidcflow.Route{Name: DefaultFrontend, PathPrefix: "/"},
		Config:       cfg,
		Sessions:     deps.Sessions,
		Refresher:    deps.Refresher,
		ClientTokens: deps.ClientTokens,
		Cookie:       deps.Cookie,
		Tokens:       deps.Tokens,
	}})
	if len(errs) > 0 {
		return nil, fmt.Errorf("authz: %w", errors.Join(append(errs, err)...))
	}
	return s, err
}

// NewFrontendServer validates deps and frontends and precomputes every
// response that does not depend on the request. Every problem is reported
// at once.
func NewFrontendServer(deps Deps, frontends []Frontend) (*Server, error) {
	var errs []error
	if deps.Now == nil {
		errs = append(errs, errors.New("deps.Now: required"))
	}
	if !isToken(deps.Antiforgery.Header) || deps.Antiforgery.Value == "" {
		errs = append(errs, errors.New("deps.Antiforgery: header name and value required"))
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		parser:      parser{antiforgeryName: strings.ToLower(deps.Antiforgery.Header), requires: newExtRequireCache()},
		antiforgery: deps.Antiforgery,
		logger:      logger,
		unknownLog:  logger.With("frontend", unknownFrontend),
		now:         deps.Now,
		metrics:     deps.Metrics,
		tracer:      deps.Tracer,
		dpopKeys:    oidcflow.NewDPoPKeys(0),
	}
	if err := s.SetFrontends(frontends); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authz: %w", errors.Join(errs...))
	}
	return s, nil
}

// SetFrontends replaces every frontend at once (a config reload). Checks
// in flight finish with the set they started with. On error nothing
// changes.
func (s *Server) SetFrontends(frontends []Frontend) error {
	set, err := s.buildSet(frontends)
	if err != nil {
		return err
	}
	s.frontends.Store(set)
	return nil
}

// Frontends names the frontends Check serves now, in configuration order.
func (s *Server) Frontends() []string {
	set := s.frontends.Load()
	names := make([]string, len(set.list))
	for i, f := range set.list {
		names[i] = f.name
	}
	return names
}

func (s *Server) buildSet(frontends []Frontend) (*frontendSet, error) {
	var errs []error
	if len(frontends) == 0 {
		errs = append(errs, errors.New("frontends: at least one required"))
	}
	routes := make([]oidcflow.Route, len(frontends))
	for i, fr := range frontends {
		routes[i] = fr.Route
		field := fmt.Sprintf("frontends[%s]", fr.Route.Name)
		if err := fr.Config.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.authz: %w", field, err))
		}
		if fr.Sessions == nil {
			errs = append(errs, fmt.Errorf("%s: Sessions required", field))
		}
		if fr.Cookie.Name == "" {
			errs = append(errs, fmt.Errorf("%s: Cookie.Name required", field))
		}
	}
	errs = append(errs, oidcflow.ValidateRoutes(routes)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set := &frontendSet{
		unknown: newResponses(nil, ""),
		metrics: s.metrics.frontend(unknownFrontend),
	}
	built := make([]*frontend, len(frontends))
	for i, fr := range frontends {
		built[i] = s.newFrontend(fr)
		set.cookies = append(set.cookies, fr.Cookie, loginCookie(fr.Cookie))
	}
	for i, f := range built {
		for j, other := range frontends {
			if j != i && oidcflow.HostsOverlap(frontends[i].Route.Hosts, other.Route.Hosts) {
				f.strip = append(f.strip, other.Cookie, loginCookie(other.Cookie))
			}
		}
	}
	sel, err := oidcflow.NewSelector(routes, built)
	if err != nil {
		return nil, err
	}
	set.sel, set.list = sel, built
	return set, nil
}

// newFrontend builds one validated frontend.
func (s *Server) newFrontend(fr Frontend) *frontend {
	cfg := fr.Config
	f := &frontend{
		name:        fr.Route.Name,
		routes:      newRouteTable(cfg),
		sessions:    fr.Sessions,
		refresher:   fr.Refresher,
		clients:     fr.ClientTokens,
		tokens:      fr.Tokens,
		cookie:      fr.Cookie,
		antiforgery: s.antiforgery,
		// A preflight grants the anti-forgery header by this name.
		antiforgeryName: strings.ToLower(s.antiforgery.Header),
		strip:           []session.CookieConfig{fr.Cookie, loginCookie(fr.Cookie)},
		logger:          s.logger.With("frontend", fr.Route.Name),
		now:             s.now,
		metrics:         s.metrics.frontend(fr.Route.Name),
		loginPath:       cfg.LoginPath,
		claims:          newClaimsCache(),
		timeout:         cfg.CheckTimeout,
		dpopKeys:        s.dpopKeys,
	}
	for _, h := range slices.Sorted(maps.Keys(cfg.IdentityHeaders)) {
		f.identity = append(f.identity, identityHeader{header: strings.ToLower(h), claim: cfg.IdentityHeaders[h]})
	}
	slices.SortFunc(f.identity, func(a, b identityHeader) int { return strings.Compare(a.header, b.header) })
	// Validate has accepted the list already.
	f.origins, _ = oidcflow.ParseOrigins("allowed_origins", cfg.AllowedOrigins)
	f.due, _ = fr.Refresher.(dueReporter)
	f.responses = newResponses(f.identity, fr.Cookie.ClearCookie())
	f.get = fr.Sessions.Get
	if sr, ok := fr.Sessions.(SharedSessionReader); ok {
		f.get = sr.GetShared
	}
	f.peeker, _ = fr.Sessions.(SessionPeeker)
	f.derived, _ = fr.Sessions.(DerivedReader)
	f.derivedPeek, _ = fr.Sessions.(DerivedPeeker)
	return f
}

// loginCookie is the login-transaction cookie of a frontend whose session
// cookie is c (oidcflow names it so).
func loginCookie(c session.CookieConfig) session.CookieConfig {
	return session.CookieConfig{Name: c.Name + "-login", SameSite: c.SameSite}
}

// Check answers Envoy. Known conditions are answers, never gRPC errors, so
// Envoy's failure mode never decides for us.
func (s *Server) Check(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if s.tracer != nil {
		return s.tracedCheck(ctx, in), nil
	}
	return s.check(ctx, in, nil), nil
}

// checked is what a traced Check's span reports of the request.
type checked struct {
	req      request
	frontend string
	answer   string
}

// check is Check without tracing; out, when not nil, receives the parsed
// request and the answer for the span.
func (s *Server) check(ctx context.Context, in *authv3.CheckRequest, out *checked) *authv3.CheckResponse {
	start := time.Now()
	set := s.frontends.Load()
	req, err := s.parser.parse(in)
	req.start = start
	if err != nil {
		return s.denyUnknown(ctx, set, &req, err, out)
	}
	f := set.pick(&req)
	if f == nil {
		if req.policy == PolicyNone {
			// Not protected, so no frontend is needed; still no session
			// cookie of any frontend goes upstream.
			set.metrics.observe(req.policy, "ok", start)
			out.set(req, unknownFrontend, "ok")
			return set.unknown.ok(&req, decision{}, set.cookies, nil)
		}
		return s.denyUnknown(ctx, set, &req, errFrontendUnknown, out)
	}
	f.route(&req)
	d, err := f.decide(ctx, &req)
	if err == nil {
		f.metrics.observe(req.policy, "ok", start)
		out.set(req, f.name, "ok")
		resp := f.responses.ok(&req, d, f.strip, f.identity)
		if origin := f.corsOrigin(&req); origin != "" {
			resp = withCORSOK(resp, f.responses.anonOK, origin)
		}
		return resp
	}
	resp := f.deny(ctx, &req, err)
	if origin := f.corsOrigin(&req); origin != "" {
		if errors.Is(err, errPreflight) {
			resp = f.preflight(&req, origin, resp)
		} else {
			resp = withCORSDenied(resp, origin)
		}
	}
	f.metrics.observe(req.policy, resp.GetStatus().GetMessage(), start)
	out.set(req, f.name, resp.GetStatus().GetMessage())
	return resp
}

// set records a Check for its span; a nil c records nothing.
func (c *checked) set(req request, frontend, answer string) {
	if c != nil {
		*c = checked{req: req, frontend: frontend, answer: answer}
	}
}

// pick is the request's frontend: the one its route names
// (context_extensions bff.frontend), else the one its host and path select;
// nil when there is none.
func (fs *frontendSet) pick(req *request) *frontend {
	if req.frontend != "" {
		f, _ := fs.sel.Named(req.frontend)
		return f
	}
	f, _ := fs.sel.Select(req.host, req.path)
	return f
}

// route gives req the policy of the frontend's path rules, unless the
// route named one itself.
func (f *frontend) route(req *request) {
	if req.routed {
		return
	}
	rt := f.routes.match(req.path)
	req.policy, req.redirect, req.clientToken, req.require, req.profile = rt.policy, rt.redirect, rt.clientToken, rt.require, rt.profile
	req.realtime = rt.realtime
}

// denyUnknown answers a request no frontend took: malformed, or matching
// none. Such answers never set or clear a cookie.
func (s *Server) denyUnknown(ctx context.Context, set *frontendSet, req *request, err error, out *checked) *authv3.CheckResponse {
	d, resp := set.unknown.denied(err)
	logDenial(ctx, s.unknownLog, req, d, err)
	set.metrics.observe(req.policy, d.code, req.start)
	out.set(*req, unknownFrontend, d.code)
	return resp
}

// deny logs the denial and renders it: the table's precomputed answer, or a
// redirect to login for a navigation on a route that allows it.
func (f *frontend) deny(ctx context.Context, req *request, err error) *authv3.CheckResponse {
	d, resp := f.responses.denied(err)
	logDenial(ctx, f.logger, req, d, err)
	var up *stepUpError
	if errors.As(err, &up) {
		if req.redirect && req.navigation && req.policy == PolicyUser {
			return f.responses.stepUpRedirect(f.loginPath, req, up)
		}
		return f.responses.stepUp(f.loginPath, d, up)
	}
	if d.redirectable && req.redirect && req.navigation && req.policy == PolicyUser {
		return f.responses.redirect(f.loginPath, req, d.clearCookie)
	}
	return resp
}

// logDenial is the one log line of a denial: debug for expected ones, warn
// for faults.
func logDenial(ctx context.Context, logger *slog.Logger, req *request, d denial, err error) {
	level := slog.LevelDebug
	if d.status >= 500 {
		level = slog.LevelWarn
	}
	logger.LogAttrs(ctx, level, "authz: denied",
		slog.String(oidcflow.RequestIDAttr, req.id),
		slog.String("method", req.method),
		slog.String("path", req.path), // normalised, never the query
		slog.String("policy", string(req.policy)),
		slog.Int("status", d.status),
		slog.String("error", d.code),
		slog.Any("cause", err))
}
