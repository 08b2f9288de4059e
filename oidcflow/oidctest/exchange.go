package oidctest

import (
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// RFC 8693 identifiers.
const (
	// GrantTypeTokenExchange is the token exchange grant_type.
	GrantTypeTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	// TokenTypeAccessToken is the one subject, requested and issued token type supported.
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// grantExchange implements RFC 8693 token exchange, as Keycloak's standard
// token exchange does for an internal token: the subject token is a live
// user access token of this provider, issued to the calling client (its
// client_id/azp) or naming the client in its `aud`; the new access token is
// for the requested audiences and resources, belongs to the subject token's
// family (so it is revoked with it: reuse detection, end of the provider
// session) and never outlives the provider session.
func (p *Provider) grantExchange(r *http.Request, c Client, form url.Values, issuer string) (*tokenResponse, *grantError) {
	p.mu.Lock()
	p.stats.ExchangeRequests++
	gate := p.exchangeGate
	p.mu.Unlock()
	if gate != nil {
		p.heldExchanges.Add(1)
		select {
		case <-gate:
			p.heldExchanges.Add(-1)
		case <-r.Context().Done():
			p.heldExchanges.Add(-1)
			return nil, &grantError{http.StatusServiceUnavailable, "temporarily_unavailable", "client went away"}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.failNext > 0:
		p.failNext--
		e := p.failNextError
		return nil, &e
	case p.exchangeError.code != "":
		e := p.exchangeError
		return nil, &e
	}
	switch {
	case !c.confidential() || !c.TokenExchange:
		return nil, &grantError{http.StatusBadRequest, "unauthorized_client", "client not allowed to exchange tokens"}
	case form.Get("subject_token") == "":
		return nil, &grantError{http.StatusBadRequest, "invalid_request", "subject_token missing"}
	case form.Get("subject_token_type") != TokenTypeAccessToken:
		return nil, &grantError{http.StatusBadRequest, "invalid_request", "subject_token_type must be " + TokenTypeAccessToken}
	case form.Has("requested_token_type") && form.Get("requested_token_type") != TokenTypeAccessToken:
		return nil, &grantError{http.StatusBadRequest, "invalid_request", "requested_token_type not supported: only " + TokenTypeAccessToken}
	case form.Has("actor_token") || form.Has("actor_token_type"):
		return nil, &grantError{http.StatusBadRequest, "invalid_request", "actor_token not supported"}
	case len(form["audience"]) == 0 && len(form["resource"]) == 0:
		return nil, &grantError{http.StatusBadRequest, "invalid_request", "audience or resource required"}
	}
	now := p.now()
	fam, gerr := p.subjectLocked(form.Get("subject_token"), c, issuer, now)
	if gerr != nil {
		return nil, gerr
	}
	targets, gerr := p.targetsLocked(form["audience"], form["resource"])
	if gerr != nil {
		return nil, gerr
	}
	var allowed []string
	for _, t := range targets {
		for _, s := range p.cfg.Audiences[t] {
			if !slices.Contains(allowed, s) {
				allowed = append(allowed, s)
			}
		}
	}
	scope := form.Get("scope")
	if scope == "" {
		scope = strings.Join(allowed, " ")
	} else if !subsetScope(scope, strings.Join(allowed, " ")) {
		return nil, &grantError{http.StatusBadRequest, "invalid_scope", "scope not allowed for the requested audience"}
	}
	at, jti, exp, gerr := p.signUserAccessTokenLocked(fam, c.ID, audClaim(targets), scope, now, issuer, "")
	if gerr != nil {
		return nil, gerr
	}
	p.accessTokens[jti] = &accessToken{fam: fam}
	fam.jtis = append(fam.jtis, jti)
	fam.session.clients[c.ID] = true
	p.issued = append(p.issued, at)
	p.stats.TokenExchanges++
	key := AudienceKey{SID: fam.session.sid, Audience: strings.Join(targets, " ")}
	p.exchanges[key]++
	p.exchangeLog[key] = append(p.exchangeLog[key], Exchange{Issued: now, Expires: time.Unix(exp.Unix(), 0)})
	return &tokenResponse{
		AccessToken: at, IssuedTokenType: TokenTypeAccessToken, TokenType: "Bearer",
		ExpiresIn: int64(exp.Sub(now).Seconds()), Scope: scope,
	}, nil
}

// subjectLocked returns the family of a subject token that is a live user
// access token of this issuer the client may exchange, or invalid_grant.
func (p *Provider) subjectLocked(tok string, c Client, issuer string, now time.Time) (*family, *grantError) {
	var claims struct {
		Issuer   string   `json:"iss"`
		ID       string   `json:"jti"`
		Expiry   int64    `json:"exp"`
		Audience audience `json:"aud"`
	}
	if verifyJWT(p.keys, tok, &claims) != nil || claims.Issuer != issuer {
		return nil, invalidGrant("subject_token not issued by this provider")
	}
	at, ok := p.accessTokens[claims.ID]
	switch {
	case !ok:
		return nil, invalidGrant("subject_token unknown")
	case at.fam == nil:
		return nil, invalidGrant("subject_token is not a user token")
	case now.Unix() >= claims.Expiry:
		return nil, invalidGrant("subject_token expired")
	case at.revoked || at.fam.revoked:
		return nil, invalidGrant("subject_token revoked")
	case at.fam.session.ended:
		return nil, invalidGrant("session ended")
	case p.sessionExpiredLocked(at.fam.session, now):
		return nil, invalidGrant("session expired")
	case at.fam.clientID != c.ID && !slices.Contains(claims.Audience, c.ID):
		return nil, invalidGrant("subject_token was not issued to this client")
	}
	return at.fam, nil
}

// targetsLocked checks RFC 8693 audience and RFC 8707 resource values
// against ProviderConfig.Audiences and returns them deduplicated in order;
// a resource must be an absolute URI without fragment.
func (p *Provider) targetsLocked(audiences, resources []string) ([]string, *grantError) {
	var out []string
	for i, t := range slices.Concat(audiences, resources) {
		if i >= len(audiences) {
			if u, err := url.Parse(t); err != nil || !u.IsAbs() || u.Fragment != "" || strings.Contains(t, "#") {
				return nil, &grantError{http.StatusBadRequest, "invalid_target", "resource must be an absolute URI without fragment"}
			}
		}
		if _, ok := p.cfg.Audiences[t]; !ok {
			return nil, &grantError{http.StatusBadRequest, "invalid_target", "unknown audience or resource"}
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// SetExchangeError makes every token exchange by an authenticated client
// answer status with the error code: 503 "temporarily_unavailable" for a
// transient failure, 400 "invalid_grant" (or any code) for a refusal. ""
// restores exchanges. FailNextExchanges takes precedence while it lasts.
func (p *Provider) SetExchangeError(code string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exchangeError = grantError{status: status, code: code, desc: "token exchange failed by test hook"}
}

// FailNextExchanges makes the next n token exchanges answer status with the
// error code, as SetExchangeError does; later ones pass. 0 cancels.
func (p *Provider) FailNextExchanges(n int, code string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = n
	p.failNextError = grantError{status: status, code: code, desc: "token exchange failed by test hook"}
}

// HoldExchanges makes token exchanges wait, before they look at anything,
// until release is called (idempotent); a held exchange whose client goes
// away answers 503 and issues nothing.
func (p *Provider) HoldExchanges() (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.exchangeGate = gate
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.exchangeGate == gate {
				p.exchangeGate = nil
			}
			p.mu.Unlock()
			close(gate)
		})
	}
}

// HeldExchanges is how many token exchanges wait at HoldExchanges' gate now.
func (p *Provider) HeldExchanges() int { return int(p.heldExchanges.Load()) }

// ExchangeCounts returns, per provider session and audience, how many token
// exchanges issued a token: a test asserts one exchange per expiry per
// session and profile with it.
func (p *Provider) ExchangeCounts() map[AudienceKey]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.exchanges)
}

// Exchange is one token exchange that issued a token: when, and the
// token's `exp` (whole seconds, as in the token).
type Exchange struct {
	Issued, Expires time.Time
}

// ExchangeLog returns, per provider session and audience, the token
// exchanges that issued a token, in order: a test holds each one to the
// expiry of the token before it.
func (p *Provider) ExchangeLog() map[AudienceKey][]Exchange {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[AudienceKey][]Exchange, len(p.exchangeLog))
	for k, v := range p.exchangeLog {
		out[k] = slices.Clone(v)
	}
	return out
}

// ResourceRefreshCounts returns, per provider session and resource, how
// many refresh grants with RFC 8707 resource issued tokens.
func (p *Provider) ResourceRefreshCounts() map[AudienceKey]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.resourceRefreshes)
}
