package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// TestJWKSCommand: `envoy-bff jwks` prints the public half of a
// frontend's private_key_jwt key with the kid and alg envoy-bff signs
// with, nothing private; a frontend without a key, an unknown frontend and
// a bad key file are errors naming what to fix.
func TestJWKSCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	keyFile := filepath.Join(dir, "client.key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withKey := strings.Replace(string(raw), "  client_secret: s3cret\n",
		"  client_auth: private_key_jwt\n  client_key_file: "+keyFile+"\n", 1)
	cfgFile := filepath.Join(dir, "fapi.yaml")
	if err := os.WriteFile(cfgFile, []byte(withKey), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte(strings.Replace(withKey, keyFile, filepath.Join(dir, "missing.key"), 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"jwks", "--config", cfgFile}, &out, &errOut, env(nil), nil); code != 0 {
		t.Fatalf("code %d: %s", code, errOut.String())
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(out.String()), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("output is not a one-key JWKS (%v):\n%s", err, out.String())
	}
	k := set.Keys[0]
	tp, _ := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if !k.IsPublic() || k.KeyID != base64.RawURLEncoding.EncodeToString(tp) || k.Algorithm != "ES256" || k.Use != "sig" {
		t.Errorf("key kid %q alg %q use %q public %v", k.KeyID, k.Algorithm, k.Use, k.IsPublic())
	}
	if strings.Contains(out.String(), `"d"`) {
		t.Error("the private part was printed")
	}

	for _, tc := range []struct {
		args     []string
		wantCode int
		want     string
	}{
		{[]string{"jwks", "--help"}, 0, "Usage: envoy-bff jwks --config FILE"},
		{[]string{"help", "jwks"}, 0, "Rotating the client key"},
		{[]string{"jwks"}, 2, "--config is required"},
		{[]string{"jwks", "--config", "testdata/valid.yaml"}, 1, "oidc.client_key_file: not set"},
		{[]string{"jwks", "--config", cfgFile, "--frontend", "shop"}, 2, "name one of the frontends with --frontend: default"},
		{[]string{"jwks", "--config", badFile}, 1, "oidc.client_key_file: open "},
	} {
		var out, errOut strings.Builder
		code := run(t.Context(), tc.args, &out, &errOut, env(nil), nil)
		if all := out.String() + errOut.String(); code != tc.wantCode || !strings.Contains(all, tc.want) {
			t.Errorf("%v: code %d, output %q; want %d and %q", tc.args, code, all, tc.wantCode, tc.want)
		}
		if strings.Contains(out.String()+errOut.String(), string(keyPEM[30:80])) {
			t.Errorf("%v: key material printed", tc.args)
		}
	}
}
