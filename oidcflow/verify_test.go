package oidcflow

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestVerifyIDToken covers T30 claim by claim, with tokens signed here.
func TestVerifyIDToken(t *testing.T) {
	t.Parallel()
	const iss, client, nonce = "https://idp.example", "envoy-bff", "the-nonce"
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	otherSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: other}, nil)
	verifier := oidc.NewVerifier(iss, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}}, &oidc.Config{ClientID: client, Now: func() time.Time { return now }})
	atHash := func(at string) string {
		s := sha256.Sum256([]byte(at))
		return base64.RawURLEncoding.EncodeToString(s[:16])
	}
	base := func() map[string]any {
		return map[string]any{"iss": iss, "sub": "u1", "aud": client, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(),
			"nonce": nonce, "sid": "op-sid", "at_hash": atHash("the-at")}
	}
	sign := func(s jose.Signer, claims map[string]any) string {
		raw, err := jwt.Signed(s).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	for _, tc := range []struct {
		name   string
		edit   func(map[string]any)
		signer jose.Signer
		raw    string
		ok     bool
	}{
		{name: "valid", edit: func(map[string]any) {}, ok: true},
		{name: "valid_azp_and_several_audiences", edit: func(c map[string]any) { c["aud"] = []string{client, "api"}; c["azp"] = client }, ok: true},
		{name: "T30_nonce_wrong", edit: func(c map[string]any) { c["nonce"] = "other" }},
		{name: "T30_nonce_missing", edit: func(c map[string]any) { delete(c, "nonce") }},
		{name: "T30_aud_lacks_client", edit: func(c map[string]any) { c["aud"] = "someone-else" }},
		{name: "T30_azp_other", edit: func(c map[string]any) { c["azp"] = "someone-else" }},
		{name: "T30_several_audiences_no_azp", edit: func(c map[string]any) { c["aud"] = []string{client, "api"} }},
		{name: "T30_iss_inexact_trailing_slash", edit: func(c map[string]any) { c["iss"] = iss + "/" }},
		{name: "T30_iss_other", edit: func(c map[string]any) { c["iss"] = "https://evil.example" }},
		{name: "expired", edit: func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }},
		{name: "T41_iat_in_the_future_beyond_leeway", edit: func(c map[string]any) { c["iat"] = now.Add(idTokenLeeway + time.Second).Unix() }},
		{name: "iat_in_the_future_inside_leeway", edit: func(c map[string]any) { c["iat"] = now.Add(idTokenLeeway).Unix() }, ok: true},
		{name: "at_hash_mismatch", edit: func(c map[string]any) { c["at_hash"] = atHash("another-at") }},
		{name: "T34_bad_signature", edit: func(map[string]any) {}, signer: otherSigner},
		{name: "T40_oversized", raw: strings.Repeat("a", maxIDTokenLen+1)},
		{name: "T40_many_dots", raw: strings.Repeat(".", 1000)},
		{name: "empty", raw: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := tc.raw
			if tc.edit != nil {
				c := base()
				tc.edit(c)
				s := signer
				if tc.signer != nil {
					s = tc.signer
				}
				raw = sign(s, c)
			}
			got, err := verifyIDToken(t.Context(), verifier, raw, idCheck{clientID: client, nonce: nonce, checkNonce: true, accessToken: "the-at", now: now})
			if tc.ok {
				if err != nil || got.sid != "op-sid" || got.token.Subject != "u1" || !strings.Contains(string(got.claims), `"sub":"u1"`) {
					t.Fatalf("valid token refused: %v", err)
				}
				return
			}
			if !errors.Is(err, errIDToken) {
				t.Fatalf("err = %v, want errIDToken", err)
			}
		})
	}
}
