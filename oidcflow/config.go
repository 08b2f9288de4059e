package oidcflow

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/envoy-bff/envoy-bff/session"
)

// Config is the `oidc:` section of envoy-bff's config file: who the
// provider is, who envoy-bff is to it, and where the browser endpoints live.
type Config struct {
	// Issuer is the provider's issuer URL exactly as its discovery document
	// and ID tokens spell it (no trailing slash unless the provider has one).
	Issuer string `yaml:"issuer"`
	// ClientID is envoy-bff's client_id at the provider.
	ClientID string `yaml:"client_id"`
	// ClientSecret authenticates envoy-bff at the token and revocation
	// endpoints. It is required unless ClientAuth is ClientAuthNone: a BFF is
	// a confidential client (OAuth 2.0 for Browser-Based Apps, BFF section).
	ClientSecret string `yaml:"client_secret"`
	// ClientAuth is how envoy-bff authenticates to the provider:
	// client_secret_basic, client_secret_post, or none (a public client,
	// PKCE alone: only on purpose). Empty picks from the discovery
	// document's token_endpoint_auth_methods_supported: basic when listed
	// (or nothing is listed: the OpenID Connect default), else post.
	ClientAuth string `yaml:"client_auth"`
	// RedirectURL is the absolute callback URL registered at the provider.
	// It is the only source of redirect_uri: request headers such as Host or
	// X-Forwarded-Host never change it. Its path must be PathPrefix+"/callback".
	RedirectURL string `yaml:"redirect_url"`
	// Scopes are requested at login; they must include openid.
	Scopes []string `yaml:"scopes"`
	// PathPrefix is where the browser endpoints are served (default /bff).
	PathPrefix string `yaml:"path_prefix"`
	// PostLogoutRedirectURL, if set, is the absolute URL the provider sends
	// the browser to after logout; it must be registered at the provider.
	PostLogoutRedirectURL string `yaml:"post_logout_redirect_url"`
	// ProviderTimeout bounds every single call to the provider.
	ProviderTimeout time.Duration `yaml:"provider_timeout"`
	// RefreshLeadTime is how long before the access token's expiry the
	// Refresher renews it; it never exceeds half the token's lifetime.
	RefreshLeadTime time.Duration `yaml:"refresh_lead_time"`
	// ClientTokens are the client-credentials tokens routes with the client
	// and user_or_client policies send, by name ("default" unless a route
	// names another). Each needs the client secret.
	ClientTokens map[string]ClientTokenConfig `yaml:"client_tokens"`
	// RevokeTokens revokes a session's refresh token at the provider's RFC
	// 7009 endpoint (when it has one) whenever the session ends: logout,
	// back-channel logout, administration.
	RevokeTokens bool `yaml:"revoke_tokens"`
	// UserinfoClaims merges the provider's UserInfo claims into the
	// session's claims (/user, identity headers, claim requirements): asked
	// once after the code exchange and once after each refresh grant, never
	// per request. UserInfo adds and updates profile claims but never the
	// ID token's protocol claims (protectedClaims), and its sub must be the
	// ID token's. The provider must list a userinfo_endpoint.
	UserinfoClaims bool `yaml:"userinfo_claims"`
	// DPoP asks the provider for DPoP-bound access tokens (RFC 9449): each
	// session gets its own key pair at login, token requests carry proofs
	// by it, and Check sends `Authorization: DPoP <token>` with a fresh
	// proof for each API request. The key never leaves envoy-bff.
	DPoP bool `yaml:"dpop"`
	// DPoPAlg is the DPoP signing algorithm: ES256 or EdDSA (Ed25519).
	// Empty chooses EdDSA when the provider lists it in
	// dpop_signing_alg_values_supported (half the signing CPU per Check),
	// else ES256, which every provider that supports DPoP accepts.
	DPoPAlg string `yaml:"dpop_alg"`
}

// ClientTokenConfig is one client-credentials token: what to ask the token
// endpoint for. One token per name is cached in the session store and shared
// by every replica.
type ClientTokenConfig struct {
	// Scopes are requested with the grant (none: the provider's default).
	Scopes []string `yaml:"scopes"`
	// Audience is sent as the `audience` parameter (Auth0, Okta and others
	// choose the API by it).
	Audience string `yaml:"audience"`
	// Resource is sent as the RFC 8707 `resource` parameter: an absolute URI.
	Resource string `yaml:"resource"`
}

// Client authentication methods (ClientAuth).
const (
	ClientAuthBasic = "client_secret_basic"
	ClientAuthPost  = "client_secret_post"
	ClientAuthNone  = "none"
)

// DefaultClientToken is the client token a route gets when it names none.
const DefaultClientToken = "default"

// Limits that Validate enforces.
const (
	maxProviderTimeout = time.Minute
	maxRefreshLead     = time.Hour
)

// DefaultConfig is what a config file overrides: the standard scopes with
// offline_access (so sessions can refresh), the /bff prefix, a 5s provider
// timeout and a 60s refresh lead. Issuer, client and redirect URL have no
// defaults.
func DefaultConfig() Config {
	return Config{
		Scopes:          []string{"openid", "profile", "email", "offline_access"},
		PathPrefix:      "/bff",
		ProviderTimeout: 5 * time.Second,
		RefreshLeadTime: 60 * time.Second,
		RevokeTokens:    true,
	}
}

