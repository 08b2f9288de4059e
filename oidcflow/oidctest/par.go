package oidctest

import (
	"net/http"
	"net/url"
	"slices"
	"time"
)

// PathPAR is the RFC 9126 pushed authorization request endpoint, relative to the issuer.
const PathPAR = "/par"

// parLifetime is how long a request_uri may be used (once).
const parLifetime = 60 * time.Second

// requestURIPrefix starts every request_uri the provider issues.
const requestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// pushedRequest is one stored authorization request.
type pushedRequest struct {
	clientID string
	params   url.Values
	expires  time.Time
}

// handlePAR serves the PAR endpoint: an authenticated client pushes its
// authorization request and gets a one-time request_uri for /authorize.
func (p *Provider) handlePAR(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	c, ok := p.clientForm(w, r)
	if !ok {
		return
	}
	form := r.PostForm
	if form.Has("request_uri") {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "request_uri must not be pushed")
		return
	}
	if len(form["redirect_uri"]) != 1 || !slices.Contains(c.RedirectURIs, form.Get("redirect_uri")) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "redirect_uri is not registered for this client")
		return
	}
	params := url.Values{}
	for k, vs := range form {
		switch k {
		case "client_secret", "client_assertion", "client_assertion_type":
			continue // the client's credentials are not part of the request
		}
		params[k] = slices.Clone(vs)
	}
	params.Set("client_id", c.ID)
	uri := requestURIPrefix + p.random(24)
	now := p.now()
	p.mu.Lock()
	for k, pr := range p.pushed {
		if now.After(pr.expires) {
			delete(p.pushed, k)
		}
	}
	p.pushed[uri] = &pushedRequest{clientID: c.ID, params: params, expires: now.Add(parLifetime)}
	p.stats.PushedAuthorizationRequests++
	p.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"request_uri": uri, "expires_in": int(parLifetime.Seconds())})
}

// resolvePushed replaces an authorization request by the pushed one its
// request_uri names (one-time, unexpired, the same client), or answers an
// error page and reports false. Without request_uri it passes q on unless
// the provider requires PAR.
func (p *Provider) resolvePushed(w http.ResponseWriter, q url.Values) (url.Values, bool) {
	if !q.Has("request_uri") {
		if p.cfg.RequirePAR {
			writePage(w, http.StatusBadRequest, "Pushed authorization request required", "This provider accepts only pushed authorization requests (request_uri).")
			return nil, false
		}
		return q, true
	}
	uri := q.Get("request_uri")
	p.mu.Lock()
	pr, ok := p.pushed[uri]
	delete(p.pushed, uri)
	p.mu.Unlock()
	if len(q["request_uri"]) != 1 || !ok || p.now().After(pr.expires) || len(q["client_id"]) != 1 || q.Get("client_id") != pr.clientID {
		writePage(w, http.StatusBadRequest, "Invalid request_uri", "The request_uri is unknown, used, expired or belongs to another client.")
		return nil, false
	}
	return pr.params, true
}
