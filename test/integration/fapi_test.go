package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestFAPIClientAuth_T79: through real Envoy, a frontend that authenticates
// with private_key_jwt, and one with tls_client_auth (at the provider's
// mTLS endpoint aliases), logs in with PAR (the browser carries only
// client_id and request_uri), calls the API, outlives its 2s access token
// (refresh), gets a client-credentials token for a client-policy API, and
// logs out (revocation), each call authenticated by that method at a
// provider that accepts nothing else for the client. T79: no key or
// certificate material and no assertion reaches a log or the browser; a
// key file replaced by garbage is refused with a log line and logins go
// on with the key in use.
func TestFAPIClientAuth_T79(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"private_key_jwt", "tls_client_auth"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM, certPEM, leaf := fapiKeyAndCert(t, key)
			keyFile := filepath.Join(dir, "client.key")
			certFile := filepath.Join(dir, "client.crt")
			for p, b := range map[string][]byte{keyFile: keyPEM, certFile: certPEM} {
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s := startStack(t, harness.Options{
				Dir:            dir,
				AccessTokenTTL: 2 * time.Second,
				ProviderMTLS:   method == "tls_client_auth",
				APIs:           map[string]string{"svc": ""},
				PathRuleAPIs:   []string{"svc"},
				Provider: func(c *oidctest.ProviderConfig) {
					c.RequirePAR = method == "private_key_jwt" // auto follows discovery
					c.Clients[0].Secret = ""
					if method == "private_key_jwt" {
						c.Clients[0].JWKS = []jose.JSONWebKey{{Key: key.Public(), Use: "sig"}}
					} else {
						c.Clients[0].TLSClientAuth, c.Clients[0].TLSCertThumbprint = true, oidctest.CertThumbprint(leaf)
					}
				},
				BFFConfig: func(doc map[string]any) {
					o := doc["oidc"].(map[string]any)
					delete(o, "client_secret")
					o["client_auth"] = method
					o["client_tokens"] = map[string]any{"default": map[string]any{}}
					if method == "private_key_jwt" {
						o["client_key_file"] = keyFile
					} else {
						o["tls_client_cert_file"], o["tls_client_key_file"] = certFile, keyFile
						o["pushed_authorization_requests"] = "always"
					}
					doc["authz"] = map[string]any{"path_rules": []any{map[string]any{"prefix": "/svc/", "policy": "client"}}}
				},
			})
			b := newBrowser(t, s.URL)
			final, hops := b.login("/")
			if final.Status != 200 || len(hops) < 3 {
				t.Fatalf("login ended at %v with %d", hops, final.Status)
			}
			authz, err := url.Parse(hops[1])
			if err != nil {
				t.Fatal(err)
			}
			if q := authz.Query(); len(q) != 2 || q.Get("client_id") != harness.ClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("the browser went to the provider with %v, want client_id and request_uri only", q)
			}
			if r := b.api("/api/whoami"); r.Status != 200 {
				t.Fatalf("API: %d %s", r.Status, r.Body)
			}
			for n := 0; s.Provider.Stats().RefreshTokenGrants == 0; n++ {
				if n == 60 {
					t.Fatal("no refresh after 60 API calls over 6s")
				}
				if r := b.api("/api/whoami"); r.Status != 200 {
					t.Fatalf("API call %d: %d %s", n, r.Status, r.Body)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r := b.api("/svc/whoami"); r.Status != 200 {
				t.Fatalf("client-policy API: %d %s", r.Status, r.Body)
			}

			// T79: a garbage key file is refused and logged; the key in use
			// stays, so another login works. (It is the certificate's key too.)
			garbage := "-----BEGIN PRIVATE KEY-----\nZ2FyYmFnZS1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n"
			if err := os.WriteFile(keyFile, []byte(garbage), 0o600); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5100 * time.Millisecond) // the files are looked at again 5s after the last look
			other := newBrowser(t, s.URL)
			if r, hops := other.login("/"); r.Status != 200 {
				t.Fatalf("login after a bad key file: %v %d", hops, r.Status)
			}

			user := b.api("/bff/user")
			if user.Status != 200 {
				t.Fatalf("/bff/user: %d", user.Status)
			}
			if r, hops := b.follow(user.json(t)["logoutUrl"].(string)); r.Status >= 400 {
				t.Fatalf("logout ended at %v with %d", hops, r.Status)
			}
			st := s.Provider.Stats()
			if st.AuthorizationCodeGrants != 2 || st.RefreshTokenGrants < 1 || st.ClientCredentialsGrants != 1 || st.Revocations != 1 || st.PushedAuthorizationRequests != 2 {
				t.Fatalf("provider stats %+v", st)
			}
			want := st.AuthorizationCodeGrants + st.RefreshTokenGrants + st.ClientCredentialsGrants + st.Revocations + st.PushedAuthorizationRequests
			got := st.PrivateKeyJWTAuths
			if method == "tls_client_auth" {
				got = st.TLSClientAuths
			}
			if got != want {
				t.Errorf("the provider authenticated %d requests by %s, want %d (every call)", got, method, want)
			}
			logs := s.Logs(100000)
			if !strings.Contains(logs, "changed but cannot be used") {
				t.Errorf("the refused key file was not logged")
			}
			seen := b.everything() + other.everything()
			for what, secret := range map[string]string{
				"key":         string(keyPEM[28:90]),
				"certificate": string(certPEM[28:90]),
				"bad file":    "Z2FyYmFnZS1ub3QtYS1rZXk",
				"assertion":   "client_assertion=",
			} {
				if strings.Contains(logs, secret) || strings.Contains(seen, secret) {
					t.Errorf("the %s reached a log or the browser", what)
				}
			}
		})
	}
}

// fapiKeyAndCert encodes key as PKCS#8 and makes a self-signed client
// certificate for it.
func fapiKeyAndCert(t *testing.T, key *ecdsa.PrivateKey) (keyPEM, certPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "envoy-bff integration client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cder, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err = x509.ParseCertificate(cder); err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cder}), leaf
}
