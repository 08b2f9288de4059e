package oidctest

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// handleUserinfo answers the demo user's claims for a live user access token.
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	p.mu.Lock()
	p.stats.UserinfoRequests++
	p.mu.Unlock()
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" || !p.liveUserToken(tok, issuer) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeOAuthError(w, http.StatusUnauthorized, "invalid_token", "access token invalid, expired or revoked")
		return
	}
	u := p.cfg.User
	claims := map[string]any{
		"sub": u.Subject, "name": u.Name, "email": u.Email, "email_verified": true, "preferred_username": u.PreferredUsername,
	}
	p.mu.Lock()
	status := p.userInfoError
	maps.Copy(claims, p.userInfo[u.Subject])
	p.mu.Unlock()
	if status != 0 {
		writeOAuthError(w, status, "server_error", "userinfo failure injected by the test")
		return
	}
	writeJSON(w, http.StatusOK, claims)
}

// SetUserInfo makes /userinfo answer claims on top of the user's own for
// the user whose `sub` is sub: claims only UserInfo carries, or overrides
// of the ID token's (even of `sub`, to test a relying party's subject
// check). nil drops them. The provider signs in one user
// (ProviderConfig.User), so only its subject is ever asked for.
func (p *Provider) SetUserInfo(sub string, claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.userInfo == nil {
		p.userInfo = map[string]map[string]any{}
	}
	if claims == nil {
		delete(p.userInfo, sub)
		return
	}
	p.userInfo[sub] = maps.Clone(claims)
}

// SetUserInfoError makes /userinfo answer every valid request with status
// (e.g. 500) and an OAuth error body; 0 answers claims again.
func (p *Provider) SetUserInfoError(status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userInfoError = status
}

// UserInfoCount is how many requests /userinfo has received, answered or
// not (Stats.UserinfoRequests).
func (p *Provider) UserInfoCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats.UserinfoRequests
}

