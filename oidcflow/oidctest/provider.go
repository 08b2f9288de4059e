package oidctest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Provider is a running OpenID provider's state; every method is safe for concurrent use.
type Provider struct {
	cfg     ProviderConfig
	clients map[string]Client
	down    atomic.Bool

	mu             sync.Mutex
	issuer         string
	keys           []signingKey // the last one signs
	codes          map[string]*authCode
	sessions       map[string]*opSession
	refreshTokens  map[string]*refreshToken
	accessTokens   map[string]*accessToken // by jti
	stats          Stats
	refreshDelay   time.Duration
	refreshGate    chan struct{} // non-nil: refreshes wait until it is closed
	holdNext       int           // the next holdNext refreshes wait for holdNextGate
	holdNextGate   chan struct{}
	responseGate   chan struct{} // non-nil: refresh answers wait, after issuing, until it is closed
	heldResponses  atomic.Int64  // refresh answers waiting at responseGate now
	revocationLog  []string      // tokens presented to /revoke by authenticated clients, in order
	held           atomic.Int64  // refreshes waiting at a gate now
	reuseInterval  time.Duration
	families       []*family // in creation order
	authorizeError string
	noSilentLogin  bool       // prompt=none answers login_required
	lastAuthorize  url.Values // the last authorization request's parameters
	srv            *http.Server
	issued         []string // every user token, for leak checks

	exchanges         map[AudienceKey]int        // token exchanges that issued a token
	exchangeLog       map[AudienceKey][]Exchange // the same, each with its time and exp
	resourceRefreshes map[AudienceKey]int        // refresh grants with resource that issued a token
	exchangeError     grantError                 // code != "": every exchange fails so
	failNext          int                        // the next failNext exchanges fail with failNextError
	failNextError     grantError
	exchangeGate      chan struct{} // non-nil: exchanges wait until it is closed
	heldExchanges     atomic.Int64

	userInfo      map[string]map[string]any // by sub: claims /userinfo adds
	userInfoError int                       // != 0: /userinfo answers this status

	assertionJTIs map[string]time.Time      // "client jti" → exp of client assertions seen
	pushed        map[string]*pushedRequest // by request_uri
	mtlsSrv       *http.Server              // StartMTLS
	mtlsOrigin    string
	mtlsCertPEM   []byte
	dpopNonce     string   // the nonce RequireDPoPNonce asks for
	dpopJTIs      JTICache // proof jtis seen at the token endpoint
}

// authCode is one issued authorization code.
type authCode struct {
	clientID, redirectURI, challenge, nonce, scope string
	dpopJKT                                        string // the authorization request's dpop_jkt
	session                                        *opSession
	expires                                        time.Time
	redeemed                                       *family // non-nil once used
}

// opSession is the user's session at the provider (the `sid`).
type opSession struct {
	sid      string
	authTime time.Time
	acr      string // "" leaves acr out of ID tokens
	ended    bool
	clients  map[string]bool // clients that received tokens in this session
}

// family is every token descended from one authorization code.
type family struct {
	clientID, scope, nonce string
	jkt                    string // the DPoP key its tokens are bound to ("" for Bearer)
	session                *opSession
	revoked                bool
	refreshTokens          []string
	jtis                   []string
	grants                 []time.Time // successful refresh grants
	reuses                 int
	reuseIntervalGrants    int
}

// refreshToken is one issued refresh token.
type refreshToken struct {
	fam       *family
	used      bool      // rotated away
	rotatedAt time.Time // when it was rotated away
	revoked   bool
	expires   time.Time
}

// accessToken is what the provider remembers of an issued access token.
type accessToken struct {
	fam     *family // nil for client credentials
	revoked bool
}

