package authz

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// decision is a pass: with the user's access token, or anonymous.
type decision struct {
	token  string // access token; "" passes without one
	claims []byte // the ID token's claims, for identity headers
	// clearCookie deletes a dead session cookie in the browser while an
	// anonymous request passes (user_or_none).
	clearCookie bool
	// dpop is a DPoP proof for this request by the session's key: the
	// token goes as `authorization: DPoP <token>` with it; "" for Bearer.
	dpop string
}

// decide runs anti-forgery → session cookie → store → refresh, in that
// order, and stops at the first answer. It never passes on a fault.
func (s *frontend) decide(ctx context.Context, req *request) (decision, error) {
	if req.policy == PolicyNone {
		return decision{}, nil
	}
	// A CORS preflight is answered here, before anything else: a browser
	// sends it without credentials, so it must cost no store lookup and
	// must never reach the API with a token or an identity (T70).
	if req.preflight {
		return decision{}, errPreflight
	}
	// Anti-forgery first, before any store lookup or refresh (T12–T15).
	// Envoy merges repeated headers with ",", so "1,1" fails as it should.
	// A WebSocket or an EventSource on a realtime route cannot carry the
	// header: the origin rule stands in for it, still before any store
	// lookup (T76).
	switch {
	case req.antiforgeryCount == 1 && s.antiforgery.Valid(req.antiforgery):
	case streamByOrigin(req):
		if !originAllowed(req, s.origins) {
			return decision{}, errOriginNotAllowed
		}
	default:
		// A browser navigation cannot carry the header. Without a session
		// cookie it carries no credential either, so it may be sent to log
		// in; with one it stays a 403.
		if req.cookie == "" && req.navigation && req.redirect && req.policy == PolicyUser {
			return decision{}, errNoSession
		}
		return decision{}, errAntiforgery
	}
	kind, err := s.profileKind(req)
	if err != nil {
		return decision{}, err
	}
	if req.policy == PolicyClient {
		if kind != oidcflow.ProfileClient && req.profile != "" {
			return decision{}, fmt.Errorf("%w: a client route names profile %q, which is not a client profile", errProfileUnknown, req.profile)
		}
		return s.clientToken(ctx, req) // the session, if any, plays no part
	}

	id, err := s.cookie.ReadID(req.cookie)
	switch {
	case errors.Is(err, session.ErrNoCookie):
		return s.anonymous(ctx, req, errNoSession) // T1: no store call
	case errors.Is(err, session.ErrDuplicateCookie):
		return decision{}, errDuplicateCookie // T4: never first- or last-wins
	case err != nil:
		return s.anonymous(ctx, req, fmt.Errorf("%w: %w", errSessionUnknown, err)) // T2: no store call
	}

	// A slow Redis must answer 503 session_store_unavailable before
	// Envoy's own timeout answers for us (T53). The one store read is
	// bounded by the store's own command budget, which the config loader
	// keeps shorter than check_timeout; the refresh, which can wait on locks
	// and the provider, gets the Check's deadline (in refresh). A context
	// timer per Check here would cost more CPU than the rest of the read.
	// An exchange profile's cached token comes with the session: from the
	// session cache, or in the same store round trip.
	var sess *sessionpb.Session
	var cached *sessionpb.ClientToken
	hit := false
	switch {
	case derived(kind) && s.derivedPeek != nil:
		sess, cached, hit = s.derivedPeek.PeekDerived(id, req.profile)
	case s.peeker != nil:
		sess, hit = s.peeker.Peek(id) // the session cache: no I/O
	}
	if !hit {
		if derived(kind) && s.derived != nil {
			sess, cached, err = s.derived.GetWithDerived(ctx, id, req.profile)
		} else {
			sess, err = s.get(ctx, id)
		}
	}
	switch {
	case errors.Is(err, session.ErrNotFound):
		return s.anonymous(ctx, req, errSessionUnknown) // T3
	case err != nil:
		return decision{}, fmt.Errorf("%w: %w", errStoreUnavailable, err)
	case sess == nil:
		return decision{}, fmt.Errorf("%w: store returned no record", errStoreUnavailable)
	}

	nowMs := s.now().UnixMilli()
	if abs := sess.GetAbsoluteExpiresAtUnixMs(); abs != 0 && nowMs >= abs {
		// The store should not have returned it; make sure it is gone (T6).
		if err := s.sessions.Delete(ctx, id); err != nil {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "authz: delete expired session failed",
				slog.String(oidcflow.RequestIDAttr, req.id), slog.Any("error", err))
		}
		return s.anonymous(ctx, req, errSessionUnknown)
	}

	// What the route requires is checked before any token work: a session
	// without it never reaches the route, with or without a token (T75).
	if req.require != nil {
		if err := req.require.meets(sess, time.UnixMilli(nowMs), s.claims); err != nil {
			return decision{}, err
		}
	}

	sess, err = s.refresh(ctx, req, id, sess, nowMs)
	switch {
	case errors.Is(err, errStoreUnavailable), errors.Is(err, errRefreshFailed):
		return decision{}, err // faults deny on every policy
	case err != nil:
		return s.anonymous(ctx, req, err)
	}
	switch kind {
	case oidcflow.ProfileExchange, oidcflow.ProfileRefresh:
		return s.exchanged(ctx, req, id, sess, cached)
	case oidcflow.ProfileClient:
		d, err := s.clientToken(ctx, req)
		d.claims = sess.GetClaimsJson()
		return d, err
	}
	d := decision{token: sess.GetAccessToken(), claims: sess.GetClaimsJson()}
	if strings.EqualFold(sess.GetTokenType(), oidcflow.TokenTypeDPoP) {
		if d.dpop, err = s.dpopProof(req, sess.GetDpopKey(), d.token); err != nil {
			return decision{}, err
		}
	}
	return d, nil
}

