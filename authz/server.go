package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
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

// Deps are the Server's collaborators, injected so tests control time and I/O.
type Deps struct {
	// Sessions reads session records. Required.
	Sessions SessionReader
	// Refresher renews access tokens; nil disables refresh, and an expired
	// access token then answers 401 session_expired.
	Refresher TokenRefresher
	// ClientTokens serves the client and user_or_client policies; nil makes
	// those routes answer 500 client_token_unknown.
	ClientTokens ClientTokenSource
	// Cookie names the session cookie and reads, strips and clears it.
	Cookie session.CookieConfig
	// Antiforgery is the header every non-none policy requires.
	Antiforgery oidcflow.AntiforgeryConfig
	// Logger receives one line per denial (debug for expected ones); nil discards.
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

// Server answers envoy.service.auth.v3.Authorization/Check. It is safe for
// concurrent use; everything it needs per Check is built by NewServer.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	parser      parser
	sessions    SessionReader
	peeker      SessionPeeker // deps.Sessions, when it can answer without I/O
	refresher   TokenRefresher
	due         dueReporter // the refresher, when it reports Due
	clients     ClientTokenSource
	cookie      session.CookieConfig
	antiforgery oidcflow.AntiforgeryConfig
	logger      *slog.Logger
	now         func() time.Time
	metrics     *Metrics
	tracer      trace.Tracer
	loginPath   string
	timeout     time.Duration    // Config.CheckTimeout
	identity    []identityHeader // sorted by header name
	responses   responses
}

// identityHeader is one configured identity header, lower-cased.
type identityHeader struct {
	header string
	claim  string
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer validates cfg and deps and precomputes every response that does
// not depend on the request.
func NewServer(cfg Config, deps Deps) (*Server, error) {
	var errs []error
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if deps.Sessions == nil {
		errs = append(errs, errors.New("deps.Sessions: required"))
	}
	if deps.Now == nil {
		errs = append(errs, errors.New("deps.Now: required"))
	}
	if deps.Cookie.Name == "" {
		errs = append(errs, errors.New("deps.Cookie.Name: required"))
	}
	if !isToken(deps.Antiforgery.Header) || deps.Antiforgery.Value == "" {
		errs = append(errs, errors.New("deps.Antiforgery: header name and value required"))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("authz: %w", errors.Join(errs...))
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		parser: parser{
			routes:          newRouteTable(cfg),
			antiforgeryName: strings.ToLower(deps.Antiforgery.Header),
		},
		sessions:    deps.Sessions,
		refresher:   deps.Refresher,
		clients:     deps.ClientTokens,
		cookie:      deps.Cookie,
		antiforgery: deps.Antiforgery,
		logger:      logger,
		now:         deps.Now,
		metrics:     deps.Metrics,
		tracer:      deps.Tracer,
		loginPath:   cfg.LoginPath,
		timeout:     cfg.CheckTimeout,
	}
	for _, h := range slices.Sorted(maps.Keys(cfg.IdentityHeaders)) {
		s.identity = append(s.identity, identityHeader{header: strings.ToLower(h), claim: cfg.IdentityHeaders[h]})
	}
	slices.SortFunc(s.identity, func(a, b identityHeader) int { return strings.Compare(a.header, b.header) })
	s.due, _ = deps.Refresher.(dueReporter)
	s.responses = newResponses(s.identity, deps.Cookie.ClearCookie())
	s.peeker, _ = deps.Sessions.(SessionPeeker)
	return s, nil
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
	req    request
	answer string
}

// check is Check without tracing; out, when not nil, receives the parsed
// request and the answer for the span.
func (s *Server) check(ctx context.Context, in *authv3.CheckRequest, out *checked) *authv3.CheckResponse {
	start := time.Now()
	req, err := s.parser.parse(in)
	req.start = start
	if err == nil {
		var d decision
		if d, err = s.decide(ctx, &req); err == nil {
			s.metrics.observe(req.policy, "ok", start)
			if out != nil {
				*out = checked{req: req, answer: "ok"}
			}
			return s.responses.ok(&req, d, s.cookie, s.identity)
		}
	}
	resp := s.deny(ctx, &req, err)
	s.metrics.observe(req.policy, resp.GetStatus().GetMessage(), start)
	if out != nil {
		*out = checked{req: req, answer: resp.GetStatus().GetMessage()}
	}
	return resp
}

// deny logs the denial and renders it: the table's precomputed answer, or a
// redirect to login for a navigation on a route that allows it.
func (s *Server) deny(ctx context.Context, req *request, err error) *authv3.CheckResponse {
	d, resp := s.responses.denied(err)
	level := slog.LevelDebug
	if d.status >= 500 {
		level = slog.LevelWarn
	}
	s.logger.LogAttrs(ctx, level, "authz: denied",
		slog.String(oidcflow.RequestIDAttr, req.id),
		slog.String("method", req.method),
		slog.String("path", req.path), // normalised, never the query
		slog.String("policy", string(req.policy)),
		slog.Int("status", d.status),
		slog.String("error", d.code),
		slog.Any("cause", err))
	if d.redirectable && req.redirect && req.navigation && req.policy == PolicyUser {
		return s.responses.redirect(s.loginPath, req, d.clearCookie)
	}
	return resp
}
