package oidcflow

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Signing algorithms a private_key_jwt client key may use (client_key_alg).
const (
	AlgPS256 = "PS256"
	AlgRS256 = "RS256"
	AlgES256 = "ES256"
	AlgES384 = "ES384"
)

// minClientKeyBits is the smallest RSA client key accepted (FAPI 2.0 asks 2048).
const minClientKeyBits = 2048

// clientFilesCheckInterval is how often, at most, the client key and
// certificate files are read again for a change: on use, so an idle
// frontend reads nothing, and a rotation is picked up within seconds as
// the session key files are.
const clientFilesCheckInterval = 5 * time.Second

// errNoKeyMaterial means a PEM file held no usable private key. The
// messages of this file never quote the files' content.
var errNoKeyMaterial = errors.New("no PEM private key (PKCS#8, PKCS#1 or SEC1) found")

// clientKey is the private_key_jwt signing key as loaded: never logged, and
// only its public half (publicJWK) ever leaves the process.
type clientKey struct {
	priv any // *rsa.PrivateKey or *ecdsa.PrivateKey
	kid  string
	alg  jose.SignatureAlgorithm
}

// publicJWK is the key's public half as registered at the provider.
func (k *clientKey) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: publicOf(k.priv), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// publicOf is priv's public key.
func publicOf(priv any) crypto.PublicKey {
	if s, ok := priv.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}

// loadClientKey reads and checks a private_key_jwt key file. Errors name
// the config field they concern (relative to the oidc section).
func loadClientKey(file, kid, alg string) (*clientKey, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("client_key_file: %w", err)
	}
	return parseClientKey("client_key_file", raw, kid, alg)
}

// clientKeyOf is cfg's private_key_jwt key: inline (client_key) or from
// its file (client_key_file).
func clientKeyOf(cfg Config) (*clientKey, error) {
	if cfg.ClientKey != "" {
		return parseClientKey("client_key", []byte(cfg.ClientKey), cfg.ClientKeyID, cfg.ClientKeyAlg)
	}
	return loadClientKey(cfg.ClientKeyFile, cfg.ClientKeyID, cfg.ClientKeyAlg)
}

// parseClientKey is loadClientKey on a file's (or field's) content; errors
// name field, never the content.
func parseClientKey(field string, raw []byte, kid, alg string) (*clientKey, error) {
	priv, err := parsePrivateKeyPEM(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	a, err := keyAlg(priv, alg)
	if err != nil {
		return nil, err
	}
	if kid == "" {
		tp, err := (&jose.JSONWebKey{Key: publicOf(priv)}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%s: thumbprint: %w", field, err)
		}
		kid = base64.RawURLEncoding.EncodeToString(tp)
	}
	return &clientKey{priv: priv, kid: kid, alg: a}, nil
}

// parsePrivateKeyPEM finds the first private key block (PKCS#8, PKCS#1 or
// SEC1) and checks its type and size: RSA of at least 2048 bits, or EC on
// P-256 or P-384.
func parsePrivateKeyPEM(raw []byte) (any, error) {
	for rest := raw; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errNoKeyMaterial
		}
		var (
			key any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue // certificates, parameters: look further
		}
		if err != nil {
			// x509's messages describe the structure, never the bytes.
			return nil, fmt.Errorf("%s block does not parse: %w", b.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			if k.N.BitLen() < minClientKeyBits {
				return nil, fmt.Errorf("RSA key of %d bits; at least %d required", k.N.BitLen(), minClientKeyBits)
			}
		case *ecdsa.PrivateKey:
			if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
				return nil, fmt.Errorf("EC key on %s; P-256 or P-384 required", k.Curve.Params().Name)
			}
		default:
			return nil, fmt.Errorf("%T keys are not supported; RSA or EC (P-256, P-384) required", key)
		}
		return key, nil
	}
}

