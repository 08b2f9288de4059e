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
	// client_secret_basic, client_secret_post, private_key_jwt (RFC 7523,
	// ClientKeyFile), tls_client_auth (RFC 8705, TLSClientCertFile), or none
	// (a public client, PKCE alone: only on purpose). Empty picks from the
	// discovery document's token_endpoint_auth_methods_supported: basic when
	// listed (or nothing is listed: the OpenID Connect default), else post.
	// private_key_jwt and tls_client_auth MUST NOT have a ClientSecret: there
	// is no fallback to one.
	// Default: (from discovery).
	ClientAuth string `yaml:"client_auth"`
	// ClientKeyFile is the PEM private key (PKCS#8, PKCS#1 or SEC1; RSA of
	// at least 2048 bits, or EC P-256/P-384) that signs private_key_jwt
	// client assertions. It is read again when it changes (a bad new file
	// is logged and the old key kept). Required with private_key_jwt.
	ClientKeyFile string `yaml:"client_key_file"`
	// ClientKey is the same key inline, as PEM text (from a secret in the
	// environment, ENVOY_BFF_OIDC_CLIENT_KEY): set one of the two. It is
	// never logged; a config reload picks up a new value.
	ClientKey string `yaml:"client_key"`
	// ClientKeyID is the assertions' kid (default: the key's RFC 7638
	// thumbprint, as `envoy-bff jwks` prints it).
	// Default: (RFC 7638 thumbprint).
	ClientKeyID string `yaml:"client_key_id"`
	// ClientKeyAlg signs the assertions: default PS256 for RSA, ES256 for
	// P-256, ES384 for P-384; RS256 is allowed for RSA.
	// Default: `PS256` / `ES256` / `ES384`.
	ClientKeyAlg string `yaml:"client_key_alg"`
	// TLSClientCertFile and TLSClientKeyFile are the PEM client certificate
	// and its key that every TLS connection to the provider presents
	// (tls_client_auth, or mTLS-bound tokens with another method); the
	// provider's RFC 8705 mtls_endpoint_aliases are then used. Read again
	// when they change. Required with tls_client_auth.
	TLSClientCertFile string `yaml:"tls_client_cert_file"`
	// TLSClientKeyFile is the private key of TLSClientCertFile, PEM.
	TLSClientKeyFile string `yaml:"tls_client_key_file"`
	// PushedAuthorizationRequests is auto (default: when the provider's
	// discovery says require_pushed_authorization_requests), always or
	// never: with PAR (RFC 9126) login pushes the authorization request to
	// the provider and the browser carries only client_id and request_uri.
	PushedAuthorizationRequests string `yaml:"pushed_authorization_requests"`
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
	// CAFile, if set, is a PEM file of the CA certificates envoy-bff trusts
	// for the provider's TLS (instead of the system's roots): a provider
	// behind a private CA. Read at start and on config reload.
	CAFile string `yaml:"ca_file"`
	// DPoP asks the provider for DPoP-bound access tokens (RFC 9449): each
	// session gets its own key pair at login, token requests carry proofs
	// by it, and Check sends `Authorization: DPoP <token>` with a fresh
	// proof for each API request. The key never leaves envoy-bff.
	DPoP bool `yaml:"dpop"`
	// DPoPAlg is the DPoP signing algorithm: ES256 or EdDSA (Ed25519).
	// Empty chooses EdDSA when the provider lists it in
	// dpop_signing_alg_values_supported (half the signing CPU per Check),
	// else ES256, which every provider that supports DPoP accepts.
	// Default: (chosen).
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
	// ClientAuthPrivateKeyJWT signs a client assertion (RFC 7523) with ClientKeyFile.
	ClientAuthPrivateKeyJWT = "private_key_jwt"
	// ClientAuthTLS authenticates by the TLS client certificate (RFC 8705).
	ClientAuthTLS = "tls_client_auth"
)

