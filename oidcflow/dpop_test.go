package oidcflow

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// parsedProof is a proof verified independently of the signer, with go-jose.
type parsedProof struct {
	typ, alg string
	jwk      *jose.JSONWebKey
	claims   map[string]any
}

func verifyProofForTest(t *testing.T, proof string) parsedProof {
	t.Helper()
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA})
	if err != nil {
		t.Fatalf("proof does not parse as a JWS: %v", err)
	}
	h := jws.Signatures[0].Protected
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() {
		t.Fatalf("proof header has no public jwk")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("proof signature does not verify with its own jwk: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatalf("payload: %v", err)
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	return parsedProof{typ: typ, alg: h.Algorithm, jwk: h.JSONWebKey, claims: claims}
}

func TestDPoPProofClaimsAndSignature(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	for _, alg := range []string{DPoPAlgES256, DPoPAlgEdDSA} {
		for _, tc := range []struct {
			name  string
			proof DPoPProof
		}{
			{"token_endpoint", DPoPProof{Method: "POST", URL: "https://op.example/token", IssuedAt: now}},
			{"with_nonce", DPoPProof{Method: "POST", URL: "https://op.example/token", IssuedAt: now, Nonce: "n-1"}},
			{"resource_with_ath", DPoPProof{Method: "GET", URL: "https://app.example/api/x", IssuedAt: now, AccessToken: "tok.en.value"}},
			{"url_needing_escapes", DPoPProof{Method: "GET", URL: `https://app.example/a"b\c<é>`, IssuedAt: now, AccessToken: "t"}},
		} {
			t.Run(alg+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				key, err := GenerateDPoPKey(alg, rand.Reader)
				if err != nil {
					t.Fatal(err)
				}
				raw, err := key.Sign(rand.Reader, tc.proof)
				if err != nil {
					t.Fatal(err)
				}
				p := verifyProofForTest(t, raw)
				if p.typ != "dpop+jwt" || p.alg != alg {
					t.Errorf("typ %q alg %q, want dpop+jwt %s", p.typ, p.alg, alg)
				}
				tp, err := p.jwk.Thumbprint(crypto.SHA256)
				if err != nil || base64.RawURLEncoding.EncodeToString(tp) != key.Thumbprint() {
					t.Errorf("Thumbprint %q is not the jwk's RFC 7638 thumbprint (%v)", key.Thumbprint(), err)
				}
				if p.claims["htm"] != tc.proof.Method || p.claims["htu"] != tc.proof.URL {
					t.Errorf("htm %v htu %v, want %s %s", p.claims["htm"], p.claims["htu"], tc.proof.Method, tc.proof.URL)
				}
				if iat, _ := p.claims["iat"].(float64); int64(iat) != now.Unix() {
					t.Errorf("iat %v, want %d", p.claims["iat"], now.Unix())
				}
				if jti, _ := p.claims["jti"].(string); len(jti) < 16 {
					t.Errorf("jti %q: want at least 96 random bits", jti)
				}
				wantNonce := any(nil)
				if tc.proof.Nonce != "" {
					wantNonce = tc.proof.Nonce
				}
				if p.claims["nonce"] != wantNonce {
					t.Errorf("nonce %v, want %v", p.claims["nonce"], wantNonce)
				}
				wantAth := any(nil)
				if tc.proof.AccessToken != "" {
					sum := sha256.Sum256([]byte(tc.proof.AccessToken))
					wantAth = base64.RawURLEncoding.EncodeToString(sum[:])
				}
				if p.claims["ath"] != wantAth {
					t.Errorf("ath %v, want %v", p.claims["ath"], wantAth)
				}
			})
		}
	}
}

// TestDPoPProofsUnique: every proof gets its own jti, and ath follows the
// token when it changes (the memo never serves an old token's hash).
func TestDPoPProofsUnique(t *testing.T) {
	t.Parallel()
	key, err := GenerateDPoPKey(DPoPAlgES256, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 50 {
		tok := fmt.Sprintf("token-%d", i/10)
		raw, err := key.Sign(rand.Reader, DPoPProof{Method: "GET", URL: "https://a/x", IssuedAt: time.Now(), AccessToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		p := verifyProofForTest(t, raw)
		jti := p.claims["jti"].(string)
		if seen[jti] {
			t.Fatalf("jti %q repeated", jti)
		}
		seen[jti] = true
		sum := sha256.Sum256([]byte(tok))
		if p.claims["ath"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Fatalf("proof %d: ath is not the hash of %q", i, tok)
		}
	}
}

func TestDPoPKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{DPoPAlgES256, DPoPAlgEdDSA} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			key, err := GenerateDPoPKey(alg, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseDPoPKey(key.Marshal())
			if err != nil {
				t.Fatal(err)
			}
			if back.Thumbprint() != key.Thumbprint() || back.Alg() != alg {
				t.Errorf("parsed key %v, want %v", back, key)
			}
			cache := NewDPoPKeys(1)
			a, err := cache.Get(key.Marshal())
			if err != nil || a.Thumbprint() != key.Thumbprint() {
				t.Fatalf("cache Get: %v %v", a, err)
			}
			if b, _ := cache.Get(key.Marshal()); b != a {
				t.Error("a second Get parsed the key again")
			}
		})
	}
	for _, bad := range [][]byte{nil, []byte("not a key"), mustRSAPKCS8(t)} {
		if _, err := ParseDPoPKey(bad); err == nil {
			t.Errorf("ParseDPoPKey(%d bytes) accepted a key that is neither P-256 nor Ed25519", len(bad))
		}
	}
	if _, err := GenerateDPoPKey("RS256", rand.Reader); err == nil {
		t.Error("GenerateDPoPKey accepted RS256")
	}
}

