package sampleapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// DefaultSessionCookieName is envoy-bff's default session cookie.
const DefaultSessionCookieName = "__Host-bff"

// Config configures the API.
type Config struct {
	// Issuer is the OpenID provider's issuer URL; tokens must carry it as `iss`
	// and its discovery document names the JWKS.
	Issuer string
	// Audience, when set, builds the API for that audience: GET /api/whoami
	// then answers only a request with a valid bearer token whose `aud`
	// contains it, and 401 invalid_token to every other (counted in Stats).
	// Empty: no audience check, and whoami answers 200 whatever arrived,
	// reporting a bad token in token_error.
	Audience string
	// SessionCookieName is the cookie whose presence whoami reports (default __Host-bff).
	SessionCookieName string
	// HTTPClient fetches discovery and JWKS (default: 5s timeout).
	HTTPClient *http.Client
	// RefetchCooldown is the least time between JWKS refetches caused by
	// unknown key IDs (default 10s); the first miss always refetches.
	RefetchCooldown time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// EventInterval is the time between /api/events ticks (default 1s).
	EventInterval time.Duration
}

// API serves /api/*; it is an http.Handler.
type API struct {
	cfg  Config
	keys *keySet

	jtiMu                      sync.Mutex
	jtis                       oidctest.JTICache // DPoP proof jtis seen: each proof is used once
	dpopVerified, dpopRejected atomic.Int64

	served, verified, rejected, wrongAudience atomic.Int64
	realtime, streams                         atomic.Int64
}

// Stats counts what an API answered.
type Stats struct {
	// Served counts whoami requests answered 200.
	Served int64
	// Verified counts those that carried a verified token.
	Verified int64
	// Rejected counts whoami requests answered 401 (an API built for an audience only).
	Rejected int64
	// WrongAudience counts the rejected requests whose token was valid but
	// made for another audience: a token meant for another API (T74).
	WrongAudience int64
	// Realtime counts requests that reached /api/events or /api/ws, answered or not.
	Realtime int64
	// Streams counts SSE streams and WebSockets opened for a verified bearer.
	Streams int64
	// DPoPVerified counts whoami requests whose DPoP proof and token binding verified.
	DPoPVerified int64
	// DPoPRejected counts whoami requests answered 401 invalid_dpop_proof
	// (a bad, replayed or foreign proof, or a DPoP-bound token sent as a bearer token).
	DPoPRejected int64
}

// Stats returns the counters so far.
func (a *API) Stats() Stats {
	return Stats{Served: a.served.Load(), Verified: a.verified.Load(), Rejected: a.rejected.Load(), WrongAudience: a.wrongAudience.Load(),
		Realtime: a.realtime.Load(), Streams: a.streams.Load(), DPoPVerified: a.dpopVerified.Load(), DPoPRejected: a.dpopRejected.Load()}
}

// Audience is the audience the API was built for ("" for none).
func (a *API) Audience() string { return a.cfg.Audience }

