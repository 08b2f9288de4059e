package oidcflow

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DPoP signing algorithms (Config.DPoPAlg). EdDSA is chosen when the
// provider lists it: it signs a proof for about half the CPU of ES256 and
// keeps a DPoP Check over gRPC under 1.5× a Bearer one, which ES256 does
// not (docs/fapi.md's figures); ES256 is the fallback every DPoP provider
// accepts.
const (
	DPoPAlgES256 = "ES256"
	DPoPAlgEdDSA = "EdDSA"
)

// TokenTypeDPoP is the token_type of a DPoP-bound access token (RFC 9449 §5).
const TokenTypeDPoP = "DPoP"

// errDPoPKey is any problem with a stored DPoP key; its text never carries
// key material.
var errDPoPKey = errors.New("dpop key unusable")

// errDPoPNotBound is a token response to a request with a DPoP proof whose
// token_type is not DPoP: the provider did not bind the token, and a
// frontend that asked for DPoP never uses it as a bearer token.
var errDPoPNotBound = errors.New("provider answered a DPoP proof with a token that is not DPoP-bound")

// DPoPKey is one session's DPoP key pair, ready to sign proofs: the
// protected header with the public JWK is encoded once, and the `ath` of
// the last access token is remembered, so a proof costs one signature and
// a few appends. Its private half is never logged or printed (String,
// Format and LogValue show the thumbprint only). It is safe for concurrent use.
type DPoPKey struct {
	alg  string
	ec   *ecdsa.PrivateKey  // ES256
	ed   ed25519.PrivateKey // EdDSA
	head string             // base64url(protected header) + "."
	jkt  string             // RFC 7638 SHA-256 thumbprint of the public JWK, base64url
	der  []byte             // PKCS#8, for the sealed records
	ath  atomic.Pointer[athMemo]
}

// athMemo is the `ath` of one access token.
type athMemo struct{ token, ath string }

// GenerateDPoPKey makes a fresh key pair for alg (DPoPAlgES256 or
// DPoPAlgEdDSA) from r.
func GenerateDPoPKey(alg string, r io.Reader) (*DPoPKey, error) {
	switch alg {
	case DPoPAlgES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), r)
		if err != nil {
			return nil, fmt.Errorf("generate dpop key: %w", err)
		}
		return newDPoPKey(k)
	case DPoPAlgEdDSA:
		_, k, err := ed25519.GenerateKey(r)
		if err != nil {
			return nil, fmt.Errorf("generate dpop key: %w", err)
		}
		return newDPoPKey(k)
	default:
		return nil, fmt.Errorf("generate dpop key: %w: algorithm %q", errDPoPKey, alg)
	}
}

// ParseDPoPKey reads a key as DPoPKey.Marshal wrote it (PKCS#8 DER of a
// P-256 or Ed25519 private key).
func ParseDPoPKey(der []byte) (*DPoPKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: not PKCS#8", errDPoPKey) // the parser's text could quote the bytes
	}
	return newDPoPKey(k)
}

// newDPoPKey precomputes the header, thumbprint and encoding of k.
func newDPoPKey(k any) (*DPoPKey, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var (
		out       = &DPoPKey{}
		jwk, tpIn string
	)
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("%w: EC key not on P-256", errDPoPKey)
		}
		pub, err := k.PublicKey.ECDH()
		if err != nil {
			return nil, fmt.Errorf("%w: EC public key", errDPoPKey)
		}
		raw := pub.Bytes() // 0x04 || X || Y
		x, y := b64(raw[1:33]), b64(raw[33:65])
		// Members in lexicographic order: the same text is the RFC 7638
		// thumbprint input and the header's jwk.
		tpIn = `{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`
		jwk = tpIn
		out.alg, out.ec = DPoPAlgES256, k
	case ed25519.PrivateKey:
		tpIn = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(k.Public().(ed25519.PublicKey)) + `"}`
		jwk = tpIn
		out.alg, out.ed = DPoPAlgEdDSA, k
	default:
		return nil, fmt.Errorf("%w: %T is neither P-256 nor Ed25519", errDPoPKey, k)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: encode", errDPoPKey)
	}
	tp := sha256.Sum256([]byte(tpIn))
	out.jkt = b64(tp[:])
	out.der = der
	out.head = b64([]byte(`{"typ":"dpop+jwt","alg":"`+out.alg+`","jwk":`+jwk+`}`)) + "."
	return out, nil
}

