package oidcflow

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/envoy-bff/envoy-bff/session"
)

// randomBytes is the entropy of state, nonce, PKCE verifier, login-cookie
// value and minted sid: 256 bits, 43 characters of base64url (the PKCE
// verifier is then exactly oauth2.GenerateVerifier's shape, but drawn from
// the injected source).
const randomBytes = 32

// randomString draws randomBytes from r as unpadded base64url.
func randomString(r io.Reader, what string) (string, error) {
	b := make([]byte, randomBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("draw %s: %w", what, err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// idTag names a session in logs: a short prefix of a hash of its ID, which
// identifies it across log lines without revealing it.
func idTag(id session.ID) string {
	sum := sha256.Sum256(id[:])
	return hex.EncodeToString(sum[:4])
}