// Whoami is the JSON answer of GET /api/whoami.
type Whoami struct {
	// Sub is the verified token's subject, "" without a verified token.
	Sub string `json:"sub"`
	// SawAuthorization reports whether any Authorization header arrived.
	SawAuthorization bool `json:"saw_authorization"`
	// AuthorizationHeaders counts the Authorization headers that arrived.
	AuthorizationHeaders int `json:"authorization_headers"`
	// SawSessionCookie reports whether a cookie with the session cookie's exact name arrived.
	SawSessionCookie bool `json:"saw_session_cookie"`
	// CookieNames lists the names of every cookie that arrived, in order (values are never echoed).
	CookieNames []string `json:"cookie_names"`
	// SessionNameInCookieHeader reports whether the session cookie's name
	// appears anywhere in any Cookie header. SawSessionCookie splits on ';'
	// only, so a pair Envoy joined on with ',' (",__Host-bff=…", or
	// "a=1,__Host-bff=…") escapes it; this does not (T69).
	SessionNameInCookieHeader bool `json:"session_name_in_cookie_header"`
	// CookieHeaders counts the Cookie header lines that arrived.
	CookieHeaders int `json:"cookie_headers"`
	// TokenExpiresAt is the verified token's `exp` in RFC 3339 UTC, "" without a verified token.
	TokenExpiresAt string `json:"token_expires_at"`
	// ClientID is the verified token's `client_id` (or `azp`).
	ClientID string `json:"client_id,omitempty"`
	// AuthorizedParty is the verified token's `azp`.
	AuthorizedParty string `json:"azp,omitempty"`
	// Aud is the token's `aud`: of a verified token, or of a valid token
	// refused for lacking the API's audience.
	Aud []string `json:"aud,omitempty"`
	// APIAudience is the audience the API was built for, "" for none.
	APIAudience string `json:"api_audience,omitempty"`
	// Scope is the verified token's `scope`.
	Scope string `json:"scope,omitempty"`
	// TokenError says why a presented token was not accepted.
	TokenError string `json:"token_error,omitempty"`
	// Scheme is the Authorization scheme of a verified token: Bearer or DPoP.
	Scheme string `json:"scheme,omitempty"`
	// DPoPJKT is the thumbprint of the key a verified DPoP proof was signed
	// with (the token's cnf.jkt).
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// UserHeaders are the X-User-* request headers (envoy-bff's identity
	// headers in the tests' configs), by canonical name, values joined by ", ".
	UserHeaders map[string]string `json:"user_headers,omitempty"`

	dpopErr error // why a DPoP request was refused
}

// New validates cfg and builds the API; it fetches nothing until the first request.
func New(cfg Config) (*API, error) {
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sampleapi: issuer %q: want an absolute http(s) URL", cfg.Issuer)
	}
	if cfg.SessionCookieName == "" {
		cfg.SessionCookieName = DefaultSessionCookieName
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.RefetchCooldown == 0 {
		cfg.RefetchCooldown = 10 * time.Second
	}
	if cfg.RefetchCooldown < 0 {
		return nil, errors.New("sampleapi: negative refetch cooldown")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EventInterval <= 0 {
		cfg.EventInterval = time.Second
	}
	return &API{cfg: cfg, keys: newKeySet(cfg)}, nil
}

// Handler returns the API as an http.Handler.
func (a *API) Handler() http.Handler { return a }

// ServeHTTP routes /api/whoami, /api/health, /api/events (SSE) and /api/ws
// (WebSocket), and answers 404 for the rest. /api/whoami?permissive_cors=1
// also grants every origin, as a misconfigured API would.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/whoami":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, apiError{"method_not_allowed", "use GET"})
			return
		}
		if r.URL.Query().Get("permissive_cors") == "1" {
			// An upstream that grants every origin, a common mistake: the
			// proxy must never let it through (envoy-bff owns CORS).
			w.Header().Set("Access-Control-Allow-Origin", "*")
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Access-Control-Expose-Headers", "*")
		}
		out, verified := a.whoami(r)
		if errors.Is(out.dpopErr, errDPoP) {
			a.rejectDPoP(w, out)
			return
		}
		if a.cfg.Audience != "" && !verified {
			a.reject(w, out)
			return
		}
		a.served.Add(1)
		if verified {
			a.verified.Add(1)
		}
		writeJSON(w, http.StatusOK, out)
	case "/api/events":
		a.events(w, r)
	case "/api/ws":
		a.websocket(w, r)
	case "/api/health":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok"))
	default:
		writeJSON(w, http.StatusNotFound, apiError{"not_found", "no such endpoint"})
	}
}

// rejection is the 401 body of an API built for an audience: the error and
// what whoami saw.
type rejection struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Whoami
}

