package oidcflow

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

// mtlsClient starts p's mTLS listener and returns a client trusting it.
func mtlsClient(t *testing.T, p *oidctest.Provider) *http.Client {
	t.Helper()
	if _, err := p.StartMTLS("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.MTLSCertPEM()) {
		t.Fatal("mTLS server certificate does not parse")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// newKey makes a private key of kind rsa2048, rsa1024, p256, p384 or p224.
func newKey(t *testing.T, kind string) crypto.Signer {
	t.Helper()
	var k crypto.Signer
	var err error
	switch kind {
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// keyPEM encodes k as PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
func keyPEM(t *testing.T, k crypto.Signer, format string) []byte {
	t.Helper()
	var b *pem.Block
	switch format {
	case "pkcs1":
		b = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		b = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	return pem.EncodeToMemory(b)
}

// writeFile writes content to a new file in dir and returns its path.
func writeFile(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// publicJWK is k's public key as a provider registers it.
func publicJWK(k crypto.Signer) jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Public(), Use: "sig"}
}

// clientCert makes a self-signed client certificate for k valid until notAfter.
func clientCert(t *testing.T, k crypto.Signer, notAfter time.Time) (certPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "envoy-bff test client"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), leaf
}

// recordedRequest is what a fake endpoint saw.
type recordedRequest struct {
	path, auth string
	form       map[string][]string
}

// TestClientAssertion: under private_key_jwt every POST to the token, PAR
// and revocation endpoints carries a fresh assertion with the FAPI 2.0
// claims, signed with the configured key and algorithm, and neither a
// secret nor an Authorization header; other requests pass untouched.
func TestClientAssertion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, kind, format, alg, kid string
		wantAlg, wantKid             string
	}{
		{name: "rsa_pkcs8_default_ps256", kind: "rsa2048", wantAlg: "PS256"},
		{name: "rsa_pkcs1_rs256", kind: "rsa2048", format: "pkcs1", alg: "RS256", wantAlg: "RS256"},
		{name: "p256_sec1_default_es256", kind: "p256", format: "sec1", wantAlg: "ES256"},
		{name: "p384_default_es384_kid", kind: "p384", kid: "k-2026", wantAlg: "ES384", wantKid: "k-2026"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := newKey(t, tc.kind)
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.Issuer, cfg.ClientID, cfg.ClientAuth = "https://op.example", "bff-client", ClientAuthPrivateKeyJWT
			cfg.ClientKeyFile = writeFile(t, dir, "client.key", keyPEM(t, key, tc.format))
			cfg.ClientKeyAlg, cfg.ClientKeyID = tc.alg, tc.kid
			now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
			var seen []recordedRequest
			base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				rec := recordedRequest{path: r.URL.Path, auth: r.Header.Get("Authorization")}
				if r.Body != nil {
					_ = r.ParseForm()
					rec.form = r.PostForm
				}
				seen = append(seen, rec)
				return &http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}, nil
			})
			creds, err := newClientCreds(cfg, slog.New(slog.DiscardHandler), func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			rt, auth, err := providerTransport(base, nil, cfg, creds, func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			auth.setTargets("https://op.example/token", "https://op.example/revoke", "https://op.example/par")
			post := func(path, body string, basic bool) {
				req, _ := http.NewRequest(http.MethodPost, "https://op.example"+path, strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if basic {
					req.SetBasicAuth("bff-client", "leaked-secret")
				}
				resp, err := rt.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			post("/token", "grant_type=refresh_token&refresh_token=r1&client_secret=leaked-secret", true)
			post("/par", "response_type=code&client_id=bff-client", false)
			post("/revoke", "token=r1", false)
			post("/other", "client_secret=kept", false) // not an authenticated endpoint
			req, _ := http.NewRequest(http.MethodGet, "https://op.example/token", nil)
			if _, err := rt.RoundTrip(req); err != nil {
				t.Fatal(err)
			}

			jwk := publicJWK(key)
			jtis := map[string]bool{}
			for _, r := range seen[:3] {
				if r.auth != "" || r.form["client_secret"] != nil {
					t.Errorf("%s: a secret went out (Authorization %q, client_secret %v)", r.path, r.auth, r.form["client_secret"])
				}
				if got := r.form["client_id"]; len(got) != 1 || got[0] != "bff-client" {
					t.Errorf("%s: client_id = %v", r.path, got)
				}
				if got := r.form["client_assertion_type"]; len(got) != 1 || got[0] != clientAssertionType {
					t.Errorf("%s: client_assertion_type = %v", r.path, got)
				}
				tok, err := jose.ParseSignedCompact(r.form["client_assertion"][0], []jose.SignatureAlgorithm{jose.SignatureAlgorithm(tc.wantAlg)})
				if err != nil {
					t.Fatalf("%s: assertion: %v", r.path, err)
				}
				payload, err := tok.Verify(jwk)
				if err != nil {
					t.Fatalf("%s: the assertion does not verify with the configured key: %v", r.path, err)
				}
				h := tok.Signatures[0].Header
				wantKid := tc.wantKid
				if wantKid == "" {
					tp, _ := jwk.Thumbprint(crypto.SHA256)
					wantKid = base64.RawURLEncoding.EncodeToString(tp)
				}
				if h.KeyID != wantKid || h.Algorithm != tc.wantAlg {
					t.Errorf("%s: header kid %q alg %q, want %q %q", r.path, h.KeyID, h.Algorithm, wantKid, tc.wantAlg)
				}
				var c map[string]any
				if err := json.Unmarshal(payload, &c); err != nil {
					t.Fatal(err)
				}
				if c["iss"] != "bff-client" || c["sub"] != "bff-client" || c["aud"] != "https://op.example" ||
					c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Unix()+60) {
					t.Errorf("%s: claims %v", r.path, c)
				}
				jti, _ := c["jti"].(string)
				if len(jti) < 16 || jtis[jti] {
					t.Errorf("%s: jti %q missing, short or repeated", r.path, jti)
				}
				jtis[jti] = true
			}
			if seen[0].form["refresh_token"][0] != "r1" || seen[1].form["response_type"][0] != "code" {
				t.Error("the request's own parameters were lost")
			}
			if seen[3].form["client_assertion"] != nil || seen[3].form["client_secret"][0] != "kept" {
				t.Errorf("a request to another endpoint was changed: %v", seen[3].form)
			}
		})
	}
}