// dpopProof is a fresh DPoP proof for req and token by the session's key
// (RFC 9449 §7): htm and htu are the request as Envoy saw it (no query),
// ath binds it to the token. A DPoP-bound token without a usable key
// fails closed: it is never sent as a bearer token.
func (s *frontend) dpopProof(req *request, der []byte, token string) (string, error) {
	if len(der) == 0 {
		return "", errDPoPKeyMissing
	}
	key, err := s.dpopKeys.Get(der)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errDPoPKeyMissing, err)
	}
	proof, err := key.Sign(rand.Reader, oidcflow.DPoPProof{
		Method:      req.method,
		URL:         oidcflow.DPoPURL(req.scheme, req.host, req.path),
		IssuedAt:    s.now(),
		AccessToken: token,
	})
	if err != nil {
		return "", fmt.Errorf("dpop proof: %w", err)
	}
	return proof, nil
}

// derived reports whether a profile's token is obtained per session and
// cached beside it (exchange and refresh profiles).
func derived(kind string) bool {
	return kind == oidcflow.ProfileExchange || kind == oidcflow.ProfileRefresh
}

// profileKind is the type of the route's token profile (session when it
// names none). A client profile becomes the route's client token, so
// user_or_client sends it to anonymous callers too.
func (s *frontend) profileKind(req *request) (string, error) {
	if req.profile == "" {
		return oidcflow.ProfileSession, nil
	}
	if s.tokens == nil {
		return "", fmt.Errorf("%w: %q (no profiles configured)", errProfileUnknown, req.profile)
	}
	kind, ok := s.tokens.Type(req.profile)
	if !ok {
		return "", fmt.Errorf("%w: %q", errProfileUnknown, req.profile)
	}
	if kind == oidcflow.ProfileClient {
		req.clientToken = req.profile
	}
	return kind, nil
}

// exchanged passes with the exchange profile's token for this session:
// the cached one, or a new one obtained under the lock. A refusal is 403
// and any other failure 503: never the session's own token instead (T74).
func (s *frontend) exchanged(ctx context.Context, req *request, id session.ID, sess *sessionpb.Session, cached *sessionpb.ClientToken) (decision, error) {
	if !s.tokens.Due(cached) {
		return decision{token: cached.GetAccessToken(), claims: sess.GetClaimsJson()}, nil
	}
	ctx, cancel := context.WithDeadline(oidcflow.WithRequestID(ctx, req.id), s.deadline(ctx, req))
	defer cancel()
	tok, err := s.tokens.Token(ctx, id, sess, req.profile, cached)
	switch {
	case errors.Is(err, oidcflow.ErrExchangeRefused):
		return decision{}, fmt.Errorf("%w: %w", errExchangeRefused, err)
	case errors.Is(err, oidcflow.ErrUnknownProfile):
		return decision{}, fmt.Errorf("%w: %w", errProfileUnknown, err)
	case errors.Is(err, session.ErrUnavailable):
		return decision{}, fmt.Errorf("%w: %w", errStoreUnavailable, err)
	case err != nil:
		return decision{}, fmt.Errorf("%w: %w", errExchangeFailed, err)
	}
	return decision{token: tok, claims: sess.GetClaimsJson()}, nil
}

