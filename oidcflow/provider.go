package oidcflow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Discovery retry pacing: bounded exponential backoff.
const (
	discoveryMinBackoff = 200 * time.Millisecond
	discoveryMaxBackoff = 30 * time.Second
	// maxProviderResponse bounds every body read from the provider
	// (discovery, JWKS, token responses), so a broken or hostile provider
	// cannot make envoy-bff buffer without limit.
	maxProviderResponse = 1 << 20
)

// Provider is the OpenID provider as discovered: endpoints, the OAuth 2.0
// client and the ID-token verifier, all built once when discovery succeeds.
// Until then Ready is false and the endpoints that need the provider answer
// 503 provider_unavailable. It is safe for concurrent use.
type Provider struct {
	cfg    Config
	client *http.Client
	// auth adds private_key_jwt or tls_client_auth to requests to the
	// token, PAR and revocation endpoints (nil for the other methods).
	auth   *clientAuthTransport
	logger *slog.Logger
	now    func() time.Time

	state   atomic.Pointer[discovered]
	startMu sync.Mutex // one discovery loop at a time
}

// discovered is everything built from the discovery document.
type discovered struct {
	oauth2 oauth2.Config
	// clientAuth is the client authentication method in use (ClientAuth*).
	clientAuth string
	verifier   *oidc.IDTokenVerifier
	// endSession is the RP-initiated logout endpoint ("" if none).
	endSession string
	// revocation is the RFC 7009 endpoint ("" if none), for the Revoker.
	revocation string
	// issParam is RFC 9207 authorization_response_iss_parameter_supported.
	issParam bool
	// logout verifies back-channel logout tokens against the provider's JWKS.
	logout *logoutVerifier
	// userinfo is the UserInfo endpoint ("" if none).
	userinfo string
	// par is the RFC 9126 pushed authorization request endpoint ("" if none).
	par string
	// usePAR makes login push its authorization request to par.
	usePAR bool
	// dpopAlg is the algorithm of the DPoP keys logins make (chooseDPoPAlg).
	dpopAlg string
}

// providerMetadata is the part of the discovery document go-oidc does not expose.
type providerMetadata struct {
	EndSessionEndpoint       string   `json:"end_session_endpoint"`
	RevocationEndpoint       string   `json:"revocation_endpoint"`
	IssParameterSupported    bool     `json:"authorization_response_iss_parameter_supported"`
	TokenEndpointAuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethods     []string `json:"code_challenge_methods_supported"`
	JWKSURI                  string   `json:"jwks_uri"`
	SigningAlgs              []string `json:"id_token_signing_alg_values_supported"`
	PAREndpoint              string   `json:"pushed_authorization_request_endpoint"`
	RequirePAR               bool     `json:"require_pushed_authorization_requests"`
	// MTLSAliases are RFC 8705's endpoints for clients that present a
	// certificate (by metadata name, e.g. token_endpoint).
	MTLSAliases map[string]string `json:"mtls_endpoint_aliases"`
	DPoPAlgs    []string          `json:"dpop_signing_alg_values_supported"`
}

// ProviderOption adjusts NewProvider.
type ProviderOption func(*providerOptions)

type providerOptions struct {
	wrap func(http.RoundTripper) http.RoundTripper
}

// WithTransportWrapper wraps the provider client's base transport (after
// the TLS client certificate is set on it, inside client authentication):
// for tracing, say.
func WithTransportWrapper(wrap func(http.RoundTripper) http.RoundTripper) ProviderOption {
	return func(o *providerOptions) { o.wrap = wrap }
}

// NewProvider prepares discovery of cfg.Issuer; call Start to run it.
// client may be nil (then one with cfg.ProviderTimeout is built); its
// transport is wrapped so no provider response is read past 1 MiB, and so
// every token, PAR and revocation request carries the configured client
// authentication. With a TLS client certificate its transport must be nil
// or an *http.Transport.
func NewProvider(cfg Config, client *http.Client, logger *slog.Logger, now func() time.Time, opts ...ProviderOption) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	var o providerOptions
	for _, f := range opts {
		f(&o)
	}
	creds, err := newClientCreds(cfg, logger, now)
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	hc := boundedClient(client, cfg.ProviderTimeout)
	rt, auth, err := providerTransport(hc.Transport, o.wrap, cfg, creds, now)
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	p := &Provider{cfg: cfg, client: hc, auth: auth, logger: logger, now: now}
	if cfg.DPoP {
		// Outermost: its proofs go with requests that already carry their
		// client authentication.
		rt = &dpopTransport{next: rt, targets: p.dpopTarget, rand: rand.Reader, now: now}
	}
	hc.Transport = rt
	return p, nil
}

// dpopTarget reports whether u is the token, PAR or revocation endpoint:
// the requests dpopTransport adds proofs to (a sender-constrained token's
// revocation needs one too, as Keycloak's FAPI 2.0 DPoP profile checks).
func (p *Provider) dpopTarget(u string) bool {
	d := p.state.Load()
	if d == nil {
		return false
	}
	return u == d.oauth2.Endpoint.TokenURL || (d.par != "" && u == d.par) || (d.revocation != "" && u == d.revocation)
}

