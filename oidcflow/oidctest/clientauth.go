package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client authentication methods beyond the secrets (Client.JWKS, Client.TLSClientAuth).
const (
	// AuthPrivateKeyJWT is RFC 7523 client assertions signed with a key of Client.JWKS.
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthTLSClient is RFC 8705 tls_client_auth at the mTLS endpoints (StartMTLS).
	AuthTLSClient = "tls_client_auth"
	// ClientAssertionType is RFC 7523's client_assertion_type for a JWT.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// assertionAlgs are the signature algorithms accepted in client assertions.
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384}

// maxAssertionAge bounds how far iat may lie in the past or future.
const maxAssertionAge = 5 * time.Minute

// strongAuth authenticates the clients that use neither a secret nor none:
// a client with JWKS by a client assertion only, a TLSClientAuth client by
// its certificate only. handled is false when the request is for the
// secret methods; a JWKS or TLS client presenting a secret instead is
// handled and refused (no fallback).
func (p *Provider) strongAuth(r *http.Request) (c Client, handled, ok bool) {
	form := r.PostForm
	id := form.Get("client_id")
	if u, _, basic := r.BasicAuth(); basic && id == "" {
		id, _ = url.QueryUnescape(u)
	}
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	c, known := p.clients[id]
	if !assertion && (!known || (len(c.JWKS) == 0 && !c.TLSClientAuth)) {
		return Client{}, false, false
	}
	_, _, basic := r.BasicAuth()
	if basic || form.Has("client_secret") || len(form["client_id"]) > 1 {
		return Client{}, true, false
	}
	if assertion {
		c, ok := p.verifyAssertion(r)
		return c, true, ok
	}
	if len(c.JWKS) > 0 {
		return Client{}, true, false // registered for private_key_jwt: an assertion is required
	}
	if !p.certMatches(c, r.TLS) {
		return Client{}, true, false
	}
	p.mu.Lock()
	p.stats.TLSClientAuths++
	p.mu.Unlock()
	return c, true, true
}

// certMatches reports whether the TLS connection presented c's certificate.
func (p *Provider) certMatches(c Client, st *tls.ConnectionState) bool {
	if st == nil || len(st.PeerCertificates) == 0 {
		return false
	}
	leaf := st.PeerCertificates[0]
	if now := p.now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false
	}
	if c.TLSCertThumbprint != "" {
		return subtle.ConstantTimeCompare([]byte(CertThumbprint(leaf)), []byte(c.TLSCertThumbprint)) == 1
	}
	return c.TLSSubjectDN != "" && leaf.Subject.String() == c.TLSSubjectDN
}

// CertThumbprint is a certificate's RFC 8705 x5t#S256: base64url SHA-256 of its DER.
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// verifyAssertion checks an RFC 7523 client assertion: the type, a
// signature by a key of the client's JWKS, iss = sub = client_id, aud one
// of the provider's (issuer, token or PAR endpoint, also at the mTLS
// origin), exp in the future, iat near now, and a jti never seen before.
func (p *Provider) verifyAssertion(r *http.Request) (Client, bool) {
	form := r.PostForm
	if form.Get("client_assertion_type") != ClientAssertionType || len(form["client_assertion"]) != 1 {
		return Client{}, false
	}
	raw := form.Get("client_assertion")
	if len(raw) > maxTokenLen {
		return Client{}, false
	}
	tok, err := jwt.ParseSigned(raw, assertionAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return Client{}, false
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return Client{}, false
	}
	c, known := p.clients[unverified.Issuer]
	if !known || len(c.JWKS) == 0 || (form.Has("client_id") && form.Get("client_id") != c.ID) {
		return Client{}, false
	}
	var claims jwt.Claims
	verified := false
	for _, k := range c.JWKS {
		if kid := tok.Headers[0].KeyID; kid != "" && k.KeyID != "" && k.KeyID != kid {
			continue
		}
		if tok.Claims(k.Key, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified || claims.Issuer != c.ID || claims.Subject != c.ID || claims.ID == "" || claims.Expiry == nil {
		return Client{}, false
	}
	now := p.now()
	if !now.Before(claims.Expiry.Time()) || (claims.IssuedAt != nil && claims.IssuedAt.Time().Sub(now).Abs() > maxAssertionAge) {
		return Client{}, false
	}
	if !slices.ContainsFunc(p.assertionAudiences(), func(a string) bool { return slices.Contains(claims.Audience, a) }) {
		return Client{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for j, exp := range p.assertionJTIs {
		if now.After(exp) {
			delete(p.assertionJTIs, j)
		}
	}
	key := c.ID + " " + claims.ID
	if _, seen := p.assertionJTIs[key]; seen {
		p.stats.ReplayedAssertions++
		return Client{}, false
	}
	p.assertionJTIs[key] = claims.Expiry.Time()
	p.stats.PrivateKeyJWTAuths++
	return c, true
}

// assertionAudiences are the aud values a client assertion may carry.
func (p *Provider) assertionAudiences() []string {
	iss := p.Issuer()
	out := []string{iss, iss + PathToken, iss + PathPAR}
	if m := p.mtlsIssuer(); m != "" {
		out = append(out, m+PathToken, m+PathPAR)
	}
	return out
}

// mtlsIssuer is the issuer URL at the mTLS listener's origin ("" without one).
func (p *Provider) mtlsIssuer() string {
	p.mu.Lock()
	origin := p.mtlsOrigin
	iss := p.issuer
	p.mu.Unlock()
	if origin == "" {
		return ""
	}
	u, err := url.Parse(iss)
	if err != nil {
		return ""
	}
	return origin + u.Path
}

// StartMTLS serves Handler on a second listener at addr over TLS that asks
// every client for a certificate (RFC 8705): discovery then lists it as
// mtls_endpoint_aliases for the token, revocation, PAR and UserInfo
// endpoints. Its server certificate is self-signed for 127.0.0.1 and
// localhost; MTLSCertPEM returns it for the clients to trust. Call after
// Start or Serve; Close stops it too. It returns the listener's origin.
func (p *Provider) StartMTLS(addr string) (string, error) {
	cert, certPEM, err := selfSignedServerCert()
	if err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("oidctest: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           p.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Any certificate: the client is identified by it (thumbprint
			// or subject), not by a chain to some authority.
			ClientAuth: tls.RequestClientCert,
		},
	}
	origin := "https://" + l.Addr().String()
	p.mu.Lock()
	if p.mtlsSrv != nil {
		p.mu.Unlock()
		_ = l.Close()
		return "", errors.New("oidctest: already serving mTLS")
	}
	p.mtlsSrv, p.mtlsOrigin, p.mtlsCertPEM = srv, origin, certPEM
	p.mu.Unlock()
	go func() { _ = srv.ServeTLS(l, "", "") }()
	return origin, nil
}

// MTLSCertPEM is the mTLS listener's server certificate (nil before StartMTLS).
func (p *Provider) MTLSCertPEM() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.mtlsCertPEM)
}

// selfSignedServerCert makes a P-256 certificate for 127.0.0.1 and localhost, valid a day.
func selfSignedServerCert() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("oidctest: server key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "oidctest mTLS"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("oidctest: server certificate: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}

// confidential reports whether c authenticates (a secret, keys or a certificate).
func (c Client) confidential() bool {
	return c.Secret != "" || len(c.JWKS) > 0 || c.TLSClientAuth
}