// checkReserve is what a Check keeps of the deadline Envoy sends, to render
// and send its answer before Envoy stops waiting.
const checkReserve = 50 * time.Millisecond

// deadline is when req's refresh (or client-token) work must end:
// check_timeout after the Check began, or checkReserve before the deadline
// Envoy sent (its ext_authz timeout, as grpc-timeout), whichever is first.
// It is wall clock time, as context deadlines are, never the injected
// clock, and computed only by the Checks that need it.
func (s *frontend) deadline(ctx context.Context, req *request) time.Time {
	d := req.start.Add(s.timeout)
	if envoy, ok := ctx.Deadline(); ok {
		if e := envoy.Add(-checkReserve); e.Before(d) {
			d = e
		}
	}
	return d
}

// refresh hands the session to the Refresher, which alone decides whether
// its access token is due (it returns sess itself when not) and keeps
// passing a still-valid token when a refresh fails (T59). Without a
// Refresher an expired token ends the request.
//
// The Refresher's log lines name the request: its context carries the
// request ID, added only once a refresh is due (a Refresher that reports
// Due), so the hot path allocates nothing for it.
func (s *frontend) refresh(ctx context.Context, req *request, id session.ID, sess *sessionpb.Session, nowMs int64) (*sessionpb.Session, error) {
	if s.refresher == nil {
		exp := sess.GetAccessTokenExpiresAtUnixMs()
		if sess.GetAccessToken() == "" || exp != 0 && nowMs >= exp {
			return nil, errSessionExpired
		}
		return sess, nil
	}
	if s.due != nil && !s.due.Due(sess) {
		return sess, nil
	}
	ctx, cancel := context.WithDeadline(ctx, s.deadline(ctx, req))
	defer cancel()
	fresh, err := s.refresher.Refresh(oidcflow.WithRequestID(ctx, req.id), id, sess)
	switch {
	case err == nil && fresh.GetAccessToken() != "":
		return fresh, nil
	case err == nil:
		return nil, fmt.Errorf("%w: refresher returned no access token", errRefreshFailed)
	case errors.Is(err, oidcflow.ErrRefreshRejected):
		return nil, fmt.Errorf("%w: %w", errRefreshRejected, err)
	case errors.Is(err, session.ErrNotFound):
		return nil, errSessionUnknown // deleted while we refreshed (logout)
	case errors.Is(err, session.ErrUnavailable):
		return nil, fmt.Errorf("%w: %w", errStoreUnavailable, err)
	default:
		// The token has expired and no new one came in time; the session is kept.
		return nil, fmt.Errorf("%w: %w", errRefreshFailed, err)
	}
}

// anonymous turns "no usable session" into a pass without a token on
// user_or_none routes and with a client token on user_or_client routes
// (clearing a dead cookie on both), and into err elsewhere. Faults never
// come here: they deny on every policy.
func (s *frontend) anonymous(ctx context.Context, req *request, err error) (decision, error) {
	clear := errors.Is(err, errSessionUnknown) || errors.Is(err, errRefreshRejected)
	switch req.policy {
	case PolicyUserOrNone:
		return decision{clearCookie: clear}, nil
	case PolicyUserOrClient:
		d, cerr := s.clientToken(ctx, req)
		d.clearCookie = clear
		return d, cerr
	default:
		return decision{}, err
	}
}

// clientToken passes with the route's client-credentials token. A token that
// cannot be had is a fault: 503, never a pass without one.
func (s *frontend) clientToken(ctx context.Context, req *request) (decision, error) {
	if s.clients == nil {
		return decision{}, errClientTokenUnknown
	}
	ctx, cancel := context.WithDeadline(ctx, s.deadline(ctx, req))
	defer cancel()
	tok, err := s.clients.Token(oidcflow.WithRequestID(ctx, req.id), req.clientToken)
	switch {
	case errors.Is(err, oidcflow.ErrUnknownClientToken):
		return decision{}, fmt.Errorf("%w: %w", errClientTokenUnknown, err)
	case err != nil:
		return decision{}, fmt.Errorf("%w: %w", errRefreshFailed, err)
	case tok == "":
		return decision{}, fmt.Errorf("%w: empty client token", errRefreshFailed)
	}
	return decision{token: tok}, nil
}