// liveUserToken reports whether tok is an unexpired, unrevoked user access token of this issuer.
func (p *Provider) liveUserToken(tok, issuer string) bool {
	var c struct {
		Issuer string `json:"iss"`
		ID     string `json:"jti"`
		Expiry int64  `json:"exp"`
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if verifyJWT(p.keys, tok, &c) != nil || c.Issuer != issuer || now.Unix() >= c.Expiry {
		return false
	}
	at, ok := p.accessTokens[c.ID]
	return ok && at.fam != nil && !at.revoked && !at.fam.revoked
}

// handleRevoke implements RFC 7009: it revokes a refresh token (with its whole
// grant) or an access token of the calling client, and answers 200 whatever the token.
func (p *Provider) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	c, ok := p.clientForm(w, r)
	if !ok {
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" || len(r.PostForm["token"]) != 1 {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "exactly one token required")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Revocations++
	p.revocationLog = append(p.revocationLog, tok)
	if rt, ok := p.refreshTokens[tok]; ok {
		if rt.fam.clientID == c.ID {
			rt.revoked = true
			rt.fam.revoked = rt.fam.revoked || !p.cfg.RevokeOnlyPresentedToken
		}
	} else {
		var claims struct {
			ID       string `json:"jti"`
			ClientID string `json:"client_id"`
		}
		if verifyJWT(p.keys, tok, &claims) == nil && claims.ClientID == c.ID {
			if at, ok := p.accessTokens[claims.ID]; ok {
				at.revoked = true
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// handleEndSession implements RP-initiated logout.
func (p *Provider) handleEndSession(w http.ResponseWriter, r *http.Request, issuer string) {
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writePage(w, http.StatusBadRequest, "Bad request", "The logout request could not be parsed.")
		return
	}
	p.mu.Lock()
	p.stats.EndSessions++
	p.mu.Unlock()
	q := r.Form
	var hint struct {
		Issuer   string   `json:"iss"`
		Audience audience `json:"aud"`
		Sid      string   `json:"sid"`
		Subject  string   `json:"sub"`
	}
	clientID := q.Get("client_id")
	if h := q.Get("id_token_hint"); h != "" {
		p.mu.Lock()
		err := verifyJWT(p.keys, h, &hint)
		p.mu.Unlock()
		if err != nil || hint.Issuer != issuer || len(hint.Audience) != 1 || hint.Subject != p.cfg.User.Subject {
			writePage(w, http.StatusBadRequest, "Invalid logout request", "The id_token_hint was not issued by this provider.")
			return
		}
		if clientID != "" && clientID != hint.Audience[0] {
			writePage(w, http.StatusBadRequest, "Invalid logout request", "client_id does not match the id_token_hint.")
			return
		}
		clientID = hint.Audience[0]
	}
	redirect := q.Get("post_logout_redirect_uri")
	if redirect != "" {
		c, ok := p.clients[clientID]
		if !ok || !slices.Contains(c.PostLogoutRedirectURIs, redirect) {
			writePage(w, http.StatusBadRequest, "Invalid logout request", "The post_logout_redirect_uri is not registered for this client.")
			return
		}
	}
	if hint.Sid != "" {
		p.EndSession(context.WithoutCancel(r.Context()), hint.Sid)
	}
	if redirect != "" {
		redirectWith(w, redirect, url.Values{"state": {q.Get("state")}})
		return
	}
	writePage(w, http.StatusOK, "Signed out", "You have been signed out of the test provider.")
}

// audience decodes an `aud` claim, a string or an array of strings.
type audience []string

// UnmarshalJSON accepts a string or an array of strings.
func (a *audience) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*a = audience{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("oidctest: aud is neither string nor array")
	}
	*a = many
	return nil
}

// sendBackchannelLogouts posts a logout token for sid to each client, counting the outcomes.
func (p *Provider) sendBackchannelLogouts(ctx context.Context, sid string, clients []Client) {
	for _, c := range clients {
		ok := p.postLogoutToken(ctx, c, sid) == nil
		p.mu.Lock()
		if ok {
			p.stats.BackchannelLogouts++
		} else {
			p.stats.BackchannelLogoutErrors++
		}
		p.mu.Unlock()
	}
}

// postLogoutToken delivers one logout token.
func (p *Provider) postLogoutToken(ctx context.Context, c Client, sid string) error {
	tok, err := p.MintLogoutToken(LogoutToken{Audience: c.ID, Sid: sid, Subject: p.cfg.User.Subject})
	if err != nil {
		return err
	}
	body := strings.NewReader(url.Values{"logout_token": {tok}}.Encode())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.BackchannelLogoutURI, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New("oidctest: back-channel logout answered " + resp.Status)
	}
	return nil
}

// BackchannelLogoutEvent is the events member that marks a logout token.
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutToken shapes a token minted by MintLogoutToken; zero fields take
// correct values, and the overrides let tests build every malformed variant.
type LogoutToken struct {
	// Audience is the `aud` (default: the first client's ID).
	Audience string
	// Sid is the `sid`; Subject the `sub`. A valid token has at least one.
	Sid, Subject string
	// IssuedAt is the `iat` (default: the provider's clock).
	IssuedAt time.Time
	// ExpiresIn sets `exp` after IssuedAt (default 2m; negative omits exp).
	ExpiresIn time.Duration
	// JTI is the `jti` (default random).
	JTI string
	// Issuer overrides the `iss` (default: the provider's issuer).
	Issuer string
	// Type overrides the `typ` header (default "logout+jwt").
	Type string
	// OmitType leaves the `typ` header out.
	OmitType bool
	// Events overrides the `events` claim (default the back-channel logout event).
	Events any
	// OmitEvents leaves the `events` claim out.
	OmitEvents bool
	// Nonce, when set, adds a `nonce` claim, which a logout token must not have.
	Nonce string
	// Extra adds or replaces claims last.
	Extra map[string]any
}

// MintLogoutToken signs a back-channel logout token with the current key.
func (p *Provider) MintLogoutToken(t LogoutToken) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.Audience == "" {
		t.Audience = p.cfg.Clients[0].ID
	}
	if t.IssuedAt.IsZero() {
		t.IssuedAt = p.now()
	}
	if t.ExpiresIn == 0 {
		t.ExpiresIn = 2 * time.Minute
	}
	if t.JTI == "" {
		t.JTI = p.random(16)
	}
	if t.Issuer == "" {
		t.Issuer = p.issuer
	}
	if t.Issuer == "" {
		return "", errors.New("oidctest: issuer not set")
	}
	typ := "logout+jwt"
	if t.Type != "" {
		typ = t.Type
	}
	if t.OmitType {
		typ = ""
	}
	claims := map[string]any{"iss": t.Issuer, "aud": t.Audience, "iat": t.IssuedAt.Unix(), "jti": t.JTI}
	if t.ExpiresIn > 0 {
		claims["exp"] = t.IssuedAt.Add(t.ExpiresIn).Unix()
	}
	if t.Sid != "" {
		claims["sid"] = t.Sid
	}
	if t.Subject != "" {
		claims["sub"] = t.Subject
	}
	switch {
	case t.OmitEvents:
	case t.Events != nil:
		claims["events"] = t.Events
	default:
		claims["events"] = map[string]any{BackchannelLogoutEvent: map[string]any{}}
	}
	if t.Nonce != "" {
		claims["nonce"] = t.Nonce
	}
	for k, v := range t.Extra {
		claims[k] = v
	}
	return p.keys[len(p.keys)-1].sign(typ, claims)
}