// IssuedTokens returns every access, ID and refresh token issued for users so
// far, so tests can prove none of them reached a browser.
func (p *Provider) IssuedTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.issued))
	for _, t := range p.issued {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Stats counts what the provider has seen; tests assert on it.
type Stats struct {
	// Authorizations counts successful /authorize redirects carrying a code.
	Authorizations int
	// AuthorizationCodeGrants counts authorization_code grants that issued tokens.
	AuthorizationCodeGrants int
	// RefreshTokenGrants counts refresh_token grants that issued tokens.
	RefreshTokenGrants int
	// ClientCredentialsGrants counts client_credentials grants that issued tokens.
	ClientCredentialsGrants int
	// RefreshRequests counts every refresh_token request by an authenticated client, successful or not.
	RefreshRequests int
	// AbandonedRefreshes counts held or delayed refresh requests whose client gave up first; they consume nothing.
	AbandonedRefreshes int
	// InvalidGrants counts invalid_grant answers.
	InvalidGrants int
	// FamilyRevocations counts token families revoked by reuse detection.
	FamilyRevocations int
	// ReuseIntervalGrants counts reused refresh tokens honoured inside the reuse interval.
	ReuseIntervalGrants int
	// Revocations counts /revoke requests by an authenticated client (RFC 7009 answers 200 even for unknown tokens).
	Revocations int
	// DiscoveryRequests counts requests for the discovery document.
	DiscoveryRequests int
	// JWKSRequests counts requests for the key set.
	JWKSRequests int
	// EndSessions counts /end_session requests.
	EndSessions int
	// UserinfoRequests counts /userinfo requests.
	UserinfoRequests int
	// BackchannelLogouts counts logout tokens delivered with a 2xx answer.
	BackchannelLogouts int
	// BackchannelLogoutErrors counts logout tokens whose delivery failed.
	BackchannelLogoutErrors int
	// ExchangeRequests counts every token exchange request by an authenticated client, successful or not.
	ExchangeRequests int
	// TokenExchanges counts token exchanges that issued a token (per
	// session and audience: [Provider.ExchangeCounts]).
	TokenExchanges int
	// PrivateKeyJWTAuths counts client assertions accepted (RFC 7523).
	PrivateKeyJWTAuths int
	// ReplayedAssertions counts client assertions refused for a jti seen before.
	ReplayedAssertions int
	// TLSClientAuths counts requests authenticated by a client certificate (RFC 8705).
	TLSClientAuths int
	// PushedAuthorizationRequests counts accepted PAR requests (RFC 9126).
	PushedAuthorizationRequests int
	// ResourceRefreshes counts refresh_token grants with RFC 8707 resource
	// that issued tokens (also in RefreshTokenGrants; per session and
	// resource: [Provider.ResourceRefreshCounts]).
	ResourceRefreshes int
	// DPoPProofs counts token requests that carried a DPoP header.
	DPoPProofs int
	// DPoPNonceChallenges counts use_dpop_nonce answers.
	DPoPNonceChallenges int
	// DPoPBoundTokens counts access tokens issued bound to a DPoP key (cnf.jkt).
	DPoPBoundTokens int
}

// AudienceKey names one user session at the provider and one target.
type AudienceKey struct {
	// SID is the provider session (`sid`) of the subject token or refresh token.
	SID string
	// Audience is the issued token's `aud`, several joined by one space in request order.
	Audience string
}

// NewProvider validates cfg, applies defaults and generates the first signing key.
func NewProvider(cfg ProviderConfig) (*Provider, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	k, err := newSigningKey(cfg.Rand)
	if err != nil {
		return nil, err
	}
	p := &Provider{
		cfg:           cfg,
		clients:       make(map[string]Client, len(cfg.Clients)),
		issuer:        cfg.Issuer,
		keys:          []signingKey{k},
		codes:         map[string]*authCode{},
		sessions:      map[string]*opSession{},
		refreshTokens: map[string]*refreshToken{},
		accessTokens:  map[string]*accessToken{},

		exchanges:         map[AudienceKey]int{},
		exchangeLog:       map[AudienceKey][]Exchange{},
		resourceRefreshes: map[AudienceKey]int{},
		assertionJTIs:     map[string]time.Time{},
		pushed:            map[string]*pushedRequest{},
	}
	for _, c := range cfg.Clients {
		p.clients[c.ID] = c
	}
	return p, nil
}

// Issuer returns the current issuer URL ("" until one is set).
func (p *Provider) Issuer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issuer
}

// SetIssuer sets the issuer once the listener's address is known (e.g. an httptest.Server's URL).
func (p *Provider) SetIssuer(issuer string) error {
	issuer = strings.TrimSuffix(issuer, "/")
	if err := validateIssuer(issuer); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer = issuer
	return nil
}

// Start listens on addr (e.g. "127.0.0.1:0"), serves Handler there over plain
// HTTP and returns the issuer, "http://" plus the bound address. Close stops it.
func (p *Provider) Start(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("oidctest: listen: %w", err)
	}
	return p.Serve(l)
}