// roundTripFunc is an http.RoundTripper from a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// fapiClient registers the env's client at the provider for method and
// points the config at fresh key or certificate files.
func fapiClient(t *testing.T, method string) (envOption, envOption) {
	return fapiClientKey(t, method, false)
}

// fapiClientKey is fapiClient, with the private_key_jwt key inline
// (client_key) rather than in a file when inline is set.
func fapiClientKey(t *testing.T, method string, inline bool) (envOption, envOption) {
	t.Helper()
	dir := t.TempDir()
	key := newKey(t, "p256")
	certPEM, leaf := clientCert(t, key, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	keyFile := writeFile(t, dir, "client.key", keyPEM(t, key, "pkcs8"))
	certFile := writeFile(t, dir, "client.crt", certPEM)
	prov := withProvider(func(c *oidctest.ProviderConfig) {
		c.Clients[0].Secret = ""
		switch method {
		case ClientAuthPrivateKeyJWT:
			c.Clients[0].JWKS = []jose.JSONWebKey{publicJWK(key)}
		case ClientAuthTLS:
			c.Clients[0].TLSClientAuth = true
			c.Clients[0].TLSCertThumbprint = oidctest.CertThumbprint(leaf)
		}
	})
	conf := withConfig(func(c *Config) {
		c.ClientAuth, c.ClientSecret = method, ""
		c.ClientTokens = map[string]ClientTokenConfig{DefaultClientToken: {}}
		switch method {
		case ClientAuthPrivateKeyJWT:
			c.ClientKeyFile = keyFile
			if inline {
				c.ClientKeyFile, c.ClientKey = "", string(keyPEM(t, key, "pkcs8"))
			}
		case ClientAuthTLS:
			c.TLSClientCertFile, c.TLSClientKeyFile = certFile, keyFile
		}
	})
	return prov, conf
}

// TestStrongClientAuthEveryCall: with private_key_jwt and with
// tls_client_auth, the code exchange, a refresh, a client-credentials grant
// and the revocation at logout all authenticate by that method at the
// local provider (which accepts nothing else for such a client), and no
// request carries a secret. tls_client_auth uses the mTLS endpoint aliases.
func TestStrongClientAuthEveryCall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, method string
		inline       bool
	}{{"private_key_jwt", ClientAuthPrivateKeyJWT, false}, {"private_key_jwt_inline_key", ClientAuthPrivateKeyJWT, true}, {"tls_client_auth", ClientAuthTLS, false}} {
		method := tc.method
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prov, conf := fapiClientKey(t, method, tc.inline)
			opts := []envOption{prov, conf}
			if method == ClientAuthTLS {
				opts = append(opts, withMTLS())
			}
			e := newEnv(t, opts...)
			defer func() {
				if t.Failed() {
					t.Log(e.logs.String())
				}
			}()
			id, rec := e.loggedIn()
			e.clock.Advance(6 * time.Minute)
			if _, err := e.h.Refresher().Refresh(t.Context(), id, rec); err != nil {
				t.Fatalf("refresh: %v", err)
			}
			if _, err := e.clientTokens().Token(t.Context(), DefaultClientToken); err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			b := e.browser()
			b.login("/")
			logout := b.api("/bff/user").json(t)["logoutUrl"].(string)
			if r := b.get(logout); r.Status != http.StatusFound {
				t.Fatalf("logout: %d %s", r.Status, r.Body)
			}
			st := e.provider.Stats()
			if st.AuthorizationCodeGrants != 2 || st.RefreshTokenGrants != 1 || st.ClientCredentialsGrants != 1 || st.Revocations != 1 {
				t.Fatalf("provider stats %+v", st)
			}
			// 2 code exchanges + refresh + client credentials + revocation.
			want := 5
			got := st.PrivateKeyJWTAuths
			if method == ClientAuthTLS {
				got = st.TLSClientAuths
				if n := e.tokenCalls.Load(); n != 0 {
					t.Errorf("%d token requests went to the plain endpoint, not the mTLS alias", n)
				}
			}
			if got != want {
				t.Errorf("provider authenticated %d requests by %s, want %d", got, method, want)
			}
		})
	}
}

