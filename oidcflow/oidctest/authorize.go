package oidctest

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// discovery is the provider's metadata document.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethods     []string `json:"revocation_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseISSSupported bool     `json:"authorization_response_iss_parameter_supported"`
	BackchannelLogoutSupported        bool     `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported bool     `json:"backchannel_logout_session_supported"`

	// FAPI 2.0: client authentication by key or certificate, PAR (RFC 9126), mTLS aliases (RFC 8705).
	TokenEndpointAuthSigningAlgs  []string          `json:"token_endpoint_auth_signing_alg_values_supported"`
	PAREndpoint                   string            `json:"pushed_authorization_request_endpoint"`
	RequirePAR                    bool              `json:"require_pushed_authorization_requests"`
	MTLSEndpointAliases           map[string]string `json:"mtls_endpoint_aliases,omitempty"`
	DPoPSigningAlgValuesSupported []string          `json:"dpop_signing_alg_values_supported"`
}

// handleDiscovery serves /.well-known/openid-configuration.
func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	p.mu.Lock()
	p.stats.DiscoveryRequests++
	p.mu.Unlock()
	auth := []string{"client_secret_basic", "client_secret_post", AuthPrivateKeyJWT, AuthTLSClient, "none"}
	var aliases map[string]string
	if m := p.mtlsIssuer(); m != "" {
		aliases = map[string]string{
			"token_endpoint":                        m + PathToken,
			"revocation_endpoint":                   m + PathRevoke,
			"pushed_authorization_request_endpoint": m + PathPAR,
			"userinfo_endpoint":                     m + PathUserinfo,
		}
	}
	writeJSON(w, http.StatusOK, discovery{
		Issuer:                            issuer,
		AuthorizationEndpoint:             issuer + PathAuthorize,
		TokenEndpoint:                     issuer + PathToken,
		JWKSURI:                           issuer + PathJWKS,
		UserinfoEndpoint:                  issuer + PathUserinfo,
		EndSessionEndpoint:                issuer + PathEndSession,
		RevocationEndpoint:                issuer + PathRevoke,
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeTokenExchange},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"RS256"},
		ScopesSupported:                   []string{"openid", "profile", "email", "offline_access"},
		ClaimsSupported:                   []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "sid", "name", "email", "email_verified", "preferred_username"},
		TokenEndpointAuthMethodsSupported: auth,
		RevocationEndpointAuthMethods:     auth,
		CodeChallengeMethodsSupported:     []string{"S256"},
		DPoPSigningAlgValuesSupported:     p.dpopAlgsListed(),
		AuthorizationResponseISSSupported: true,
		BackchannelLogoutSupported:        true,
		BackchannelLogoutSessionSupported: true,
		TokenEndpointAuthSigningAlgs:      []string{"PS256", "RS256", "ES256", "ES384"},
		PAREndpoint:                       issuer + PathPAR,
		RequirePAR:                        p.cfg.RequirePAR,
		MTLSEndpointAliases:               aliases,
	})
}

// handleJWKS serves the public keys.
func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	p.mu.Lock()
	p.stats.JWKSRequests++
	set := jwks(p.keys)
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	writeJSON(w, http.StatusOK, set)
}

// handleAuthorize signs the demo user in at once and redirects back with a code.
func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writePage(w, http.StatusBadRequest, "Bad request", "The authorization request could not be parsed.")
		return
	}
	q, ok := p.resolvePushed(w, r.Form)
	if !ok {
		return
	}
	c, ok := p.clients[q.Get("client_id")]
	if !ok || len(q["client_id"]) != 1 {
		writePage(w, http.StatusBadRequest, "Unknown client", "The client_id is not registered.")
		return
	}
	redirect := q.Get("redirect_uri")
	if len(q["redirect_uri"]) != 1 || !slices.Contains(c.RedirectURIs, redirect) {
		writePage(w, http.StatusBadRequest, "Invalid redirect_uri", "The redirect_uri is not registered for this client.")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) {
		redirectWith(w, redirect, url.Values{"error": {code}, "error_description": {desc}, "state": {state}, "iss": {issuer}})
	}
	// RFC 6749 §3.1: parameters must not repeat.
	for _, k := range []string{"response_type", "state", "nonce", "scope", "code_challenge", "code_challenge_method"} {
		if len(q[k]) > 1 {
			fail("invalid_request", k+" repeated")
			return
		}
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case q.Get("code_challenge") == "":
		fail("invalid_request", "code_challenge required (PKCE)")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !validPKCEValue(q.Get("code_challenge")):
		fail("invalid_request", "malformed code_challenge")
		return
	}
	now := p.now()
	p.mu.Lock()
	p.lastAuthorize = url.Values{}
	for k, v := range q {
		p.lastAuthorize[k] = append([]string(nil), v...)
	}
	if e := p.authorizeError; e != "" {
		p.mu.Unlock()
		fail(e, "authorization refused by test hook")
		return
	}
	silent := q.Get("prompt") == "none"
	if silent && p.noSilentLogin {
		p.mu.Unlock()
		fail("login_required", "the user must sign in")
		return
	}
	var s *opSession
	if p.cfg.BrowserSessions {
		s = p.browserSessionLocked(r)
		if s == nil && silent {
			p.mu.Unlock()
			fail("login_required", "no session at the provider for this browser")
			return
		}
	}
	p.sweepCodesLocked(now)
	if s == nil || !silent {
		s = &opSession{sid: p.random(16), authTime: now, acr: p.reachACR(q.Get("acr_values")), clients: map[string]bool{}}
		p.sessions[s.sid] = s
		if p.cfg.BrowserSessions {
			http.SetCookie(w, &http.Cookie{Name: browserSessionCookie, Value: s.sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		}
	}
	s.clients[c.ID] = true
	code := p.random(32)
	p.codes[code] = &authCode{
		clientID:    c.ID,
		redirectURI: redirect,
		challenge:   q.Get("code_challenge"),
		dpopJKT:     q.Get("dpop_jkt"),
		nonce:       q.Get("nonce"),
		scope:       q.Get("scope"),
		session:     s,
		expires:     now.Add(p.cfg.CodeTTL),
	}
	p.stats.Authorizations++
	p.mu.Unlock()
	redirectWith(w, redirect, url.Values{"code": {code}, "state": {state}, "iss": {issuer}})
}

// browserSessionCookie names the browser's session at the provider
// (ProviderConfig.BrowserSessions).
const browserSessionCookie = "oidctest_session"

// browserSessionLocked is the live provider session r's cookie names, or nil.
func (p *Provider) browserSessionLocked(r *http.Request) *opSession {
	ck, err := r.Cookie(browserSessionCookie)
	if err != nil {
		return nil
	}
	s := p.sessions[ck.Value]
	if s == nil || s.ended {
		return nil
	}
	return s
}

// reachACR is the acr a login asking for acrValues reaches (see
// ProviderConfig.ACRValues).
func (p *Provider) reachACR(acrValues string) string {
	if len(p.cfg.ACRValues) == 0 {
		return ""
	}
	for _, want := range strings.Fields(acrValues) {
		if slices.Contains(p.cfg.ACRValues, want) {
			return want
		}
	}
	return p.cfg.ACRValues[0]
}

// sweepCodesLocked forgets expired codes that were never redeemed, keeping
// redeemed ones so a late replay is still recognised as reuse.
func (p *Provider) sweepCodesLocked(now time.Time) {
	for k, c := range p.codes {
		if c.redeemed == nil && now.After(c.expires.Add(time.Minute)) {
			delete(p.codes, k)
		}
	}
}

// redirectWith answers 302 to base with params added to its query; empty values are left out.
func redirectWith(w http.ResponseWriter, base string, params url.Values) {
	u, err := url.Parse(base)
	if err != nil {
		writePage(w, http.StatusBadRequest, "Bad redirect", "The redirect URI is malformed.")
		return
	}
	q := u.Query()
	for k, vs := range params {
		if len(vs) == 1 && vs[0] == "" {
			continue
		}
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// validPKCEValue reports whether s is 43–128 characters of the RFC 7636 unreserved set.
func validPKCEValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_' || r == '~')
	}) < 0
}

// dpopAlgsListed is discovery's dpop_signing_alg_values_supported.
func (p *Provider) dpopAlgsListed() []string {
	if len(p.cfg.DPoPAlgs) > 0 {
		return p.cfg.DPoPAlgs
	}
	return DPoPAlgs
}
