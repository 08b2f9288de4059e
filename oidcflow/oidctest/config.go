package oidctest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Defaults applied by NewProvider to zero-valued ProviderConfig fields.
const (
	DefaultAccessTokenTTL  = 5 * time.Minute
	DefaultIDTokenTTL      = 5 * time.Minute
	DefaultRefreshTokenTTL = 8 * time.Hour
	DefaultCodeTTL         = time.Minute
	DefaultAudience        = "sample-api"
)

// ProviderConfig configures a Provider; zero values take the defaults above.
type ProviderConfig struct {
	// Issuer is the provider's issuer URL (scheme, host, optional path, no
	// trailing slash). It may be left empty and set later with SetIssuer or Start.
	Issuer string
	// Clients are the registered relying parties; at least one is required.
	Clients []Client
	// User is the one user every authorization signs in.
	User User
	// Audience is the `aud` of user access tokens, and of client-credentials
	// tokens that ask for no audience.
	Audience string
	// AccessTokenTTL is the lifetime of access tokens (default 5m).
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens (default 5m).
	IDTokenTTL time.Duration
	// RefreshTokenTTL is the lifetime of refresh tokens (default 8h).
	RefreshTokenTTL time.Duration
	// CodeTTL is the lifetime of an authorization code (default 1m).
	CodeTTL time.Duration
	// DisableRefreshRotation keeps refresh tokens valid after use and leaves
	// refresh_token out of refresh responses (rotation is on by default).
	DisableRefreshRotation bool
	// OmitSID leaves the `sid` claim out of every token (it is emitted by default).
	OmitSID bool
	// ACRValues are the authentication levels the provider can reach, weakest
	// first. A login reaches the first of its acr_values listed here, or the
	// weakest when it asks for none it knows; its ID tokens carry that acr.
	// Empty: no acr claim at all.
	ACRValues []string
	// SessionMaxLifetime bounds the user's session at the provider from its
	// sign-in, as Keycloak's "SSO Session Max" does: no token of the session
	// (refreshed or exchanged) lives beyond it, and refresh and token exchange
	// are refused with invalid_grant once it has passed. 0: unbounded.
	SessionMaxLifetime time.Duration
	// Audiences are the targets of token exchange (RFC 8693 `audience` or
	// `resource`) and of the refresh grant's RFC 8707 `resource`, each with
	// the scopes an exchanged token for it may carry. A target not listed is
	// refused with invalid_target; nil refuses every exchange.
	Audiences map[string][]string
	// RevokeOnlyPresentedToken makes /revoke revoke just the token presented,
	// not its whole family, as RFC 7009 allows and some providers do; a client
	// must then revoke the refresh token it holds last, not an earlier one.
	RevokeOnlyPresentedToken bool
	// BrowserSessions makes the provider remember the browser, as a real
	// one does: an interactive authorization sets a session cookie, and a
	// silent one (prompt=none) succeeds only with the cookie of a session
	// that has not ended (by /end_session or EndSession), else it answers
	// login_required. Off: every authorization signs the user in at once.
	BrowserSessions bool
	// RequirePAR makes /authorize accept only pushed requests (request_uri
	// from the PAR endpoint), and discovery say so
	// (require_pushed_authorization_requests).
	RequirePAR bool
	// RequireDPoPNonce makes the token endpoint demand a server nonce in
	// DPoP proofs (RFC 9449 §8): a proof without the current one gets 400
	// use_dpop_nonce with a DPoP-Nonce header.
	RequireDPoPNonce bool
	// DPoPAlgs, when set, is what discovery lists as
	// dpop_signing_alg_values_supported instead of DPoPAlgs (proofs are
	// verified as before).
	DPoPAlgs []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the source of codes, token IDs and keys (default crypto/rand.Reader).
	Rand io.Reader
	// HTTPClient posts back-channel logout tokens (default: 5s timeout).
	HTTPClient *http.Client
}