// Validate reports every bad field at once, each error reading
// "<field>: <problem>" with the field path relative to the oidc section. No
// error repeats the client secret.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	switch {
	case c.Issuer == "":
		bad("issuer", "required")
	case !isAbsHTTPURL(c.Issuer, true):
		bad("issuer", "must be an absolute http(s) URL without query or fragment")
	}
	if c.ClientID == "" {
		bad("client_id", "required")
	} else if strings.ContainsFunc(c.ClientID, isCtlOrSpace) {
		bad("client_id", "must not contain spaces or control characters")
	}
	if strings.ContainsFunc(c.ClientSecret, isCtl) {
		bad("client_secret", "must not contain control characters")
	}
	switch c.ClientAuth {
	case "", ClientAuthBasic, ClientAuthPost:
		if c.ClientSecret == "" {
			bad("client_secret", "required: envoy-bff is a confidential client (set client_auth: none to run it as a public client on purpose)")
		}
	case ClientAuthNone:
		if c.ClientSecret != "" {
			bad("client_secret", "must be empty with client_auth: none")
		}
	default:
		bad("client_auth", "must be one of %s, %s or %s, got %q", ClientAuthBasic, ClientAuthPost, ClientAuthNone, c.ClientAuth)
	}
	prefixOK := validPathPrefix(c.PathPrefix)
	if !prefixOK {
		bad("path_prefix", "must be a path such as /bff: a leading /, no trailing /, no //, no spaces, ? or #")
	}
	switch {
	case c.RedirectURL == "":
		bad("redirect_url", "required")
	case !isAbsHTTPURL(c.RedirectURL, false):
		bad("redirect_url", "must be an absolute http(s) URL")
	case prefixOK:
		if u, _ := url.Parse(c.RedirectURL); u.Path != c.PathPrefix+"/callback" {
			bad("redirect_url", "path must be %s/callback, where the callback is served", c.PathPrefix)
		}
	}
	if !slices.Contains(c.Scopes, "openid") {
		bad("scopes", "must include openid")
	}
	for i, s := range c.Scopes {
		if !validScope(s) {
			bad(fmt.Sprintf("scopes[%d]", i), "must be a non-empty scope token without spaces, quotes or backslashes")
		}
	}
	if c.PostLogoutRedirectURL != "" && !isAbsHTTPURL(c.PostLogoutRedirectURL, false) {
		bad("post_logout_redirect_url", "must be an absolute http(s) URL")
	}
	if c.ProviderTimeout <= 0 || c.ProviderTimeout > maxProviderTimeout {
		bad("provider_timeout", "must be between 1ns and %s, got %s", maxProviderTimeout, c.ProviderTimeout)
	}
	if c.RefreshLeadTime < 0 || c.RefreshLeadTime > maxRefreshLead {
		bad("refresh_lead_time", "must be between 0 and %s, got %s", maxRefreshLead, c.RefreshLeadTime)
	}
	switch c.DPoPAlg {
	case "", DPoPAlgES256, DPoPAlgEdDSA:
	default:
		bad("dpop_alg", "must be %s or %s, got %q", DPoPAlgES256, DPoPAlgEdDSA, c.DPoPAlg)
	}
	for _, name := range slices.Sorted(maps.Keys(c.ClientTokens)) {
		field := fmt.Sprintf("client_tokens[%q]", name)
		ct := c.ClientTokens[name]
		if !session.ValidClientTokenName(name) {
			bad(field, "name must be 1-64 characters of a-z, 0-9, _ and -")
		}
		if c.ClientAuth == ClientAuthNone {
			bad(field, "needs client authentication: a public client (client_auth: none) cannot use the client_credentials grant")
		}
		for i, sc := range ct.Scopes {
			if !validScope(sc) {
				bad(fmt.Sprintf("%s.scopes[%d]", field, i), "must be a non-empty scope token without spaces, quotes or backslashes")
			}
		}
		if strings.ContainsFunc(ct.Audience, isCtl) {
			bad(field+".audience", "must not contain control characters")
		}
		if ct.Resource != "" {
			if u, err := url.Parse(ct.Resource); err != nil || !u.IsAbs() || u.Fragment != "" || strings.ContainsFunc(ct.Resource, isCtlOrSpace) {
				bad(field+".resource", "must be an absolute URI without a fragment (RFC 8707)")
			}
		}
	}
	return errors.Join(errs...)
}

// isAbsHTTPURL reports whether s is an absolute http(s) URL with a host, no
// userinfo and no fragment; issuer also forbids a query.
func isAbsHTTPURL(s string, issuer bool) bool {
	if strings.ContainsFunc(s, isCtlOrSpace) {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return false
	}
	return !issuer || (u.RawQuery == "" && !u.ForceQuery)
}

// validPathPrefix accepts "/seg[/seg…]" of URL path characters.
func validPathPrefix(p string) bool {
	if len(p) < 2 || p[0] != '/' || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return false
	}
	return !strings.ContainsFunc(p, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`?#%\"<>`, r)
	})
}

// validScope accepts one non-empty RFC 6749 scope token.
func validScope(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r >= 0x7f })
}

func isCtl(r rune) bool        { return r < ' ' || r == 0x7f }
func isCtlOrSpace(r rune) bool { return r <= ' ' || r == 0x7f }
