package oidctest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// maxFormBytes bounds request bodies of the form endpoints.
const maxFormBytes = 64 << 10

// tokenResponse is a successful RFC 6749 §5.1 answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// IssuedTokenType is RFC 8693's issued_token_type (token exchange only).
	IssuedTokenType string `json:"issued_token_type,omitempty"`
}

// grantError is a token endpoint failure.
type grantError struct {
	status int
	code   string
	desc   string
}

// invalidGrant is the invalid_grant failure with a description.
func invalidGrant(desc string) *grantError {
	return &grantError{status: http.StatusBadRequest, code: "invalid_grant", desc: desc}
}

// handleToken serves the token endpoint.
func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	form := r.PostForm
	for k, vs := range form {
		if len(vs) > 1 && !repeatable(form["grant_type"], k) {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", k+" repeated")
			return
		}
	}
	jkt, ok := p.dpopAtToken(w, r, issuer)
	if !ok {
		return
	}
	c, ok := p.authenticatedClient(w, r)
	if !ok {
		return
	}
	var (
		resp *tokenResponse
		gerr *grantError
	)
	switch form.Get("grant_type") {
	case "authorization_code":
		resp, gerr = p.grantCode(c, form, issuer, jkt)
	case "refresh_token":
		resp, gerr = p.grantRefresh(r, c, form, issuer, jkt)
		if gerr == nil {
			p.holdResponse(r.Context())
		}
	case "client_credentials":
		resp, gerr = p.grantClientCredentials(c, form, issuer)
	case GrantTypeTokenExchange:
		resp, gerr = p.grantExchange(r, c, form, issuer)
	case "":
		gerr = &grantError{http.StatusBadRequest, "invalid_request", "grant_type missing"}
	default:
		gerr = &grantError{http.StatusBadRequest, "unsupported_grant_type", "grant_type not supported"}
	}
	if gerr != nil {
		if gerr.code == "invalid_grant" {
			p.mu.Lock()
			p.stats.InvalidGrants++
			p.mu.Unlock()
		}
		writeOAuthError(w, gerr.status, gerr.code, gerr.desc)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// repeatable reports whether parameter k may repeat in a request of the
// grant type: RFC 8693's audience and resource, RFC 8707's resource.
func repeatable(grantType []string, k string) bool {
	if len(grantType) != 1 {
		return false
	}
	switch grantType[0] {
	case GrantTypeTokenExchange:
		return k == "audience" || k == "resource"
	case "refresh_token":
		return k == "resource"
	}
	return false
}

// clientForm reads a POSTed form (bounded) and authenticates its client,
// answering the request itself (400 invalid_request, 401 invalid_client)
// when either fails.
func (p *Provider) clientForm(w http.ResponseWriter, r *http.Request) (Client, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return Client{}, false
	}
	return p.authenticatedClient(w, r)
}

// authenticatedClient is authenticateClient answering 401 invalid_client
// (with a Basic challenge when Basic was tried) when it fails.
func (p *Provider) authenticatedClient(w http.ResponseWriter, r *http.Request) (Client, bool) {
	c, basic, ok := p.authenticateClient(r)
	if !ok {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return Client{}, false
	}
	return c, true
}