// TestPushedAuthorizationRequests: with PAR the browser is sent to the
// authorization endpoint with client_id and request_uri only, and the
// login completes; auto follows the provider's requirement; always
// without an endpoint keeps the frontend unready.
func TestPushedAuthorizationRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mode  string
		requirePAR  bool
		method      string
		wantPushed  bool
		wantMissing bool // the provider's PAR endpoint is left out of discovery
	}{
		{name: "auto_required", mode: "", requirePAR: true, wantPushed: true},
		{name: "auto_not_required", mode: PARAuto, wantPushed: false},
		{name: "always_secret_basic", mode: PARAlways, wantPushed: true},
		{name: "always_private_key_jwt", mode: PARAlways, method: ClientAuthPrivateKeyJWT, wantPushed: true},
		{name: "never", mode: PARNever, wantPushed: false},
		{name: "always_without_endpoint", mode: PARAlways, wantMissing: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := []envOption{withProvider(func(c *oidctest.ProviderConfig) { c.RequirePAR = tc.requirePAR })}
			opts = append(opts, withConfig(func(c *Config) { c.PushedAuthorizationRequests = tc.mode }))
			if tc.method != "" { // fapiClient's config first, then the mode
				prov, conf := fapiClient(t, tc.method)
				opts = []envOption{prov, withConfig(func(c *Config) {
					applyConfig(conf, c)
					c.PushedAuthorizationRequests = tc.mode
				})}
			}
			if tc.wantMissing {
				opts = append(opts, notStarted())
			}
			e := newEnv(t, opts...)
			if tc.wantMissing {
				e.hook(oidctest.PathDiscovery, e.discoveryWithout("pushed_authorization_request_endpoint"))
				ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
				defer cancel()
				if err := e.h.Start(ctx); err == nil || e.h.Ready() {
					t.Fatal("the frontend became ready without a PAR endpoint")
				}
				if !strings.Contains(e.logs.String(), "oidc.pushed_authorization_requests") {
					t.Errorf("the log does not name the field:\n%s", e.logs.String())
				}
				return
			}
			b := e.browser()
			authURL := b.startLogin("/")
			u, err := url.Parse(authURL)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			if tc.wantPushed {
				if len(q) != 2 || q.Get("client_id") != testClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
					t.Fatalf("browser URL query %v, want client_id and request_uri only", q)
				}
			} else if q.Has("request_uri") || q.Get("code_challenge") == "" {
				t.Fatalf("browser URL query %v, want the whole request", q)
			}
			if r := b.get(b.authorize(authURL)); r.Status != http.StatusFound {
				t.Fatalf("callback: %d %s", r.Status, r.Body)
			}
			if got, want := e.provider.Stats().PushedAuthorizationRequests, map[bool]int{true: 1}[tc.wantPushed]; got != want {
				t.Errorf("provider saw %d pushed requests, want %d", got, want)
			}
			// A request_uri works once.
			if tc.wantPushed {
				if r := b.get(authURL); r.Status != http.StatusBadRequest {
					t.Errorf("a used request_uri answered %d, want 400", r.Status)
				}
			}
		})
	}
}

