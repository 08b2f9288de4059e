package oidctest

import (
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// signingKey is one RSA key with its key ID.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// newSigningKey generates an RSA-2048 key whose kid is its RFC 7638 thumbprint.
func newSigningKey(r io.Reader) (signingKey, error) {
	priv, err := rsa.GenerateKey(r, 2048)
	if err != nil {
		return signingKey{}, fmt.Errorf("oidctest: generate key: %w", err)
	}
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, fmt.Errorf("oidctest: thumbprint: %w", err)
	}
	return signingKey{kid: base64.RawURLEncoding.EncodeToString(tp)[:16], priv: priv}, nil
}

// sign serialises claims as a compact RS256 JWS with the given typ header ("" for none).
func (k signingKey) sign(typ string, claims any) (string, error) {
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(jose.RS256)},
	}, opts)
	if err != nil {
		return "", fmt.Errorf("oidctest: signer: %w", err)
	}
	out, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("oidctest: sign: %w", err)
	}
	return out, nil
}

// errBadToken is every reason a token presented to the provider is not its own.
var errBadToken = errors.New("oidctest: token not issued by this provider")

// maxTokenLen bounds tokens the provider parses.
const maxTokenLen = 16 << 10

// verifyJWT checks an RS256 signature by one of keys and decodes the claims
// into out; it checks nothing else.
func verifyJWT(keys []signingKey, raw string, out any) error {
	if len(raw) > maxTokenLen {
		return errBadToken
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return errBadToken
	}
	for _, k := range keys {
		if k.kid != tok.Headers[0].KeyID {
			continue
		}
		if err := tok.Claims(&k.priv.PublicKey, out); err != nil {
			return errBadToken
		}
		return nil
	}
	return errBadToken
}

// jwks renders the public keys as a JSON Web Key Set.
func jwks(keys []signingKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig",
		})
	}
	return set
}