// Start runs discovery until it succeeds or ctx ends, retrying with bounded
// exponential backoff. It returns nil once the provider is ready (at once if
// it already is), or ctx's error.
func (p *Provider) Start(ctx context.Context) error {
	p.startMu.Lock()
	defer p.startMu.Unlock()
	for attempt := 1; p.state.Load() == nil; attempt++ {
		d, err := p.discover(ctx)
		if err == nil {
			p.state.Store(d)
			p.logger.LogAttrs(ctx, slog.LevelInfo, "oidcflow: provider discovered",
				slog.String("issuer", p.cfg.Issuer), slog.Int("attempt", attempt),
				slog.Bool("end_session", d.endSession != ""), slog.Bool("iss_parameter", d.issParam))
			return nil
		}
		backoff := discoveryBackoff(attempt)
		p.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: provider discovery failed; retrying",
			slog.String("issuer", p.cfg.Issuer), slog.Int("attempt", attempt),
			slog.Duration("backoff", backoff), slog.Any("error", err))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("discover provider %s: %w", p.cfg.Issuer, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// discoveryBackoff is the wait after the attempt-th failed discovery:
// doubling from discoveryMinBackoff, capped at discoveryMaxBackoff, so a
// provider that is down for long is asked twice a minute, not in a loop.
func discoveryBackoff(attempt int) time.Duration {
	d := discoveryMinBackoff
	for i := 1; i < attempt && d < discoveryMaxBackoff; i++ {
		d *= 2
	}
	return min(d, discoveryMaxBackoff)
}

// Ready reports whether discovery has succeeded, for /readyz.
func (p *Provider) Ready() bool { return p.state.Load() != nil }

// get returns the discovered provider, or errProviderNotReady.
func (p *Provider) get() (*discovered, error) {
	if d := p.state.Load(); d != nil {
		return d, nil
	}
	return nil, errProviderNotReady
}

// clientContext carries the bounded HTTP client to go-oidc and x/oauth2.
func (p *Provider) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}

// discover fetches the discovery document once and builds the OAuth 2.0
// client and verifier from it.
func (p *Provider) discover(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProviderTimeout)
	defer cancel()
	op, err := oidc.NewProvider(p.clientContext(ctx), p.cfg.Issuer) // checks the issuer matches exactly
	if err != nil {
		return nil, fmt.Errorf("fetch discovery document: %w", err)
	}
	var meta providerMetadata
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("read discovery document: %w", err)
	}
	if len(meta.CodeChallengeMethods) > 0 && !slices.Contains(meta.CodeChallengeMethods, "S256") {
		p.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: provider does not list PKCE S256; sending it anyway")
	}
	if p.cfg.UserinfoClaims && op.UserInfoEndpoint() == "" {
		return nil, errNoUserinfoEndpoint
	}
	endpoint := op.Endpoint()
	clientAuth := chooseClientAuth(p.cfg.ClientAuth, meta.TokenEndpointAuthMethods)
	endpoint.AuthStyle = authStyle(clientAuth)
	revocation, par, userinfo := meta.RevocationEndpoint, meta.PAREndpoint, op.UserInfoEndpoint()
	if p.cfg.TLSClientCertFile != "" {
		// RFC 8705 §5: a client presenting a certificate uses the aliases.
		alias := func(name, url string) string {
			if a := meta.MTLSAliases[name]; a != "" {
				return a
			}
			return url
		}
		endpoint.TokenURL = alias("token_endpoint", endpoint.TokenURL)
		revocation = alias("revocation_endpoint", revocation)
		par = alias("pushed_authorization_request_endpoint", par)
		userinfo = alias("userinfo_endpoint", userinfo)
	}
	usePAR := p.cfg.usesPAR(meta.RequirePAR)
	if usePAR && par == "" {
		return nil, errNoPAREndpoint
	}
	if p.auth != nil {
		p.auth.setTargets(endpoint.TokenURL, revocation, par)
	}
	// One key set for ID and logout tokens, fetched with our bounded client.
	keys := newJWKSCache(meta.JWKSURI, p.client, jwksCooldown, p.now)
	algs := allowedAlgs(meta.SigningAlgs)
	algNames := make([]string, len(algs))
	for i, a := range algs {
		algNames[i] = string(a)
	}
	verifier := oidc.NewVerifier(p.cfg.Issuer, idTokenKeys{cache: keys, algs: algs}, &oidc.Config{
		ClientID:             p.cfg.ClientID,
		Now:                  p.now,
		SupportedSigningAlgs: algNames,
	})
	return &discovered{
		oauth2: oauth2.Config{
			ClientID:     p.cfg.ClientID,
			ClientSecret: p.cfg.ClientSecret,
			Endpoint:     endpoint,
			RedirectURL:  p.cfg.RedirectURL,
			Scopes:       slices.Clone(p.cfg.Scopes),
		},
		clientAuth: clientAuth,
		verifier:   verifier,
		endSession: meta.EndSessionEndpoint,
		revocation: revocation,
		issParam:   meta.IssParameterSupported,
		logout:     newLogoutVerifier(p.cfg.Issuer, p.cfg.ClientID, keys, meta.SigningAlgs, p.now),
		userinfo:   userinfo,
		par:        par,
		usePAR:     usePAR,
		dpopAlg:    p.chooseDPoPAlg(ctx, meta.DPoPAlgs),
	}, nil
}