// applyConfig runs an envOption's config edit on c.
func applyConfig(o envOption, c *Config) {
	var opts envOptions
	o(&opts)
	if opts.config != nil {
		opts.config(c)
	}
}

// TestClientKeyRotation: a new key file is used once the check interval
// has passed, without a restart; a bad new file is logged (without its
// content) and the key in use stays.
func TestClientKeyRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	k1, k2 := newKey(t, "p256"), newKey(t, "rsa2048")
	keyFile := writeFile(t, dir, "client.key", keyPEM(t, k1, "pkcs8"))
	e := newEnv(t,
		withProvider(func(c *oidctest.ProviderConfig) {
			c.Clients[0].Secret = ""
			c.Clients[0].JWKS = []jose.JSONWebKey{publicJWK(k1), publicJWK(k2)}
		}),
		withConfig(func(c *Config) {
			c.ClientAuth, c.ClientSecret, c.ClientKeyFile = ClientAuthPrivateKeyJWT, "", keyFile
		}))
	var kids []string
	e.hook(oidctest.PathToken, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if tok, err := jose.ParseSignedCompact(r.PostForm.Get("client_assertion"), assertionAlgsForTest); err == nil {
			kids = append(kids, tok.Signatures[0].Header.Algorithm)
		}
		e.provider.Handler().ServeHTTP(w, r)
	})
	login := func() {
		t.Helper()
		b := e.browser()
		b.login("/")
	}
	login()
	writeFile(t, dir, "client.key", keyPEM(t, k2, "pkcs1"))
	login() // within the interval: still k1
	e.clock.Advance(clientFilesCheckInterval)
	login() // k2
	garbage := []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n")
	writeFile(t, dir, "client.key", garbage)
	e.clock.Advance(clientFilesCheckInterval)
	login() // refused: k2 stays
	if want := []string{"ES256", "ES256", "PS256", "PS256"}; !slices.Equal(kids, want) {
		t.Errorf("assertion algorithms %v, want %v", kids, want)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "client key reloaded") || !strings.Contains(logs, "client key file changed but cannot be used") {
		t.Errorf("reload and refusal not both logged:\n%s", logs)
	}
	if strings.Contains(logs, "c2VjcmV0LWtleS1ieXRlcw") || strings.Contains(logs, "-----BEGIN") {
		t.Error("key file content reached the log")
	}
}

var assertionAlgsForTest = []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.RS256, jose.ES384}