// Alg is the key's JWS algorithm.
func (k *DPoPKey) Alg() string { return k.alg }

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url: the `cnf.jkt` of tokens bound to it.
func (k *DPoPKey) Thumbprint() string { return k.jkt }

// Marshal is the private key as PKCS#8 DER, for sealed records only.
func (k *DPoPKey) Marshal() []byte { return append([]byte(nil), k.der...) }

// String names the key by its thumbprint; the private key never prints.
func (k *DPoPKey) String() string { return "dpop-key(" + k.alg + " jkt=" + k.jkt + ")" }

// GoString is String, so %#v prints no key either.
func (k *DPoPKey) GoString() string { return k.String() }

// Format prints String for every verb.
func (k *DPoPKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// LogValue implements slog.LogValuer: the thumbprint only.
func (k *DPoPKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// DPoPProof is what one proof says (RFC 9449 §4.2).
type DPoPProof struct {
	// Method is the request's method (htm).
	Method string
	// URL is the request's URL without query or fragment (htu).
	URL string
	// IssuedAt is iat.
	IssuedAt time.Time
	// Nonce is the server's DPoP-Nonce, "" when none is known.
	Nonce string
	// AccessToken, when set, adds ath: proofs to resource servers carry it,
	// proofs to the token endpoint do not.
	AccessToken string
}

// jtiBytes is the randomness of one jti: 128 bits (RFC 9449 asks for 96 or more).
const jtiBytes = 16

// Sign makes a proof: a compact JWS with a fresh random jti from rand.
func (k *DPoPKey) Sign(rand io.Reader, p DPoPProof) (string, error) {
	var jti [jtiBytes]byte
	if _, err := io.ReadFull(rand, jti[:]); err != nil {
		return "", fmt.Errorf("dpop proof jti: %w", err)
	}
	var scratch [384]byte
	payload := append(scratch[:0], `{"jti":"`...)
	payload = base64.RawURLEncoding.AppendEncode(payload, jti[:])
	payload = append(payload, `","htm":`...)
	payload = appendJSONString(payload, p.Method)
	payload = append(payload, `,"htu":`...)
	payload = appendJSONString(payload, p.URL)
	payload = append(payload, `,"iat":`...)
	payload = strconv.AppendInt(payload, p.IssuedAt.Unix(), 10)
	if p.AccessToken != "" {
		payload = append(payload, `,"ath":"`...)
		payload = append(payload, k.accessTokenHash(p.AccessToken)...)
		payload = append(payload, '"')
	}
	if p.Nonce != "" {
		payload = append(payload, `,"nonce":`...)
		payload = appendJSONString(payload, p.Nonce)
	}
	payload = append(payload, '}')

	enc := base64.RawURLEncoding
	out := make([]byte, 0, len(k.head)+enc.EncodedLen(len(payload))+1+enc.EncodedLen(ed25519.SignatureSize))
	out = append(out, k.head...)
	out = enc.AppendEncode(out, payload)
	var sig [64]byte
	switch {
	case k.ec != nil:
		digest := sha256.Sum256(out)
		der, err := ecdsa.SignASN1(rand, k.ec, digest[:])
		if err != nil {
			return "", fmt.Errorf("sign dpop proof: %w", err)
		}
		if !rawECDSASignature(der, sig[:]) {
			return "", errors.New("sign dpop proof: malformed ECDSA signature")
		}
	default:
		copy(sig[:], ed25519.Sign(k.ed, out))
	}
	out = append(out, '.')
	out = enc.AppendEncode(out, sig[:])
	return string(out), nil
}

// accessTokenHash is ath: base64url(SHA-256(token)), remembered for the
// last token so a session's Checks hash it once per token.
func (k *DPoPKey) accessTokenHash(token string) string {
	if m := k.ath.Load(); m != nil && m.token == token {
		return m.ath
	}
	sum := sha256.Sum256([]byte(token))
	m := &athMemo{token: token, ath: base64.RawURLEncoding.EncodeToString(sum[:])}
	k.ath.Store(m)
	return m.ath
}

// rawECDSASignature turns an ASN.1 ECDSA signature into JWS's fixed
// 32+32-byte r||s in out. A P-256 signature is at most 72 bytes, so every
// length is in DER's short form.
func rawECDSASignature(der []byte, out []byte) bool {
	if len(der) < 2 || der[0] != 0x30 || int(der[1]) != len(der)-2 || der[1] >= 0x80 {
		return false
	}
	rest := der[2:]
	for i := range 2 {
		if len(rest) < 2 || rest[0] != 0x02 || rest[1] >= 0x80 || int(rest[1]) > len(rest)-2 {
			return false
		}
		n := int(rest[1])
		if !putScalar(rest[2:2+n], out[32*i:32*(i+1)]) {
			return false
		}
		rest = rest[2+n:]
	}
	return len(rest) == 0
}

// putScalar writes a positive ASN.1 INTEGER's big-endian bytes right-aligned into dst.
func putScalar(v []byte, dst []byte) bool {
	for len(v) > 0 && v[0] == 0 {
		v = v[1:]
	}
	if len(v) > len(dst) {
		return false
	}
	clear(dst)
	copy(dst[len(dst)-len(v):], v)
	return true
}

// appendJSONString appends s as a JSON string: printable ASCII as it is
// (a URL's usual case), anything else through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// DPoPURL is a proof's htu for scheme, authority and path: the URL without
// query or fragment, scheme and host lower-cased (RFC 9449 §4.3 compares
// them after normalisation).
func DPoPURL(scheme, authority, path string) string {
	if path == "" {
		path = "/"
	}
	return strings.ToLower(scheme) + "://" + strings.ToLower(authority) + path
}

// dpopKeyCtx carries a session's DPoP key to the provider transport.
type dpopKeyCtx struct{}

// WithDPoPKey returns ctx carrying key: the token and PAR requests made
// with it carry proofs by that key (dpopTransport).
func WithDPoPKey(ctx context.Context, key *DPoPKey) context.Context {
	return context.WithValue(ctx, dpopKeyCtx{}, key)
}

// dpopKeyFrom is the key WithDPoPKey put in ctx, or nil.
func dpopKeyFrom(ctx context.Context) *DPoPKey {
	k, _ := ctx.Value(dpopKeyCtx{}).(*DPoPKey)
	return k
}

// DefaultDPoPKeyCache is how many parsed session keys DPoPKeys keeps.
const DefaultDPoPKeyCache = 10000

// DPoPKeys turns the sealed key bytes of session records into ready
// DPoPKeys, keeping up to max of them, so a Check parses a session's key
// once, not per request. It is safe for concurrent use.
type DPoPKeys struct {
	max  int
	mu   sync.RWMutex
	keys map[string]*DPoPKey // by PKCS#8 bytes
}

// NewDPoPKeys is a cache of at most limit keys (DefaultDPoPKeyCache if max <= 0).
func NewDPoPKeys(limit int) *DPoPKeys {
	if limit <= 0 {
		limit = DefaultDPoPKeyCache
	}
	return &DPoPKeys{max: limit, keys: make(map[string]*DPoPKey)}
}

// Get returns the key stored as der.
func (c *DPoPKeys) Get(der []byte) (*DPoPKey, error) {
	c.mu.RLock()
	k, ok := c.keys[string(der)]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	k, err := ParseDPoPKey(der)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) >= c.max {
		for old := range c.keys { // evict one arbitrary key: the map stays bounded
			delete(c.keys, old)
			break
		}
	}
	c.keys[string(der)] = k
	return k, nil
}