// authenticateClient applies private_key_jwt or tls_client_auth to the
// clients registered for them (strongAuth), else client_secret_basic,
// client_secret_post or, for public clients, none. basic reports whether Basic was attempted.
func (p *Provider) authenticateClient(r *http.Request) (c Client, basic, ok bool) {
	if c, handled, ok := p.strongAuth(r); handled { // private_key_jwt, tls_client_auth
		_, _, basic := r.BasicAuth()
		return c, basic, ok
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		if r.PostForm.Has("client_secret") {
			return Client{}, true, false
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return Client{}, true, false
		}
		if formID := r.PostForm.Get("client_id"); formID != "" && formID != id {
			return Client{}, true, false
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	c, known := p.clients[id]
	if !known {
		return Client{}, basic, false
	}
	if c.Secret == "" {
		return c, basic, secret == "" && !basic
	}
	if secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
		return Client{}, basic, false
	}
	return c, basic, true
}

// grantCode redeems an authorization code.
// jkt is the thumbprint of the request's DPoP key ("" without a proof):
// the tokens are bound to it, and a code asked with dpop_jkt is redeemed
// only with that key.
func (p *Provider) grantCode(c Client, form url.Values, issuer, jkt string) (*tokenResponse, *grantError) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	code := form.Get("code")
	ac, ok := p.codes[code]
	switch {
	case code == "" || !ok:
		return nil, invalidGrant("unknown authorization code")
	case ac.redeemed != nil:
		// RFC 6749 §4.1.2: a reused code revokes what it issued.
		if !ac.redeemed.revoked {
			ac.redeemed.revoked = true
			p.stats.FamilyRevocations++
		}
		return nil, invalidGrant("authorization code already used")
	case ac.clientID != c.ID:
		return nil, invalidGrant("code was issued to another client")
	}
	// From here on every outcome consumes the code.
	delete(p.codes, code)
	switch {
	case now.After(ac.expires):
		return nil, invalidGrant("authorization code expired")
	case form.Get("redirect_uri") != ac.redirectURI:
		return nil, invalidGrant("redirect_uri does not match the authorization request")
	case !verifyPKCE(form.Get("code_verifier"), ac.challenge):
		return nil, invalidGrant("PKCE verification failed")
	case ac.session.ended:
		return nil, invalidGrant("session ended")
	case ac.dpopJKT != "" && ac.dpopJKT != jkt:
		return nil, invalidGrant("DPoP key is not the one the authorization request named (dpop_jkt)")
	}
	fam := &family{clientID: c.ID, scope: ac.scope, nonce: ac.nonce, session: ac.session, jkt: jkt}
	p.families = append(p.families, fam)
	ac.redeemed = fam
	p.codes[code] = ac
	resp, err := p.issueLocked(fam, now, issuer, true, issueOpts{})
	if err != nil {
		return nil, err
	}
	p.stats.AuthorizationCodeGrants++
	return resp, nil
}