// Serve serves Handler on l in the background, sets the issuer to
// "http://" plus l's address and returns it. Close stops it.
func (p *Provider) Serve(l net.Listener) (string, error) {
	issuer := "http://" + l.Addr().String()
	if err := p.SetIssuer(issuer); err != nil {
		_ = l.Close()
		return "", err
	}
	srv := &http.Server{Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	if p.srv != nil {
		p.mu.Unlock()
		_ = l.Close()
		return "", errors.New("oidctest: already serving")
	}
	p.srv = srv
	p.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
	return issuer, nil
}

// Close stops the server started by Start or Serve; it is a no-op otherwise.
func (p *Provider) Close() error {
	p.mu.Lock()
	srv, msrv := p.srv, p.mtlsSrv
	p.srv, p.mtlsSrv = nil, nil
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var errs []error
	for _, s := range []*http.Server{srv, msrv} {
		if s != nil {
			errs = append(errs, s.Shutdown(ctx))
		}
	}
	return errors.Join(errs...)
}

// Endpoint paths, relative to the issuer.
const (
	PathDiscovery  = "/.well-known/openid-configuration"
	PathJWKS       = "/jwks"
	PathAuthorize  = "/authorize"
	PathToken      = "/token"
	PathUserinfo   = "/userinfo"
	PathRevoke     = "/revoke"
	PathEndSession = "/end_session"
)

// Handler serves the provider's endpoints under the issuer's path.
func (p *Provider) Handler() http.Handler {
	return http.HandlerFunc(p.serveHTTP)
}

// serveHTTP dispatches on the path relative to the issuer.
func (p *Provider) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		writeJSON(w, http.StatusServiceUnavailable, oauthError{Error: "temporarily_unavailable", Description: "provider is down"})
		return
	}
	issuer := p.Issuer()
	if issuer == "" {
		writeJSON(w, http.StatusServiceUnavailable, oauthError{Error: "temporarily_unavailable", Description: "issuer not set"})
		return
	}
	prefix := ""
	if u, err := url.Parse(issuer); err == nil {
		prefix = u.Path
	}
	rel, ok := strings.CutPrefix(r.URL.Path, prefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch rel {
	case PathDiscovery:
		p.handleDiscovery(w, r, issuer)
	case PathJWKS:
		p.handleJWKS(w, r)
	case PathAuthorize:
		p.handleAuthorize(w, r, issuer)
	case PathToken:
		p.handleToken(w, r, issuer)
	case PathUserinfo:
		p.handleUserinfo(w, r, issuer)
	case PathRevoke:
		p.handleRevoke(w, r)
	case PathEndSession:
		p.handleEndSession(w, r, issuer)
	case PathPAR:
		p.handlePAR(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Stats returns a snapshot of the counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// IsRevoked reports whether a refresh token (or access token) issued by this
// provider has been revoked: by /revoke, by reuse detection or by the end of
// its session. Unknown tokens and tokens merely rotated away report false.
func (p *Provider) IsRevoked(token string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rt, ok := p.refreshTokens[token]; ok {
		return rt.revoked || rt.fam.revoked
	}
	var c struct {
		ID string `json:"jti"`
	}
	if verifyJWT(p.keys, token, &c) != nil {
		return false
	}
	at, ok := p.accessTokens[c.ID]
	return ok && (at.revoked || (at.fam != nil && at.fam.revoked))
}

// SetRefreshDelay makes every refresh_token grant wait d before it looks at
// the refresh token (0 turns it off); a client that gives up meanwhile
// consumes nothing.
func (p *Provider) SetRefreshDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refreshDelay = d
}

// HoldRefreshes makes refresh_token grants wait, before they look at the
// refresh token, until release is called; release is idempotent.
func (p *Provider) HoldRefreshes() (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.refreshGate = gate
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.refreshGate == gate {
				p.refreshGate = nil
			}
			p.mu.Unlock()
			close(gate)
		})
	}
}

// HoldNextRefreshes makes the next n refresh_token requests wait, before
// they look at the refresh token, until release is called; later requests
// pass. A held request whose client goes away consumes nothing.
func (p *Provider) HoldNextRefreshes(n int) (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.holdNext, p.holdNextGate = n, gate
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.holdNextGate == gate {
				p.holdNext, p.holdNextGate = 0, nil
			}
			p.mu.Unlock()
			close(gate)
		})
	}
}

// HoldRefreshResponses makes refresh_token grants run to completion (the
// presented token rotated away, new tokens issued) and then wait to answer
// until release is called: the provider has moved on while its answer is
// still on the way, as when a response is slow on the network. release is
// idempotent. A held answer whose client went away is lost, as on a real
// network; the tokens stay issued.
func (p *Provider) HoldRefreshResponses() (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.responseGate = gate
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.responseGate == gate {
				p.responseGate = nil
			}
			p.mu.Unlock()
			close(gate)
		})
	}
}

// HeldRefreshResponses is how many issued refresh answers wait at
// HoldRefreshResponses' gate now.
func (p *Provider) HeldRefreshResponses() int { return int(p.heldResponses.Load()) }