// keyAlg checks a configured algorithm against the key, or picks the
// default: PS256 for RSA, ES256 for P-256, ES384 for P-384.
func keyAlg(priv any, alg string) (jose.SignatureAlgorithm, error) {
	var def string
	var allowed []string
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		def, allowed = AlgPS256, []string{AlgPS256, AlgRS256}
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			def, allowed = AlgES256, []string{AlgES256}
		} else {
			def, allowed = AlgES384, []string{AlgES384}
		}
	}
	if alg == "" {
		return jose.SignatureAlgorithm(def), nil
	}
	for _, a := range allowed {
		if a == alg {
			return jose.SignatureAlgorithm(a), nil
		}
	}
	return "", fmt.Errorf("client_key_alg: %q does not fit the key in client_key_file; use one of %v", alg, allowed)
}

// loadClientCert reads the tls_client_auth certificate and key and checks
// the pair matches and the certificate is valid at now.
func loadClientCert(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("tls_client_cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls_client_key_file: %w", err)
	}
	return parseClientCert(certPEM, keyPEM, now)
}

// parseClientCert is loadClientCert on the files' content.
func parseClientCert(certPEM, keyPEM []byte, now time.Time) (*tls.Certificate, error) {
	if _, err := parsePrivateKeyPEM(keyPEM); err != nil {
		return nil, fmt.Errorf("tls_client_key_file: %w", err)
	}
	// X509KeyPair's errors name what is wrong, never the bytes.
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls_client_cert_file: with tls_client_key_file: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls_client_cert_file: %w", err)
		}
		pair.Leaf = leaf
	}
	switch {
	case now.After(leaf.NotAfter):
		return nil, fmt.Errorf("tls_client_cert_file: certificate expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return nil, fmt.Errorf("tls_client_cert_file: certificate not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return &pair, nil
}

// clientCreds holds the client key and certificate a frontend
// authenticates with, and keeps them in step with their files: read again
// at most every clientFilesCheckInterval when used, swapped only for a
// complete, valid new content. A bad edit is logged once and the material
// in use stays, so a half-written file never breaks logins.
type clientCreds struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	key  atomic.Pointer[clientKey]
	cert atomic.Pointer[tls.Certificate]
	// onCertChange, if set, runs after a new certificate is swapped in.
	onCertChange func()

	mu        sync.Mutex // one check at a time; guards the fields below
	checked   time.Time
	keyStamp  [sha256.Size]byte // the content last acted on, applied or refused
	certStamp [sha256.Size]byte
}

// newClientCreds loads what cfg configures (nil when it configures no
// key and no certificate).
func newClientCreds(cfg Config, logger *slog.Logger, now func() time.Time) (*clientCreds, error) {
	if cfg.ClientKeyFile == "" && cfg.ClientKey == "" && cfg.TLSClientCertFile == "" {
		return nil, nil
	}
	c := &clientCreds{cfg: cfg, logger: logger, now: now, checked: now()}
	if cfg.ClientKey != "" { // inline: fixed for the config's life (a reload rebuilds the frontend)
		k, err := clientKeyOf(cfg)
		if err != nil {
			return nil, err
		}
		c.key.Store(k)
	}
	if cfg.ClientKeyFile != "" {
		raw, err := os.ReadFile(cfg.ClientKeyFile)
		if err != nil {
			return nil, fmt.Errorf("client_key_file: %w", err)
		}
		k, err := parseClientKey("client_key_file", raw, cfg.ClientKeyID, cfg.ClientKeyAlg)
		if err != nil {
			return nil, err
		}
		c.key.Store(k)
		c.keyStamp = sha256.Sum256(raw)
	}
	if cfg.TLSClientCertFile != "" {
		certPEM, keyPEM, stamp, err := c.readCert()
		if err != nil {
			return nil, err
		}
		pair, err := parseClientCert(certPEM, keyPEM, now())
		if err != nil {
			return nil, err
		}
		c.cert.Store(pair)
		c.certStamp = stamp
	}
	return c, nil
}

