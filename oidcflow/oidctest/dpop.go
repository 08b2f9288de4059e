package oidctest

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DPoP proof checks (RFC 9449 §4.3), shared by the provider's token
// endpoint and the sample API. They are written against go-jose, apart
// from envoy-bff's own signer, so a bug there cannot hide itself.

// ErrInvalidDPoPProof is every reason a DPoP proof is refused.
var ErrInvalidDPoPProof = errors.New("invalid_dpop_proof")

// DPoPAlgs are the proof algorithms accepted (dpop_signing_alg_values_supported).
var DPoPAlgs = []string{"ES256", "EdDSA"}

// DPoPLeeway is how far a proof's iat may be from the verifier's clock.
const DPoPLeeway = 60 * time.Second

// maxProofLen bounds the proofs parsed.
const maxProofLen = 8 << 10

// DPoPCheck is what a proof must match.
type DPoPCheck struct {
	// Method and URL are the request as the verifier received it (URL
	// without query or fragment).
	Method, URL string
	// AccessToken, when set, must be hashed in the proof's ath.
	AccessToken string
	// Nonce, when set, must be the proof's nonce.
	Nonce string
	// Now is the verifier's clock.
	Now time.Time
}

// DPoPProof is a verified proof.
type DPoPProof struct {
	// JKT is the RFC 7638 SHA-256 thumbprint of the proof's key, base64url.
	JKT string
	// JTI is its unique ID; the verifier refuses it a second time.
	JTI string
	// Nonce is the nonce it carries ("" for none).
	Nonce string
}

// proofClaims are the payload members RFC 9449 defines.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   *int64 `json:"iat"`
	ATH   string `json:"ath"`
	Nonce string `json:"nonce"`
}

// VerifyDPoPProof checks one proof against want: typ dpop+jwt, an allowed
// asymmetric alg, a public jwk that verifies the signature, htm and htu
// equal to the request's, iat within DPoPLeeway, ath (when an access token
// is given) and nonce (when one is required). The caller checks that the
// jti is new. Errors wrap ErrInvalidDPoPProof; a missing or wrong nonce
// wraps ErrUseDPoPNonce as well.
func VerifyDPoPProof(raw string, want DPoPCheck) (DPoPProof, error) {
	bad := func(format string, args ...any) (DPoPProof, error) {
		return DPoPProof{}, fmt.Errorf("%w: "+format, append([]any{ErrInvalidDPoPProof}, args...)...)
	}
	if raw == "" || len(raw) > maxProofLen {
		return bad("missing or oversized")
	}
	algs := make([]jose.SignatureAlgorithm, len(DPoPAlgs))
	for i, a := range DPoPAlgs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return bad("not a compact JWS with an allowed algorithm")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return bad("typ %q", typ)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		return bad("no public jwk in the header")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return bad("signature does not verify with its jwk")
	}
	var c proofClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return bad("payload is not JSON")
	}
	switch {
	case len(c.JTI) < 12:
		return bad("jti missing or too short")
	case c.HTM != want.Method:
		return bad("htm %q is not the request's method", c.HTM)
	case !sameHTU(c.HTU, want.URL):
		return bad("htu %q is not the request's URL", c.HTU)
	case c.IAT == nil:
		return bad("iat missing")
	}
	if d := time.Unix(*c.IAT, 0).Sub(want.Now); d > DPoPLeeway || d < -DPoPLeeway {
		return bad("iat %s from now", d.Round(time.Second))
	}
	if want.AccessToken != "" {
		sum := sha256.Sum256([]byte(want.AccessToken))
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(base64.RawURLEncoding.EncodeToString(sum[:]))) != 1 {
			return bad("ath is not the hash of the access token")
		}
	}
	if want.Nonce != "" && c.Nonce != want.Nonce {
		return DPoPProof{}, fmt.Errorf("%w: %w", ErrInvalidDPoPProof, ErrUseDPoPNonce)
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return bad("jwk thumbprint")
	}
	return DPoPProof{JKT: base64.RawURLEncoding.EncodeToString(tp), JTI: c.JTI, Nonce: c.Nonce}, nil
}

// ErrUseDPoPNonce is a proof without the nonce the server requires.
var ErrUseDPoPNonce = errors.New("use_dpop_nonce")

// sameHTU compares htu values as RFC 9449 §4.3 asks: without query and
// fragment, scheme and host case-insensitively.
func sameHTU(got, want string) bool {
	norm := func(u string) string {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			u = u[:i]
		}
		scheme, rest, ok := strings.Cut(u, "://")
		if !ok {
			return u
		}
		host, path, _ := strings.Cut(rest, "/")
		return strings.ToLower(scheme) + "://" + strings.ToLower(host) + "/" + path
	}
	return got != "" && norm(got) == norm(want)
}

// JTICache remembers proof jtis until they could no longer pass the iat
// check, so a replayed proof is refused. Not safe for concurrent use: the
// caller locks.
type JTICache struct {
	seen map[string]time.Time // jti → when it may be forgotten
}

// Fresh records jti at now and reports whether it was unseen.
func (c *JTICache) Fresh(jti string, now time.Time) bool {
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	if len(c.seen) > 10000 {
		for k, until := range c.seen {
			if now.After(until) {
				delete(c.seen, k)
			}
		}
	}
	if until, ok := c.seen[jti]; ok && !now.After(until) {
		return false
	}
	c.seen[jti] = now.Add(2 * DPoPLeeway)
	return true
}

// dpopAtToken checks the token request's DPoP header, if any: "" without
// one, else the proof's key thumbprint. A failure answers 400
// invalid_dpop_proof, or use_dpop_nonce with a DPoP-Nonce header when the
// provider requires a nonce (RequireDPoPNonce) and the proof lacks it.
func (p *Provider) dpopAtToken(w http.ResponseWriter, r *http.Request, issuer string) (jkt string, ok bool) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) == 0 {
		return "", true
	}
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.DPoPProofs++
	want := DPoPCheck{Method: r.Method, URL: issuer + PathToken, Now: now}
	if p.cfg.RequireDPoPNonce {
		if p.dpopNonce == "" {
			p.dpopNonce = p.random(16)
		}
		want.Nonce = p.dpopNonce
	}
	var proof DPoPProof
	var err error
	if len(proofs) > 1 {
		err = fmt.Errorf("%w: more than one DPoP header", ErrInvalidDPoPProof)
	} else {
		proof, err = VerifyDPoPProof(proofs[0], want)
	}
	switch {
	case errors.Is(err, ErrUseDPoPNonce):
		p.stats.DPoPNonceChallenges++
		w.Header().Set("DPoP-Nonce", p.dpopNonce)
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce"`)
		writeOAuthError(w, http.StatusBadRequest, "use_dpop_nonce", "the authorization server requires a nonce in the DPoP proof")
		return "", false
	case err != nil:
		writeOAuthError(w, http.StatusBadRequest, "invalid_dpop_proof", "the DPoP proof is not valid")
		return "", false
	case !p.dpopJTIs.Fresh(proof.JTI, now):
		writeOAuthError(w, http.StatusBadRequest, "invalid_dpop_proof", "the DPoP proof was used before")
		return "", false
	}
	if want.Nonce != "" {
		w.Header().Set("DPoP-Nonce", p.dpopNonce)
	}
	return proof.JKT, true
}

// SetDPoPNonce changes the nonce the provider requires (RequireDPoPNonce),
// as a server rotating its nonces does; the next proof with the old one
// gets use_dpop_nonce.
func (p *Provider) SetDPoPNonce(nonce string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dpopNonce = nonce
}