// TestT79ClientKeyMaterial (T79): a missing, unreadable, malformed, weak
// or expired key or certificate is a config error naming the field; a
// client secret beside private_key_jwt or tls_client_auth is refused (no
// fallback); no error quotes key or certificate material; and a provider
// that rejects the assertion fails the login with its error code logged,
// the key never.
func TestT79ClientKeyMaterial(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := newKey(t, "p256")
	goodPEM := keyPEM(t, good, "pkcs8")
	goodKey := writeFile(t, dir, "good.key", goodPEM)
	// A directory: unreadable as a file even for root, who reads any mode.
	unreadable := filepath.Join(dir, "unreadable.key")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	weakPEM := keyPEM(t, newKey(t, "rsa1024"), "pkcs8")
	weak := writeFile(t, dir, "weak.key", weakPEM)
	p224PEM := keyPEM(t, newKey(t, "p224"), "pkcs8")
	p224 := writeFile(t, dir, "p224.key", p224PEM)
	garbage := writeFile(t, dir, "garbage.key", []byte("-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LWF0LWFsbA==\n-----END PRIVATE KEY-----\n"))
	expiredPEM, _ := clientCert(t, good, time.Now().Add(-time.Hour))
	expired := writeFile(t, dir, "expired.crt", expiredPEM)
	validPEM, _ := clientCert(t, good, time.Now().Add(time.Hour))
	valid := writeFile(t, dir, "valid.crt", validPEM)
	otherKey := writeFile(t, dir, "other.key", keyPEM(t, newKey(t, "p256"), "pkcs8"))
	secrets := []string{string(goodPEM), string(weakPEM), string(p224PEM), "bm90LWEta2V5LWF0LWFsbA", string(expiredPEM), string(validPEM), "the-old-secret"}

	base := DefaultConfig()
	base.Issuer, base.ClientID, base.RedirectURL = "https://op.example", "bff", "https://app.example/bff/callback"
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"key_missing_field", func(c *Config) { c.ClientAuth = ClientAuthPrivateKeyJWT }, "client_key_file: required with client_auth: private_key_jwt"},
		{"key_file_absent", func(c *Config) {
			c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, filepath.Join(dir, "nope.key")
		}, "client_key_file: open "},
		{"key_unreadable", func(c *Config) { c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, unreadable }, "client_key_file: read "},
		{"key_garbage", func(c *Config) { c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, garbage }, "client_key_file: PRIVATE KEY block does not parse"},
		{"inline_key_garbage", func(c *Config) {
			c.ClientAuth, c.ClientKey = ClientAuthPrivateKeyJWT, "-----BEGIN PRIVATE KEY-----\nbm90LWEta2V5LWF0LWFsbA==\n-----END PRIVATE KEY-----\n"
		}, "client_key: PRIVATE KEY block does not parse"},
		{"inline_key_weak", func(c *Config) { c.ClientAuth, c.ClientKey = ClientAuthPrivateKeyJWT, string(weakPEM) }, "client_key: RSA key of 1024 bits"},
		{"key_file_and_inline", func(c *Config) {
			c.ClientAuth, c.ClientKeyFile, c.ClientKey = ClientAuthPrivateKeyJWT, goodKey, string(goodPEM)
		}, "client_key: set client_key_file or client_key, not both"},
		{"inline_key_without_private_key_jwt", func(c *Config) {
			c.ClientAuth, c.ClientKey, c.ClientSecret = ClientAuthBasic, string(goodPEM), "s"
		}, "client_key: only used with client_auth: private_key_jwt"},
		{"key_rsa_1024", func(c *Config) { c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, weak }, "client_key_file: RSA key of 1024 bits"},
		{"key_p224", func(c *Config) { c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, p224 }, "client_key_file: EC key on P-224"},
		{"key_alg_mismatch", func(c *Config) {
			c.ClientAuth, c.ClientKeyFile, c.ClientKeyAlg = ClientAuthPrivateKeyJWT, goodKey, "PS256"
		}, "client_key_alg: \"PS256\" does not fit"},
		{"secret_with_private_key_jwt", func(c *Config) {
			c.ClientAuth, c.ClientKeyFile, c.ClientSecret = ClientAuthPrivateKeyJWT, goodKey, "the-old-secret"
		}, "client_secret: must be empty with client_auth: private_key_jwt (there is no fallback to a secret)"},
		{"secret_with_tls_client_auth", func(c *Config) {
			c.ClientAuth, c.TLSClientCertFile, c.TLSClientKeyFile, c.ClientSecret = ClientAuthTLS, valid, goodKey, "the-old-secret"
		}, "client_secret: must be empty with client_auth: tls_client_auth"},
		{"cert_missing", func(c *Config) { c.ClientAuth = ClientAuthTLS }, "tls_client_cert_file: required with client_auth: tls_client_auth"},
		{"cert_expired", func(c *Config) {
			c.ClientAuth, c.TLSClientCertFile, c.TLSClientKeyFile = ClientAuthTLS, expired, goodKey
		}, "tls_client_cert_file: certificate expired at "},
		{"cert_key_mismatch", func(c *Config) {
			c.ClientAuth, c.TLSClientCertFile, c.TLSClientKeyFile = ClientAuthTLS, valid, otherKey
		}, "tls_client_cert_file: with tls_client_key_file: tls: private key does not match public key"},
		{"cert_key_unreadable", func(c *Config) {
			c.ClientAuth, c.TLSClientCertFile, c.TLSClientKeyFile = ClientAuthTLS, valid, unreadable
		}, "tls_client_key_file: read "},
		{"cert_without_key", func(c *Config) { c.ClientAuth, c.TLSClientCertFile = ClientAuthTLS, valid }, "tls_client_key_file: required with tls_client_cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
			if _, perr := NewProvider(c, nil, nil, nil); perr == nil {
				t.Error("NewProvider accepted the config")
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error quotes key, certificate or secret material: %v", err)
				}
			}
		})
	}

	t.Run("valid_configs", func(t *testing.T) {
		t.Parallel()
		for _, edit := range []func(*Config){
			func(c *Config) { c.ClientAuth, c.ClientKeyFile = ClientAuthPrivateKeyJWT, goodKey },
			func(c *Config) { c.ClientAuth, c.ClientKey = ClientAuthPrivateKeyJWT, string(goodPEM) },
			func(c *Config) { c.ClientAuth, c.TLSClientCertFile, c.TLSClientKeyFile = ClientAuthTLS, valid, goodKey },
		} {
			c := base
			edit(&c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v", err)
			}
		}
	})

	t.Run("provider_rejects_assertion", func(t *testing.T) {
		t.Parallel()
		registered := newKey(t, "p256") // the provider knows another key than envoy-bff signs with
		keyFile := writeFile(t, t.TempDir(), "client.key", keyPEM(t, newKey(t, "p256"), "pkcs8"))
		e := newEnv(t,
			withProvider(func(c *oidctest.ProviderConfig) {
				c.Clients[0].Secret = ""
				c.Clients[0].JWKS = []jose.JSONWebKey{publicJWK(registered)}
			}),
			withConfig(func(c *Config) { c.ClientAuth, c.ClientSecret, c.ClientKeyFile = ClientAuthPrivateKeyJWT, "", keyFile }))
		b := e.browser()
		r := b.get(b.authorize(b.startLogin("/")))
		wantError(t, r, http.StatusBadRequest, "login_failed")
		logs := e.logs.String()
		if !strings.Contains(logs, "error invalid_client") {
			t.Errorf("the provider's error code is not in the log:\n%s", logs)
		}
		raw, _ := os.ReadFile(keyFile)
		for _, s := range append(secrets, string(raw), "client_assertion=", "eyJ") {
			if strings.Contains(logs, s) || strings.Contains(b.everything(), s) {
				t.Errorf("key material, an assertion or a secret reached the log or the browser (%.20q)", s)
			}
		}
	})
}

// TestClientCertRotation: a replaced certificate is presented from the next
// provider call on, even over a connection kept open: the provider, which
// knows only the first certificate, then refuses the client.
func TestClientCertRotation(t *testing.T) {
	t.Parallel()
	prov, conf := fapiClient(t, ClientAuthTLS)
	e := newEnv(t, prov, conf, withMTLS())
	id, rec := e.loggedIn()
	k2 := newKey(t, "p256")
	cert2, _ := clientCert(t, k2, time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC))
	writeFile(t, filepath.Dir(e.cfg.TLSClientCertFile), "client.key", keyPEM(t, k2, "pkcs8"))
	writeFile(t, filepath.Dir(e.cfg.TLSClientCertFile), "client.crt", cert2)
	e.clock.Advance(6 * time.Minute)
	_, err := e.h.Refresher().Refresh(t.Context(), id, rec)
	if !errors.Is(err, ErrClientRejected) {
		t.Fatalf("refresh with the new, unregistered certificate: %v, want ErrClientRejected", err)
	}
	if !strings.Contains(e.logs.String(), "client certificate reloaded") {
		t.Error("the reload was not logged")
	}
}