// readCert reads the certificate and its key, and stamps the two together.
func (c *clientCreds) readCert() (certPEM, keyPEM []byte, stamp [sha256.Size]byte, err error) {
	if certPEM, err = os.ReadFile(c.cfg.TLSClientCertFile); err != nil {
		return nil, nil, stamp, fmt.Errorf("tls_client_cert_file: %w", err)
	}
	if keyPEM, err = os.ReadFile(c.cfg.TLSClientKeyFile); err != nil {
		return nil, nil, stamp, fmt.Errorf("tls_client_key_file: %w", err)
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	copy(stamp[:], h.Sum(nil))
	return certPEM, keyPEM, stamp, nil
}

// signingKey is the private_key_jwt key to sign with now.
func (c *clientCreds) signingKey() *clientKey {
	c.maybeReload()
	return c.key.Load()
}

// clientCertificate is tls.Config.GetClientCertificate: the certificate
// in use at each new connection's handshake.
func (c *clientCreds) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.maybeReload()
	if pair := c.cert.Load(); pair != nil {
		return pair, nil
	}
	return &tls.Certificate{}, nil // none configured: no certificate sent
}

// maybeReload reads the files again once clientFilesCheckInterval has
// passed since the last look.
func (c *clientCreds) maybeReload() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.checked) < clientFilesCheckInterval {
		return
	}
	c.checked = now
	if c.cfg.ClientKeyFile != "" {
		c.reloadKey()
	}
	if c.cfg.TLSClientCertFile != "" {
		c.reloadCert(now)
	}
}

// reloadKey applies a changed key file, or logs once why it cannot.
func (c *clientCreds) reloadKey() {
	raw, err := os.ReadFile(c.cfg.ClientKeyFile)
	var stamp [sha256.Size]byte
	if err == nil {
		stamp = sha256.Sum256(raw)
	}
	if stamp == c.keyStamp {
		return
	}
	c.keyStamp = stamp
	var k *clientKey
	if err != nil {
		err = fmt.Errorf("client_key_file: %w", err)
	} else {
		k, err = parseClientKey("client_key_file", raw, c.cfg.ClientKeyID, c.cfg.ClientKeyAlg)
	}
	if err != nil {
		c.logger.Error("oidcflow: client key file changed but cannot be used; keeping the key in use", slog.Any("error", err))
		return
	}
	c.key.Store(k)
	c.logger.Info("oidcflow: client key reloaded", slog.String("kid", k.kid), slog.String("alg", string(k.alg)))
}

// reloadCert applies a changed certificate or key file, or logs once why
// it cannot (an expired certificate included).
func (c *clientCreds) reloadCert(now time.Time) {
	certPEM, keyPEM, stamp, err := c.readCert()
	if stamp == c.certStamp {
		return
	}
	c.certStamp = stamp
	var pair *tls.Certificate
	if err == nil {
		pair, err = parseClientCert(certPEM, keyPEM, now)
	}
	if err != nil {
		c.logger.Error("oidcflow: client certificate changed but cannot be used; keeping the certificate in use", slog.Any("error", err))
		return
	}
	c.cert.Store(pair)
	c.logger.Info("oidcflow: client certificate reloaded", slog.Time("not_after", pair.Leaf.NotAfter))
	if c.onCertChange != nil {
		c.onCertChange()
	}
}

// ClientJWKS is the public key set to register at the provider for cfg's
// private_key_jwt key (envoy-bff jwks): the key's public half with its kid
// and alg, nothing private.
func ClientJWKS(cfg Config) (jose.JSONWebKeySet, error) {
	if cfg.ClientKeyFile == "" && cfg.ClientKey == "" {
		return jose.JSONWebKeySet{}, errors.New("client_key_file: not set (nor client_key): there is no client key to publish")
	}
	k, err := clientKeyOf(cfg)
	if err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.publicJWK()}}, nil
}