// RevocationLog returns every token presented to /revoke by an
// authenticated client so far, in order, whether or not it was known.
func (p *Provider) RevocationLog() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.revocationLog)
}

// HeldRefreshes is how many refresh requests are waiting at a hold now, so
// tests can wait for one to park instead of sleeping.
func (p *Provider) HeldRefreshes() int { return int(p.held.Load()) }

// SetReuseInterval honours a rotated-away refresh token presented again
// within d of its rotation, as Auth0's reuse interval and Okta's grace period
// do; 0 (the default) revokes the family on any reuse.
func (p *Provider) SetReuseInterval(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reuseInterval = d
}

// FamilyStats is what the provider saw of one token family (one login).
type FamilyStats struct {
	// SID is the provider session the family belongs to.
	SID string
	// ClientID is the client the family was issued to.
	ClientID string
	// RefreshGrants are the times (provider clock) of each successful refresh grant, in order.
	RefreshGrants []time.Time
	// Reuses counts refresh requests that presented a rotated-away token.
	Reuses int
	// ReuseIntervalGrants counts the reuses honoured inside the reuse interval.
	ReuseIntervalGrants int
	// Revoked reports whether the family has been revoked.
	Revoked bool
}

// Families returns what the provider saw of every token family, in creation order.
func (p *Provider) Families() []FamilyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]FamilyStats, 0, len(p.families))
	for _, f := range p.families {
		out = append(out, FamilyStats{
			SID:                 f.session.sid,
			ClientID:            f.clientID,
			RefreshGrants:       slices.Clone(f.grants),
			Reuses:              f.reuses,
			ReuseIntervalGrants: f.reuseIntervalGrants,
			Revoked:             f.revoked,
		})
	}
	return out
}

// SetDown makes every endpoint answer 503 while down is true.
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// SetAuthorizeError makes /authorize answer every valid request with an
// error redirect carrying code (e.g. "access_denied"); "" restores sign-in.
func (p *Provider) SetAuthorizeError(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authorizeError = code
}

// SetSilentLoginFails makes /authorize answer prompt=none with
// login_required (the user has no session at the provider), or, false,
// sign the user in silently as usual.
func (p *Provider) SetSilentLoginFails(fails bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noSilentLogin = fails
}

// LastAuthorizeRequest is a copy of the parameters of the last request to
// /authorize (nil before the first): what a relying party forwarded.
func (p *Provider) LastAuthorizeRequest() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastAuthorize == nil {
		return nil
	}
	out := url.Values{}
	for k, v := range p.lastAuthorize {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// RotateKey generates a new signing key and returns its kid; earlier keys
// stay in the JWKS so tokens they signed still verify.
func (p *Provider) RotateKey() (string, error) {
	k, err := newSigningKey(p.cfg.Rand)
	if err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = append(p.keys, k)
	return k.kid, nil
}

// KeyID returns the kid of the current signing key.
func (p *Provider) KeyID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[len(p.keys)-1].kid
}

// EndSession ends the provider session sid as /end_session would: its tokens
// are revoked and each client with a back-channel logout URI that took part
// is sent a logout token. It reports whether sid was a live session.
func (p *Provider) EndSession(ctx context.Context, sid string) bool {
	p.mu.Lock()
	s, ok := p.sessions[sid]
	var notify []Client
	if ok && !s.ended {
		notify = p.endSessionLocked(s)
	}
	p.mu.Unlock()
	p.sendBackchannelLogouts(ctx, sid, notify)
	return ok
}

// endSessionLocked ends s, revokes its tokens and returns the clients to notify.
func (p *Provider) endSessionLocked(s *opSession) []Client {
	s.ended = true
	delete(p.sessions, s.sid)
	for _, rt := range p.refreshTokens {
		if rt.fam.session == s {
			rt.fam.revoked = true
		}
	}
	for _, at := range p.accessTokens {
		if at.fam != nil && at.fam.session == s {
			at.fam.revoked = true
		}
	}
	var out []Client
	for id := range s.clients {
		if c := p.clients[id]; c.BackchannelLogoutURI != "" {
			out = append(out, c)
		}
	}
	return out
}

// now returns the injected clock's time.
func (p *Provider) now() time.Time { return p.cfg.Now() }

// random returns n random bytes, base64url without padding.
func (p *Provider) random(n int) string {
	b := make([]byte, n)
	if _, err := io.ReadFull(p.cfg.Rand, b); err != nil {
		// A broken random source must not yield guessable codes; fall back to crypto/rand.
		_, _ = rand.Read(b)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
