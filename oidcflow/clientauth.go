package oidcflow

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// clientAssertionType is RFC 7523's client_assertion_type for a JWT.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid: one request's
// worth, as FAPI 2.0 advises.
const assertionLifetime = 60 * time.Second

// maxAuthBody bounds a form the transport rewrites; envoy-bff's own
// requests are a few hundred bytes.
const maxAuthBody = 64 << 10

// errClientAuth means a request could not be given its client
// authentication; it never goes out without it.
var errClientAuth = errors.New("client authentication")

// clientAuthTransport makes every POST to the provider's token, PAR and
// revocation endpoints carry the configured client authentication and
// nothing else, whichever code built it (x/oauth2's exchange and refresh,
// client credentials, token exchange, revocation, PAR): private_key_jwt
// adds a fresh signed assertion; tls_client_auth leaves client_id alone in
// the form and the certificate to the TLS connection. Any client_secret or
// Authorization header is dropped. Other requests pass untouched.
type clientAuthTransport struct {
	base     http.RoundTripper
	method   string // ClientAuthPrivateKeyJWT or ClientAuthTLS
	clientID string
	audience string // the issuer (FAPI 2.0)
	creds    *clientCreds
	now      func() time.Time
	rand     io.Reader

	// targets are the endpoint URLs (scheme://host/path) to authenticate
	// at; set when discovery succeeds.
	targets atomic.Pointer[map[string]bool]
}

// setTargets names the endpoints requests to which are authenticated.
func (t *clientAuthTransport) setTargets(urls ...string) {
	m := make(map[string]bool, len(urls))
	for _, u := range urls {
		if u == "" {
			continue
		}
		if p, err := url.Parse(u); err == nil {
			m[endpointKey(p)] = true
		}
	}
	t.targets.Store(&m)
}

// endpointKey is u without query and fragment, for matching.
func endpointKey(u *url.URL) string { return u.Scheme + "://" + u.Host + u.EscapedPath() }

// RoundTrip implements http.RoundTripper.
func (t *clientAuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	targets := t.targets.Load()
	if req.Method != http.MethodPost || targets == nil || !(*targets)[endpointKey(req.URL)] {
		return t.base.RoundTrip(req)
	}
	out, err := t.authenticate(req)
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w: %w", req.Method, req.URL.Redacted(), errClientAuth, err)
	}
	return t.base.RoundTrip(out)
}

// authenticate returns a copy of req whose form carries the client
// authentication; req is not changed (a RoundTripper must not), its body
// is consumed.
func (t *clientAuthTransport) authenticate(req *http.Request) (*http.Request, error) {
	if ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); ct != "application/x-www-form-urlencoded" {
		return nil, fmt.Errorf("content type %q is not a form", ct)
	}
	var raw []byte
	if req.Body != nil {
		var err error
		raw, err = io.ReadAll(io.LimitReader(req.Body, maxAuthBody+1))
		_ = req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read form: %w", err)
		}
		if len(raw) > maxAuthBody {
			return nil, errors.New("form too large")
		}
	}
	form, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, fmt.Errorf("parse form: %w", err)
	}
	form.Del("client_secret")
	form.Del("client_assertion")
	form.Del("client_assertion_type")
	form.Set("client_id", t.clientID)
	if t.method == ClientAuthPrivateKeyJWT {
		a, err := t.assertion()
		if err != nil {
			return nil, err
		}
		form.Set("client_assertion_type", clientAssertionType)
		form.Set("client_assertion", a)
	}
	body := []byte(form.Encode())
	out := req.Clone(req.Context())
	out.Header.Del("Authorization")
	out.Body = io.NopCloser(bytes.NewReader(body))
	out.ContentLength = int64(len(body))
	// A layer above (DPoP's nonce retry) may send it again.
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return out, nil
}

// assertionClaims are the claims of an RFC 7523 client assertion.
type assertionClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
}

// assertion signs a fresh client assertion: iss = sub = client_id, aud =
// the issuer, iat now, exp a minute on, a random one-time jti.
func (t *clientAuthTransport) assertion() (string, error) {
	k := t.creds.signingKey()
	if k == nil {
		return "", errors.New("no client key loaded")
	}
	var id [18]byte
	if _, err := io.ReadFull(t.rand, id[:]); err != nil {
		return "", fmt.Errorf("draw jti: %w", err)
	}
	now := t.now()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("client assertion signer: %w", err)
	}
	a, err := jwt.Signed(s).Claims(assertionClaims{
		Issuer:   t.clientID,
		Subject:  t.clientID,
		Audience: t.audience,
		IssuedAt: now.Unix(),
		Expiry:   now.Add(assertionLifetime).Unix(),
		ID:       base64.RawURLEncoding.EncodeToString(id[:]),
	}).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return a, nil
}

// reloadingTransport looks at the certificate files before each request,
// not only at handshakes: connections are reused, so a rotated certificate
// would otherwise wait for the pool to drain.
type reloadingTransport struct {
	base  http.RoundTripper
	creds *clientCreds
}

// RoundTrip implements http.RoundTripper.
func (t reloadingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.creds.maybeReload()
	return t.base.RoundTrip(req)
}

// providerTransport builds the provider client's layers, innermost first:
// base (with the TLS client certificate when one is configured, then
// wrap's layer such as tracing), the response bound, then clientAuthTransport for private_key_jwt and
// tls_client_auth. It returns the client auth layer (nil for the other
// methods) so discovery can name its endpoints.
func providerTransport(base http.RoundTripper, wrap func(http.RoundTripper) http.RoundTripper, cfg Config, creds *clientCreds, now func() time.Time) (http.RoundTripper, *clientAuthTransport, error) {
	if base == nil {
		base = http.DefaultTransport
	}
	if creds != nil && cfg.TLSClientCertFile != "" {
		ht, ok := base.(*http.Transport)
		if !ok {
			return nil, nil, fmt.Errorf("tls_client_cert_file: the provider HTTP client's transport is a %T, not an *http.Transport that can present the certificate", base)
		}
		ht = ht.Clone()
		if ht.TLSClientConfig == nil {
			ht.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		ht.TLSClientConfig.GetClientCertificate = creds.clientCertificate
		// A new certificate is presented from the next connection on, so
		// the open ones are closed when it changes.
		creds.onCertChange = ht.CloseIdleConnections
		base = reloadingTransport{base: ht, creds: creds}
	}
	if wrap != nil {
		base = wrap(base)
	}
	var rt http.RoundTripper = limitTransport{base: base, limit: maxProviderResponse}
	var auth *clientAuthTransport
	if cfg.ClientAuth == ClientAuthPrivateKeyJWT || cfg.ClientAuth == ClientAuthTLS {
		auth = &clientAuthTransport{base: rt, method: cfg.ClientAuth, clientID: cfg.ClientID, audience: cfg.Issuer,
			creds: creds, now: now, rand: rand.Reader}
		rt = auth
	}
	// dpopTransport (RFC 9449) wraps rt here, outermost, so its proofs go
	// with requests that already carry their client authentication.
	return rt, auth, nil
}