// chooseDPoPAlg is the configured dpop_alg, else EdDSA when the provider
// lists it in dpop_signing_alg_values_supported (it signs a Check's proof
// for about half the CPU of ES256: docs/fapi.md's DPoP figures), else ES256,
// which every DPoP provider accepts.
func (p *Provider) chooseDPoPAlg(ctx context.Context, listed []string) string {
	switch {
	case p.cfg.DPoPAlg != "":
		if p.cfg.DPoP && len(listed) > 0 && !slices.Contains(listed, p.cfg.DPoPAlg) {
			p.logger.LogAttrs(ctx, slog.LevelWarn, "oidcflow: the provider does not list the configured dpop_alg; sending it anyway",
				slog.String("dpop_alg", p.cfg.DPoPAlg), slog.Any("listed", listed))
		}
		return p.cfg.DPoPAlg
	case slices.Contains(listed, DPoPAlgEdDSA):
		return DPoPAlgEdDSA
	default:
		return DPoPAlgES256
	}
}

// jwksCooldown spaces the refetches of the provider's key set that unknown
// key IDs in logout tokens cause, so forged tokens cannot make envoy-bff
// hammer the provider (T37).
const jwksCooldown = 30 * time.Second

// chooseClientAuth resolves the configured client authentication against
// what the provider lists: an explicit method is used as configured (the
// provider refuses it if it must); an empty one is basic when listed or
// when nothing is listed (the OpenID Connect default), else post when
// listed, else basic.
func chooseClientAuth(configured string, methods []string) string {
	switch {
	case configured != "":
		return configured
	case len(methods) == 0 || slices.Contains(methods, ClientAuthBasic):
		return ClientAuthBasic
	case slices.Contains(methods, ClientAuthPost):
		return ClientAuthPost
	default:
		return ClientAuthBasic
	}
}

// authStyle is how x/oauth2 sends a client authentication method. It is
// never AutoDetect: that retries a failed request the other way, and a
// retried code exchange or refresh is a reuse the provider punishes (T31).
func authStyle(clientAuth string) oauth2.AuthStyle {
	if clientAuth == ClientAuthBasic {
		return oauth2.AuthStyleInHeader
	}
	// post sends the secret; none, private_key_jwt and tls_client_auth
	// only client_id (their secret is empty), clientAuthTransport the rest.
	return oauth2.AuthStyleInParams
}

// errNoPAREndpoint keeps a frontend that must push its authorization
// requests unready while its provider offers no endpoint for them.
var errNoPAREndpoint = errors.New("oidc.pushed_authorization_requests: always, but the provider's discovery document lists no pushed_authorization_request_endpoint")

// boundedClient returns a copy of c (or a new client with timeout);
// providerTransport then makes its response bodies fail once they pass
// maxProviderResponse.
func boundedClient(c *http.Client, timeout time.Duration) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		out.Timeout = timeout
	}
	base := out.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = base
	return &out
}

// errResponseTooLarge fails a read past the response limit.
var errResponseTooLarge = errors.New("provider response larger than 1 MiB")

// limitTransport caps every response body it hands out.
type limitTransport struct {
	base  http.RoundTripper
	limit int64
}

// RoundTrip implements http.RoundTripper. A response that announces more
// than the limit fails before its body is read at all.
func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.limit {
		_ = resp.Body.Close() // unread: the connection is dropped, not drained
		return nil, fmt.Errorf("%s %s: %w (Content-Length %d)", req.Method, req.URL.Redacted(), errResponseTooLarge, resp.ContentLength)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.limit}
	return resp, nil
}

// limitedBody reads at most left bytes, then fails instead of truncating.
// It fails in the very read that reaches the limit when more follows,
// because some readers stop at the limit themselves: x/oauth2 reads at most
// 1 MiB of a token response and parses what it got, so a padded response
// would otherwise pass as whole (a truncated refresh token, or a JSON
// object followed by megabytes of spaces).
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	err  error // sticky errResponseTooLarge
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.left <= 0 {
		return 0, b.probe()
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left == 0 && err == nil {
		err = b.probe()
	}
	return n, err
}

// probe reads one byte past the limit: EOF means the body fit exactly.
func (b *limitedBody) probe() error {
	var one [1]byte
	for range 100 { // a Reader may return 0, nil; never spin without bound
		n, err := b.rc.Read(one[:])
		if n > 0 {
			b.err = errResponseTooLarge
			return b.err
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

func (b *limitedBody) Close() error { return b.rc.Close() }