// grantRefresh redeems a refresh token, rotating it unless rotation is off.
// A rotated-away token presented again revokes its family, unless it comes
// back within the reuse interval (SetReuseInterval), which honours it. A
// `scope` narrows the new access token's scope within the original grant;
// RFC 8707 `resource` values (each a registered audience) become its `aud`.
// The refresh tokens of a DPoP-bound family are bound to its key too: a
// refresh without a proof by it is refused.
func (p *Provider) grantRefresh(r *http.Request, c Client, form url.Values, issuer, jkt string) (*tokenResponse, *grantError) {
	p.mu.Lock()
	p.stats.RefreshRequests++
	delay, gate := p.refreshDelay, p.refreshGate
	if gate == nil && p.holdNext > 0 {
		p.holdNext--
		gate = p.holdNextGate
	}
	p.mu.Unlock()
	if err := p.waitRefresh(r.Context(), gate, delay); err != nil {
		return nil, err
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	rt, ok := p.refreshTokens[form.Get("refresh_token")]
	switch {
	case !ok:
		return nil, invalidGrant("unknown refresh token")
	case rt.fam.clientID != c.ID:
		return nil, invalidGrant("refresh token was issued to another client")
	case rt.revoked || rt.fam.revoked:
		return nil, invalidGrant("refresh token revoked")
	case now.After(rt.expires):
		return nil, invalidGrant("refresh token expired")
	case rt.fam.session.ended:
		return nil, invalidGrant("session ended")
	case p.sessionExpiredLocked(rt.fam.session, now):
		return nil, invalidGrant("session expired")
	case rt.fam.jkt != jkt:
		return nil, invalidGrant("refresh token is bound to another DPoP key")
	}
	reuse := rt.used
	if reuse {
		rt.fam.reuses++
		if p.reuseInterval <= 0 || now.Sub(rt.rotatedAt) >= p.reuseInterval {
			rt.fam.revoked = true
			p.stats.FamilyRevocations++
			return nil, invalidGrant("refresh token reuse detected; token family revoked")
		}
	}
	scope := form.Get("scope")
	if scope != "" && !subsetScope(scope, rt.fam.scope) {
		return nil, &grantError{http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant"}
	}
	resources, gerr := p.targetsLocked(nil, form["resource"])
	if gerr != nil {
		return nil, gerr
	}
	rotate := !p.cfg.DisableRefreshRotation
	if rotate && !rt.used {
		rt.used = true
		rt.rotatedAt = now
	}
	resp, err := p.issueLocked(rt.fam, now, issuer, rotate, issueOpts{aud: resources, scope: scope})
	if err != nil {
		return nil, err
	}
	p.stats.RefreshTokenGrants++
	if len(resources) > 0 {
		p.stats.ResourceRefreshes++
		p.resourceRefreshes[AudienceKey{SID: rt.fam.session.sid, Audience: strings.Join(resources, " ")}]++
	}
	rt.fam.grants = append(rt.fam.grants, now)
	if reuse {
		p.stats.ReuseIntervalGrants++
		rt.fam.reuseIntervalGrants++
	}
	return resp, nil
}

// holdResponse waits at HoldRefreshResponses' gate, if one is set, or until the client gives up.
func (p *Provider) holdResponse(ctx context.Context) {
	p.mu.Lock()
	gate := p.responseGate
	p.mu.Unlock()
	if gate == nil {
		return
	}
	p.heldResponses.Add(1)
	defer p.heldResponses.Add(-1)
	select {
	case <-gate:
	case <-ctx.Done():
	}
}

// waitRefresh waits for the test hooks' gate and delay, or for the client to give up.
func (p *Provider) waitRefresh(ctx context.Context, gate <-chan struct{}, delay time.Duration) *grantError {
	var timer <-chan time.Time
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		timer = t.C
	}
	if gate != nil {
		p.held.Add(1)
		defer p.held.Add(-1)
	}
	for gate != nil || timer != nil {
		select {
		case <-gate:
			gate = nil
		case <-timer:
			timer = nil
		case <-ctx.Done():
			p.mu.Lock()
			p.stats.AbandonedRefreshes++
			p.mu.Unlock()
			return &grantError{http.StatusServiceUnavailable, "temporarily_unavailable", "client went away"}
		}
	}
	return nil
}

// grantClientCredentials issues an application token.
func (p *Provider) grantClientCredentials(c Client, form url.Values, issuer string) (*tokenResponse, *grantError) {
	if !c.confidential() {
		return nil, &grantError{http.StatusBadRequest, "unauthorized_client", "public clients cannot use client_credentials"}
	}
	aud := form.Get("audience")
	if aud == "" {
		aud = form.Get("resource")
	}
	if aud == "" {
		aud = p.cfg.Audience
	}
	scope := form.Get("scope")
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	jti := p.random(16)
	claims := map[string]any{
		"iss": issuer, "sub": c.ID, "aud": aud, "client_id": c.ID, "azp": c.ID, "jti": jti,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(p.cfg.AccessTokenTTL).Unix(),
	}
	if scope != "" {
		claims["scope"] = scope
	}
	at, err := p.keys[len(p.keys)-1].sign("at+jwt", claims)
	if err != nil {
		return nil, &grantError{http.StatusInternalServerError, "server_error", "signing failed"}
	}
	p.accessTokens[jti] = &accessToken{}
	p.stats.ClientCredentialsGrants++
	return &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(p.cfg.AccessTokenTTL / time.Second), Scope: scope}, nil
}

// issueOpts shape the access token issueLocked mints.
type issueOpts struct {
	aud   []string // its `aud` (default: ProviderConfig.Audience)
	scope string   // its scope (default: the family's)
}