// Client is one registered relying party.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client secret; empty makes a public client, which must not
	// authenticate and may use only the code and refresh grants.
	Secret string
	// RedirectURIs are the exact redirect_uri values /authorize accepts.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the exact post_logout_redirect_uri values /end_session accepts.
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives a logout token when a session this client
	// took part in ends at the provider; empty disables it.
	BackchannelLogoutURI string
	// TokenExchange allows the client to use the RFC 8693 token exchange
	// grant (confidential clients only); others get unauthorized_client.
	TokenExchange bool
	// JWKS are the client's public keys for private_key_jwt (RFC 7523):
	// with any, the client authenticates by a client assertion signed with
	// one of them, and never by a secret.
	JWKS []jose.JSONWebKey
	// TLSClientAuth makes the client authenticate by its TLS client
	// certificate (RFC 8705 tls_client_auth, at the StartMTLS listener),
	// identified by TLSCertThumbprint (CertThumbprint), else TLSSubjectDN
	// (the certificate's Subject as x509's Name.String spells it).
	TLSClientAuth     bool
	TLSCertThumbprint string
	TLSSubjectDN      string
}

// User is the demo user's claims.
type User struct {
	// Subject is the `sub` (default "demo-user").
	Subject string
	// Name is the `name` (default "Demo User").
	Name string
	// Email is the `email` (default "demo@example.com").
	Email string
	// PreferredUsername is the `preferred_username` (default "demo").
	PreferredUsername string
	// Groups, when set, is the ID token's `groups` claim (none by default).
	Groups []string
}

// withDefaults returns c with every zero field defaulted.
func (c ProviderConfig) withDefaults() ProviderConfig {
	if c.User.Subject == "" {
		c.User.Subject = "demo-user"
	}
	if c.User.Name == "" {
		c.User.Name = "Demo User"
	}
	if c.User.Email == "" {
		c.User.Email = "demo@example.com"
	}
	if c.User.PreferredUsername == "" {
		c.User.PreferredUsername = "demo"
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if c.IDTokenTTL == 0 {
		c.IDTokenTTL = DefaultIDTokenTTL
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if c.CodeTTL == 0 {
		c.CodeTTL = DefaultCodeTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if c.Audiences != nil { // the provider keeps its own copy
		aud := make(map[string][]string, len(c.Audiences))
		for k, v := range c.Audiences {
			aud[k] = slices.Clone(v)
		}
		c.Audiences = aud
	}
	c.Clients = slices.Clone(c.Clients)
	return c
}

// validate reports the first problem of a defaulted config.
func (c ProviderConfig) validate() error {
	if c.Issuer != "" {
		if err := validateIssuer(c.Issuer); err != nil {
			return err
		}
	}
	if len(c.Clients) == 0 {
		return errors.New("oidctest: at least one client is required")
	}
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ID == "" {
			return fmt.Errorf("oidctest: client %d: empty ID", i)
		}
		if seen[cl.ID] {
			return fmt.Errorf("oidctest: client %q registered twice", cl.ID)
		}
		seen[cl.ID] = true
		for _, u := range append(append([]string{}, cl.RedirectURIs...), cl.PostLogoutRedirectURIs...) {
			if err := validateAbsURL(u); err != nil {
				return fmt.Errorf("oidctest: client %q: %w", cl.ID, err)
			}
		}
		if cl.TLSClientAuth && cl.TLSCertThumbprint == "" && cl.TLSSubjectDN == "" {
			return fmt.Errorf("oidctest: client %q: TLSClientAuth needs TLSCertThumbprint or TLSSubjectDN", cl.ID)
		}
		if cl.BackchannelLogoutURI != "" {
			if err := validateAbsURL(cl.BackchannelLogoutURI); err != nil {
				return fmt.Errorf("oidctest: client %q: %w", cl.ID, err)
			}
		}
	}
	for target := range c.Audiences {
		if target == "" {
			return errors.New("oidctest: empty audience")
		}
	}
	for _, d := range []time.Duration{c.AccessTokenTTL, c.IDTokenTTL, c.RefreshTokenTTL, c.CodeTTL, c.SessionMaxLifetime} {
		if d < 0 {
			return errors.New("oidctest: negative lifetime")
		}
	}
	return nil
}

// validateIssuer accepts an http(s) URL without query, fragment or trailing slash.
func validateIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("oidctest: issuer: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("oidctest: issuer %q: want http(s)://host[/path]", s)
	}
	if len(u.Path) > 0 && u.Path[len(u.Path)-1] == '/' {
		return fmt.Errorf("oidctest: issuer %q: trailing slash", s)
	}
	return nil
}

// validateAbsURL accepts an absolute http(s) URL.
func validateAbsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("url %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("url %q: want an absolute http(s) URL without fragment", s)
	}
	return nil
}