// PushedAuthorizationRequests values.
const (
	PARAuto   = "auto"
	PARAlways = "always"
	PARNever  = "never"
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
	case ClientAuthPrivateKeyJWT, ClientAuthTLS:
		if c.ClientSecret != "" {
			// No silent fallback to a shared secret (T79).
			bad("client_secret", "must be empty with client_auth: %s (there is no fallback to a secret)", c.ClientAuth)
		}
	default:
		bad("client_auth", "must be one of %s, %s, %s, %s or %s, got %q", ClientAuthBasic, ClientAuthPost,
			ClientAuthPrivateKeyJWT, ClientAuthTLS, ClientAuthNone, c.ClientAuth)
	}
	errs = append(errs, c.validateClientFiles(time.Now())...)
	switch c.PushedAuthorizationRequests {
	case "", PARAuto, PARAlways, PARNever:
	default:
		bad("pushed_authorization_requests", "must be %s, %s or %s, got %q", PARAuto, PARAlways, PARNever, c.PushedAuthorizationRequests)
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
	if c.CAFile != "" {
		if _, err := loadCAPool(c.CAFile); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	if c.DPoP && c.UserinfoClaims {
		// UserInfo would need the DPoP scheme and a proof with ath; refused
		// rather than sent as a Bearer call the provider turns down.
		bad("userinfo_claims", "not supported together with dpop: true yet")
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

// validateClientFiles checks the key and certificate files the client
// authentication method needs: present, readable, of a supported kind and,
// for a certificate, valid at now. Errors name the field, never the files'
// content.
func (c Config) validateClientFiles(now time.Time) []error {
	var errs []error
	switch {
	case c.ClientKeyFile != "" && c.ClientKey != "":
		errs = append(errs, errors.New("client_key: set client_key_file or client_key, not both"))
	case c.ClientKeyFile != "" || c.ClientKey != "":
		if _, err := clientKeyOf(c); err != nil {
			errs = append(errs, err)
		}
	case c.ClientAuth == ClientAuthPrivateKeyJWT:
		errs = append(errs, errors.New("client_key_file: required with client_auth: private_key_jwt (or client_key inline)"))
	case c.ClientKeyID != "" || c.ClientKeyAlg != "":
		errs = append(errs, errors.New("client_key_file: required with client_key_id or client_key_alg"))
	}
	if c.ClientKeyFile != "" && c.ClientAuth != ClientAuthPrivateKeyJWT {
		errs = append(errs, fmt.Errorf("client_key_file: only used with client_auth: %s", ClientAuthPrivateKeyJWT))
	}
	if c.ClientKey != "" && c.ClientAuth != ClientAuthPrivateKeyJWT {
		errs = append(errs, fmt.Errorf("client_key: only used with client_auth: %s", ClientAuthPrivateKeyJWT))
	}
	if strings.ContainsFunc(c.ClientKeyID, isCtlOrSpace) {
		errs = append(errs, errors.New("client_key_id: must not contain spaces or control characters"))
	}
	switch {
	case c.TLSClientCertFile != "" && c.TLSClientKeyFile != "":
		if _, err := loadClientCert(c.TLSClientCertFile, c.TLSClientKeyFile, now); err != nil {
			errs = append(errs, err)
		}
	case c.TLSClientCertFile != "":
		errs = append(errs, errors.New("tls_client_key_file: required with tls_client_cert_file"))
	case c.TLSClientKeyFile != "":
		errs = append(errs, errors.New("tls_client_cert_file: required with tls_client_key_file"))
	case c.ClientAuth == ClientAuthTLS:
		errs = append(errs, errors.New("tls_client_cert_file: required with client_auth: tls_client_auth (and tls_client_key_file)"))
	}
	return errs
}

// usesPAR reports whether login pushes its authorization request, given
// what discovery said the provider requires.
func (c Config) usesPAR(required bool) bool {
	switch c.PushedAuthorizationRequests {
	case PARAlways:
		return true
	case PARNever:
		return false
	default:
		return required
	}
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