// issueLocked mints an access token, an ID token when the scope has openid,
// and a new refresh token when withRT, all in fam.
func (p *Provider) issueLocked(fam *family, now time.Time, issuer string, withRT bool, o issueOpts) (*tokenResponse, *grantError) {
	key := p.keys[len(p.keys)-1]
	u := p.cfg.User
	s := fam.session
	scope := o.scope
	if scope == "" {
		scope = fam.scope
	}
	aud := any(p.cfg.Audience)
	if len(o.aud) > 0 {
		aud = audClaim(o.aud)
	}
	at, jti, exp, gerr := p.signUserAccessTokenLocked(fam, fam.clientID, aud, scope, now, issuer, fam.jkt)
	if gerr != nil {
		return nil, gerr
	}
	resp := &tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(exp.Sub(now) / time.Second), Scope: scope}
	if fam.jkt != "" {
		resp.TokenType = "DPoP"
		p.stats.DPoPBoundTokens++
	}
	var err error
	if hasScope(scope, "openid") {
		idClaims := map[string]any{
			"iss": issuer, "sub": u.Subject, "aud": fam.clientID, "azp": fam.clientID,
			"iat": now.Unix(), "exp": now.Add(p.cfg.IDTokenTTL).Unix(), "auth_time": s.authTime.Unix(),
			"name": u.Name, "email": u.Email, "email_verified": true, "preferred_username": u.PreferredUsername,
			"at_hash": atHash(at),
		}
		if fam.nonce != "" {
			idClaims["nonce"] = fam.nonce
		}
		if len(u.Groups) > 0 {
			idClaims["groups"] = u.Groups
		}
		if s.acr != "" {
			idClaims["acr"] = s.acr
		}
		if !p.cfg.OmitSID {
			idClaims["sid"] = s.sid
		}
		if resp.IDToken, err = key.sign("JWT", idClaims); err != nil {
			return nil, &grantError{http.StatusInternalServerError, "server_error", "signing failed"}
		}
	}
	if withRT {
		rt := p.random(32)
		p.refreshTokens[rt] = &refreshToken{fam: fam, expires: p.capLocked(s, now.Add(p.cfg.RefreshTokenTTL))}
		fam.refreshTokens = append(fam.refreshTokens, rt)
		resp.RefreshToken = rt
	}
	p.accessTokens[jti] = &accessToken{fam: fam}
	p.issued = append(p.issued, resp.AccessToken, resp.IDToken, resp.RefreshToken)
	fam.jtis = append(fam.jtis, jti)
	s.clients[fam.clientID] = true
	return resp, nil
}

// signUserAccessTokenLocked signs a user access token of fam's session for
// clientID with the given aud and scope; its exp is AccessTokenTTL from now,
// never past the session's end. The caller records it.
// A jkt binds it to that DPoP key (cnf.jkt, RFC 9449 §6.1).
func (p *Provider) signUserAccessTokenLocked(fam *family, clientID string, aud any, scope string, now time.Time, issuer, jkt string) (at, jti string, exp time.Time, gerr *grantError) {
	s := fam.session
	jti = p.random(16)
	exp = p.capLocked(s, now.Add(p.cfg.AccessTokenTTL))
	claims := map[string]any{
		"iss": issuer, "sub": p.cfg.User.Subject, "aud": aud, "client_id": clientID, "azp": clientID,
		"jti": jti, "iat": now.Unix(), "nbf": now.Unix(), "exp": exp.Unix(),
		"auth_time": s.authTime.Unix(),
	}
	if scope != "" {
		claims["scope"] = scope
	}
	if !p.cfg.OmitSID {
		claims["sid"] = s.sid
	}
	if jkt != "" {
		claims["cnf"] = map[string]string{"jkt": jkt}
	}
	at, err := p.keys[len(p.keys)-1].sign("at+jwt", claims)
	if err != nil {
		return "", "", time.Time{}, &grantError{http.StatusInternalServerError, "server_error", "signing failed"}
	}
	return at, jti, exp, nil
}

// sessionExpiredLocked reports whether s has outlived SessionMaxLifetime.
func (p *Provider) sessionExpiredLocked(s *opSession, now time.Time) bool {
	return p.cfg.SessionMaxLifetime > 0 && !now.Before(s.authTime.Add(p.cfg.SessionMaxLifetime))
}

// capLocked returns t, or the end of s by SessionMaxLifetime if that is earlier.
func (p *Provider) capLocked(s *opSession, t time.Time) time.Time {
	if p.cfg.SessionMaxLifetime > 0 {
		if end := s.authTime.Add(p.cfg.SessionMaxLifetime); end.Before(t) {
			return end
		}
	}
	return t
}

// audClaim is an `aud` claim: a string for one audience, an array for several.
func audClaim(aud []string) any {
	if len(aud) == 1 {
		return aud[0]
	}
	return aud
}

// verifyPKCE checks an RFC 7636 S256 code_verifier against the challenge in constant time.
func verifyPKCE(verifier, challenge string) bool {
	if !validPKCEValue(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// atHash is the OpenID Connect at_hash of an RS256-signed access token.
func atHash(at string) string {
	sum := sha256.Sum256([]byte(at))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// hasScope reports whether the space-separated scope list holds s.
func hasScope(scopes, s string) bool { return slices.Contains(strings.Fields(scopes), s) }

// subsetScope reports whether every scope in req is in granted.
func subsetScope(req, granted string) bool {
	for _, s := range strings.Fields(req) {
		if !hasScope(granted, s) {
			return false
		}
	}
	return true
}