// TestDPoPKeyNeverPrinted (T78): no way of printing or logging a key shows
// its private half.
func TestDPoPKeyNeverPrinted(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{DPoPAlgES256, DPoPAlgEdDSA} {
		key, err := GenerateDPoPKey(alg, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var secret []byte
		if key.ec != nil {
			secret, err = key.ec.Bytes()
			if err != nil {
				t.Fatal(err)
			}
		} else {
			secret = key.ed.Seed()
		}
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logs, nil))
		logger.Info("k", "key", key, "wrapped", struct{ K *DPoPKey }{key})
		out := logs.String() + fmt.Sprintf("%v %+v %#v %s %q", key, key, key, key, key) + fmt.Sprint(struct{ K *DPoPKey }{key})
		for _, enc := range []string{
			hex.EncodeToString(secret), base64.StdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret),
			base64.StdEncoding.EncodeToString(key.der), string(key.der),
		} {
			if strings.Contains(out, enc) {
				t.Fatalf("%s private key printed: %s", alg, out)
			}
		}
		if !strings.Contains(out, key.Thumbprint()) {
			t.Errorf("printed key does not name its thumbprint: %s", out)
		}
	}
}

func mustRSAPKCS8(t *testing.T) []byte {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(testRSAPKCS8)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// testRSAPKCS8 is a 1024-bit RSA key (PKCS#8), only to be refused.
const testRSAPKCS8 = "MIICdwIBADANBgkqhkiG9w0BAQEFAASCAmEwggJdAgEAAoGBAM94MY7x9GjOglmheuVav8V2acH/TLtoHSUMJD49eOT1Vrw9j8oP1o8j0fYK0jpZOsfc/orJPQaPZGeZLbvZfFZKxnI5GcNwchdEY4GQKFzoZP/3dqLmIq0zVcmD5z6gIGrQhyYUu5/tN+lQ9aTYp0WJQu/F5GCM1iSnxAGKADrzAgMBAAECgYEAntKKTb2XtuvwCaF+rTlteUKO7337RbQMK6JB1IvGkq/l+DDAdJTvUaDASLQ7/4LzZrEdAy3O08jNuikfQ6DYdu1zPrkB+3qAUzfQmtvvEzN/4OO57HLSNkSsoXoLlBxnPScN8v/qcmLLZa5cqRPe1dN9VKOtSOz9S5M/rc0p/RECQQDyjeoNwYEOshCj8u+uKIuwg7f/PGmBFiNz2ct1Q3xdAh3HvwpDzhUiMXkKODtuR2fvaYCkWNXVnR24/RT7ClmfAkEA2vhkBVYsyPJ2QGijC53peS2gAKm/MVCfTqj/PNAzvseB0It6itxyXY3R1xozhMQNeO5s/jRa2fh+/s2dBjNGLQJAH1rpHs4c+OFb9VW6VjE3naHpbz1IBj/uZVOKUaZftUZIw0GW+hzx7nGmzANo62CftvtUfepd+jdNWFSfGbTE0QJBAKeEKTiv8XkVjIO/ySRE/W04C1UWh28Zx5Ys0X7bpQqJpHU/j1MWTOPncCZIJCuotMnUVUuwD+T7J2SVNlCc/00CQEGHSZYDGhpzBl0r2kIyjrTFSJERR4Ed9N5EGqON87ID4ot7cngAp2/zCgeKDUrVYXiGp8IEYBIIIvHMRXTtzDc="

// BenchmarkDPoPSign is one proof with ath, per algorithm: what a DPoP
// Check adds over a Bearer one (see BenchmarkCheckDPoP in authz).
func BenchmarkDPoPSign(b *testing.B) {
	for _, alg := range []string{DPoPAlgES256, DPoPAlgEdDSA} {
		b.Run(alg, func(b *testing.B) {
			key, err := GenerateDPoPKey(alg, rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			p := DPoPProof{Method: "POST", URL: "https://app.example.com/api/orders/42", IssuedAt: time.Now(), AccessToken: strings.Repeat("t", 900)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := key.Sign(rand.Reader, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
