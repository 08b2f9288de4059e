package oidcflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxPARResponse bounds a PAR answer: a request_uri and its lifetime.
const maxPARResponse = 64 << 10

// errPARRefused means the PAR endpoint refused the pushed request (4xx):
// the login fails with the provider's error code in the log.
var errPARRefused = errors.New("the provider refused the pushed authorization request")

// parResponse is RFC 9126 §2.2's answer.
type parResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

// newClientPost builds a form POST to a provider endpoint authenticated as
// the client: the secret methods here, private_key_jwt and tls_client_auth
// by clientAuthTransport on the way out (form gets client_id for them).
func newClientPost(ctx context.Context, cfg Config, d *discovered, endpoint string, form url.Values) (*http.Request, error) {
	form = cloneValues(form)
	if d.clientAuth != ClientAuthBasic {
		form.Set("client_id", cfg.ClientID)
	}
	if d.clientAuth == ClientAuthPost {
		form.Set("client_secret", cfg.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if d.clientAuth == ClientAuthBasic {
		req.SetBasicAuth(url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret))
	}
	return req, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// pushAuthorization sends the authorization request authURL carries to the
// PAR endpoint (RFC 9126) and returns the URL the browser goes to instead:
// the authorization endpoint with client_id and request_uri only, so
// nothing of the request (scopes, PKCE challenge, redirect_uri) travels
// through the browser. ctx is the login's: a DPoP key it carries
// (WithDPoPKey) reaches the PAR request through the transports.
func (h *Handler) pushAuthorization(ctx context.Context, d *discovered, authURL string) (string, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return "", fmt.Errorf("push authorization request: %w", err)
	}
	form := u.Query()
	form.Del("client_id") // newClientPost sets it as the method wants
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ProviderTimeout)
	defer cancel()
	req, err := newClientPost(ctx, h.cfg, d, d.par, form)
	if err != nil {
		return "", fmt.Errorf("push authorization request: %w", err)
	}
	resp, err := h.provider.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("push authorization request: %w: %w", ErrProviderUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPARResponse))
	if err != nil {
		return "", fmt.Errorf("push authorization request: %w: %w", ErrProviderUnavailable, err)
	}
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", fmt.Errorf("push authorization request: %w: status %d", ErrProviderUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK:
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		// Only the error code: the body is the provider's.
		return "", fmt.Errorf("%w: push authorization request: %w: status %d, error %s",
			errLoginFailed, errPARRefused, resp.StatusCode, safeCode(e.Error))
	}
	var pr parResponse
	if err := json.Unmarshal(body, &pr); err != nil || pr.RequestURI == "" || strings.ContainsFunc(pr.RequestURI, isCtlOrSpace) {
		return "", fmt.Errorf("push authorization request: %w: the answer carries no usable request_uri", ErrProviderUnavailable)
	}
	q := url.Values{"client_id": {h.cfg.ClientID}, "request_uri": {pr.RequestURI}}
	sep := "?"
	if strings.Contains(d.oauth2.Endpoint.AuthURL, "?") {
		sep = "&"
	}
	return d.oauth2.Endpoint.AuthURL + sep + q.Encode(), nil
}