// reject answers 401 invalid_token (RFC 6750) for what whoami saw.
func (a *API) reject(w http.ResponseWriter, out Whoami) {
	a.rejected.Add(1)
	desc := out.TokenError
	challenge := `Bearer realm="sample-api"`
	if !out.SawAuthorization {
		desc = "bearer token required"
	} else {
		challenge += `, error="invalid_token"`
	}
	if len(out.Aud) > 0 { // verified but for another audience
		a.wrongAudience.Add(1)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, http.StatusUnauthorized, rejection{Error: "invalid_token", Description: desc, Whoami: out})
}

// whoami builds the answer for r and reports whether it carried a verified token.
func (a *API) whoami(r *http.Request) (Whoami, bool) {
	out := Whoami{CookieNames: cookieNames(r.Header), APIAudience: a.cfg.Audience}
	for k, vs := range r.Header {
		if strings.HasPrefix(k, "X-User-") {
			if out.UserHeaders == nil {
				out.UserHeaders = map[string]string{}
			}
			out.UserHeaders[k] = strings.Join(vs, ", ")
		}
	}
	for _, n := range out.CookieNames {
		if n == a.cfg.SessionCookieName {
			out.SawSessionCookie = true
		}
	}
	lines := r.Header[textproto.CanonicalMIMEHeaderKey("Cookie")]
	out.CookieHeaders = len(lines)
	for _, line := range lines {
		if strings.Contains(line, a.cfg.SessionCookieName) {
			out.SessionNameInCookieHeader = true
		}
	}
	auth := r.Header.Values("Authorization")
	out.AuthorizationHeaders = len(auth)
	out.SawAuthorization = len(auth) > 0
	switch {
	case len(auth) == 0:
		return out, false
	case len(auth) > 1:
		out.TokenError = "more than one Authorization header"
		return out, false
	}
	scheme, raw, _ := strings.Cut(auth[0], " ")
	dpop := strings.EqualFold(scheme, "DPoP")
	if !dpop && !strings.EqualFold(scheme, "Bearer") || raw == "" {
		out.TokenError = "not a bearer token"
		return out, false
	}
	var proof oidctest.DPoPProof
	if dpop {
		var err error
		if proof, err = a.verifyDPoP(r, raw); err != nil {
			out.TokenError, out.dpopErr = err.Error(), err
			return out, false
		}
	}
	c, err := a.verify(r.Context(), raw)
	if err != nil {
		out.TokenError = err.Error()
		if errors.Is(err, ErrWrongAudience) && c != nil {
			out.Aud = c.Audience
		}
		return out, false
	}
	switch {
	case dpop && c.Cnf.JKT != proof.JKT:
		err = fmt.Errorf("%w: the token's cnf.jkt is not the proof's key", errDPoP)
	case !dpop && c.Cnf.JKT != "":
		// RFC 9449 §7.2: a DPoP-bound token is never accepted as a bearer token.
		err = fmt.Errorf("%w: a DPoP-bound token sent as a bearer token", errDPoP)
	}
	if err != nil {
		out.TokenError, out.dpopErr = err.Error(), err
		return out, false
	}
	if dpop {
		out.Scheme, out.DPoPJKT = "DPoP", proof.JKT
		a.dpopVerified.Add(1)
	} else {
		out.Scheme = "Bearer"
	}
	out.Sub = c.Subject
	out.TokenExpiresAt = c.Expiry.Time().UTC().Format(time.RFC3339)
	out.ClientID = c.ClientID
	if out.ClientID == "" {
		out.ClientID = c.AuthorizedParty
	}
	out.AuthorizedParty = c.AuthorizedParty
	out.Aud = c.Audience
	out.Scope = c.Scope
	return out, true
}

// cookieNames returns the name of every cookie pair in every Cookie header, in order.
func cookieNames(h http.Header) []string {
	names := []string{}
	for _, line := range h[textproto.CanonicalMIMEHeaderKey("Cookie")] {
		for pair := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(pair, "=")
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, name)
			}
		}
	}
	return names
}

// apiError is the JSON error body.
type apiError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// writeJSON answers v as uncached JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
