package e2e

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// The realm of TestKeycloakFAPIProfiles (fapi-realm.json): its clients are
// bound to Keycloak's built-in FAPI 2.0 profiles by client policies whose
// condition is a client role (fapi-2 → fapi-2-security-profile, fapi-2-dpop
// → fapi-2-dpop-security-profile). FAPI.md says what the profiles enforce.
const (
	fapiRealm = "envoy-bff-fapi"
	// The realm's clients.
	fapiMTLSClient   = "envoy-bff-fapi2-mtls"   // fapi-2, tls_client_auth
	fapiJWTClient    = "envoy-bff-fapi2-jwt"    // fapi-2, private_key_jwt (+ client certificate for the token binding)
	fapiDPoPClient   = "envoy-bff-fapi2-dpop"   // fapi-2-dpop, private_key_jwt
	fapiSecretClient = "envoy-bff-fapi2-secret" // fapi-2, client_secret: the control the profile refuses
	fapiSecret       = "envoy-bff-fapi2-control-secret"
	fapiPlainClient  = "envoy-bff-plain" // no policy: the HTTPS harness check
	fapiPlainSecret  = "envoy-bff-plain-secret"
)

// TestKeycloakFAPIProfiles proves, against real Keycloak 26.5 over HTTPS
// with client certificates requested, that the realm's client policies
// make Keycloak itself enforce fapi-2-security-profile and
// fapi-2-dpop-security-profile: every request that breaks a rule is
// refused with the error description only that profile's executor gives,
// and requests built as FAPI 2.0 says (PAR, PKCE S256, a private_key_jwt
// assertion with aud = issuer, mTLS, DPoP proofs; built by hand here with
// Go's crypto) are accepted and get sender-constrained tokens. So an
// envoy-bff test against this realm cannot pass by accident.
//
// Then envoy-bff, behind Envoy serving HTTPS, logs a headless Chromium in
// over HTTPS with the realm's plain client (no policy), trusting Keycloak's
// test CA by oidc.ca_file: the harness the FAPI login test needs.
func TestKeycloakFAPIProfiles(t *testing.T) {
	chromium := chromiumPath(t)
	start := time.Now()
	dir := t.TempDir()
	shots := screenshots(t)
	// The realm names the app's URL, so its port is held from now on; the
	// hand-built flows below only read the redirects to it.
	listen, err := harness.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	appURL := "https://127.0.0.1:" + strconv.Itoa(listen.Port)
	httpAppURL := "http://127.0.0.1:" + strconv.Itoa(listen.Port)
	pki, err := harness.NewPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	mtlsCert, err := pki.Client("fapi2-mtls", fapiMTLSClient)
	if err != nil {
		t.Fatal(err)
	}
	jwtCert, err := pki.Client("fapi2-jwt", fapiJWTClient)
	if err != nil {
		t.Fatal(err)
	}
	jwtKey := newSigningKey(t, "jwt-es256", jose.ES256)
	rsaKey := newSigningKey(t, "jwt-rs256", jose.RS256) // registered too, so only the profile refuses RS256
	dpopClientKey := newSigningKey(t, "dpop-client-ps256", jose.PS256)

	realm := realms(t, []string{
		"${APP_URL}", appURL, "${HTTP_APP_URL}", httpAppURL,
		"${JWT_JWKS}", jwksAttribute(t, jwtKey, rsaKey),
		"${DPOP_JWKS}", jwksAttribute(t, dpopClientKey),
	}, "fapi-realm.json")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kc, err := harness.StartKeycloakWith(ctx, dir, harness.KeycloakOptions{TLS: pki}, realm...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("keycloak log:\n%s", kc.Tail(4000))
		}
		kc.Stop(20 * time.Second)
	})
	kcStarted := time.Now()

	var disc struct {
		Issuer      string   `json:"issuer"`
		Auth        string   `json:"authorization_endpoint"`
		Token       string   `json:"token_endpoint"`
		PAR         string   `json:"pushed_authorization_request_endpoint"`
		Revocation  string   `json:"revocation_endpoint"`
		RequirePAR  bool     `json:"require_pushed_authorization_requests"`
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
		DPoPAlgs    []string `json:"dpop_signing_alg_values_supported"`
		MTLSAliases struct {
			Token string `json:"token_endpoint"`
			PAR   string `json:"pushed_authorization_request_endpoint"`
		} `json:"mtls_endpoint_aliases"`
		CertBound bool `json:"tls_client_certificate_bound_access_tokens"`
	}
	getJSON(t, ctx, kc.HTTPClient, kc.Issuer()+"/.well-known/openid-configuration", &disc)
	t.Logf("discovery: issuer %s, PAR %s (require_pushed_authorization_requests %v), mtls aliases token %s par %s, certificate-bound tokens %v, auth methods %v, DPoP algs %v",
		disc.Issuer, disc.PAR, disc.RequirePAR, disc.MTLSAliases.Token, disc.MTLSAliases.PAR, disc.CertBound, disc.AuthMethods, disc.DPoPAlgs)
	if !strings.HasPrefix(disc.Issuer, "https://") || disc.PAR == "" || disc.MTLSAliases.Token == "" {
		t.Fatalf("discovery lacks an https issuer, a PAR endpoint or mTLS aliases: %+v", disc)
	}

	fc := &fapiFlow{ctx: ctx, appURL: appURL, token: disc.Token, par: disc.PAR, auth: disc.Auth,
		plain: kc.HTTPClient, ua: newUserAgent(t, pki, listen.Port)}
	withCert := func(c harness.Cert) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(&c)}}
	}
	mtlsHTTP, jwtHTTP := withCert(mtlsCert), withCert(jwtCert)
	jwtAuth := fc.assertionAuth(fapiJWTClient, jwtKey, disc.Issuer)
	dpopAuth := fc.assertionAuth(fapiDPoPClient, dpopClientKey, disc.Issuer)
	mtlsAuth := func(*testing.T) url.Values { return url.Values{"client_id": {fapiMTLSClient}} }
	secretAuth := func(*testing.T) url.Values {
		return url.Values{"client_id": {fapiSecretClient}, "client_secret": {fapiSecret}}
	}

	// --- What the profiles refuse (each error text is the executor's own).

	// secure-par-content: an authorization request not pushed by PAR.
	t.Run("authorization request without PAR refused", func(t *testing.T) {
		// Keycloak checks this before the redirect URI, so it shows its
		// error page rather than redirecting back.
		q := authParams(fapiJWTClient, appURL, newPKCE(t).challenge)
		status, page := fc.authorizePage(t, q)
		if status != http.StatusBadRequest || !strings.Contains(page, "request_uri not included.") {
			t.Fatalf("authorization without PAR: status %d, page %.300s", status, page)
		}
		t.Logf("refused: %d page %q", status, page)
	})
	// secure-client-authentication-assertion: aud must be the issuer alone
	// (plain Keycloak also takes the token endpoint).
	t.Run("assertion audience other than the issuer refused at PAR", func(t *testing.T) {
		form := authParams(fapiJWTClient, appURL, newPKCE(t).challenge)
		for k, v := range fc.assertionAuth(fapiJWTClient, jwtKey, disc.Token)(t) {
			form[k] = v
		}
		status, body, _ := fc.post(t, jwtHTTP, disc.PAR, form, nil)
		wantStatusError(t, status, body, 400, "invalid_request", "invalid audience in client assertion")
	})
	// pushedThenRefused pushes the control client's request with redirect
	// (https or http) and challenge: the PAR endpoint takes it, and the
	// authorization endpoint then refuses it with wantError, issuing no code.
	pushedThenRefused := func(t *testing.T, what, redirect, challenge, wantError string) {
		t.Helper()
		form := authParams(fapiSecretClient, redirect, challenge)
		for k, v := range secretAuth(t) {
			form[k] = v
		}
		status, body, _ := fc.post(t, fc.plain, disc.PAR, form, nil)
		if status != http.StatusCreated {
			t.Fatalf("PAR %s: status %d %v", what, status, body)
		}
		q := url.Values{"client_id": {fapiSecretClient}, "request_uri": {str(body["request_uri"])}}
		status, page := fc.authorizePage(t, q)
		if status != http.StatusFound || !strings.Contains(page, wantError) || strings.Contains(page, "code=") {
			t.Fatalf("authorization %s: %d %s", what, status, page)
		}
		t.Logf("refused: %d %s", status, page)
	}
	// secure-client-uris: redirect URIs must be https (no loopback
	// exception in 26.5), even when registered.
	t.Run("http redirect URI refused", func(t *testing.T) {
		pushedThenRefused(t, "with an http redirect URI", httpAppURL, newPKCE(t).challenge,
			"error=invalid_request&error_description=Invalid+redirect_uri")
	})
	// pkce-enforcer: PKCE S256 is required (the control client has no
	// pkce.code.challenge.method of its own, so only the profile asks).
	t.Run("PAR without PKCE refused", func(t *testing.T) {
		pushedThenRefused(t, "without PKCE", appURL, "",
			"error=invalid_request&error_description=Missing+parameter%3A+code_challenge_method")
	})
	// secure-client-authenticator: a client secret is not an allowed
	// method (only client-jwt and client-x509), whatever the client says.
	t.Run("client secret refused at the token endpoint", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, fc.plain, fapiSecretClient, secretAuth, v, nil)
		status, body, _ := fc.post(t, mtlsHTTP, disc.Token, fc.codeGrant(t, code, v, secretAuth), nil)
		wantStatusError(t, status, body, 400, "invalid_grant", "Configured client authentication method not allowed")
	})
	// holder-of-key-enforcer: fapi-2-security-profile binds tokens to a
	// client certificate, so even private_key_jwt needs mTLS.
	t.Run("token request without a client certificate refused", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, jwtHTTP, fapiJWTClient, jwtAuth, v, nil)
		status, body, _ := fc.post(t, fc.plain, disc.Token, fc.codeGrant(t, code, v, jwtAuth), nil)
		wantStatusError(t, status, body, 400, "invalid_grant", "Client Certification missing for MTLS HoK Token Binding")
	})
	// secure-signature-algorithm-signed-jwt: PS256/384/512 and
	// ES256/384/512 only; the RS256 key is registered, so only the profile
	// refuses it.
	t.Run("RS256 client assertion refused", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, jwtHTTP, fapiJWTClient, jwtAuth, v, nil)
		rs := fc.assertionAuth(fapiJWTClient, rsaKey, disc.Issuer)
		status, body, _ := fc.post(t, jwtHTTP, disc.Token, fc.codeGrant(t, code, v, rs), nil)
		wantStatusError(t, status, body, 400, "invalid_grant", "not allowed signature algorithm")
	})
	// dpop.bound.access.tokens: token requests need a DPoP proof. Keycloak
	// refuses by the client's attribute, which the profile's
	// dpop-bind-enforcer sets on registration and keeps set on update; its
	// own check is on revocation (below).
	t.Run("token request without DPoP refused", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, fc.plain, fapiDPoPClient, dpopAuth, v, nil)
		status, body, _ := fc.post(t, fc.plain, disc.Token, fc.codeGrant(t, code, v, dpopAuth), nil)
		wantStatusError(t, status, body, 400, "invalid_request", "DPoP proof is missing")
	})

	// --- What the profiles accept: sender-constrained tokens.

	t.Run("tls_client_auth with PAR and PKCE gets a certificate-bound token", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, mtlsHTTP, fapiMTLSClient, mtlsAuth, v, nil)
		tok := fc.tokens(t, mtlsHTTP, fc.codeGrant(t, code, v, mtlsAuth), nil, "Bearer")
		wantCnf(t, tok.AccessToken, "x5t#S256", mtlsCert.Thumbprint())
		tok = fc.tokens(t, mtlsHTTP, refreshGrant(t, tok.RefreshToken, mtlsAuth), nil, "Bearer")
		wantCnf(t, tok.AccessToken, "x5t#S256", mtlsCert.Thumbprint())
	})
	t.Run("private_key_jwt with PAR, PKCE and mTLS gets a certificate-bound token", func(t *testing.T) {
		v := newPKCE(t)
		code := fc.code(t, jwtHTTP, fapiJWTClient, jwtAuth, v, nil)
		tok := fc.tokens(t, jwtHTTP, fc.codeGrant(t, code, v, jwtAuth), nil, "Bearer")
		wantCnf(t, tok.AccessToken, "x5t#S256", jwtCert.Thumbprint())
		// The refresh token is bound too: without the certificate the
		// holder-of-key enforcer refuses the grant.
		status, body, _ := fc.post(t, fc.plain, disc.Token, refreshGrant(t, tok.RefreshToken, jwtAuth), nil)
		wantStatusError(t, status, body, 400, "invalid_grant", "Client certificate missing")
		tok = fc.tokens(t, jwtHTTP, refreshGrant(t, tok.RefreshToken, jwtAuth), nil, "Bearer")
		wantCnf(t, tok.AccessToken, "x5t#S256", jwtCert.Thumbprint())
	})
	t.Run("private_key_jwt with PAR, PKCE and DPoP gets a DPoP-bound token", func(t *testing.T) {
		dpopKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		jkt := jwkThumbprint(t, &dpopKey.PublicKey)
		v := newPKCE(t)
		code := fc.code(t, fc.plain, fapiDPoPClient, dpopAuth, v, nil)
		proof := func() http.Header { return http.Header{"Dpop": {dpopProof(t, dpopKey, http.MethodPost, disc.Token)}} }
		tok := fc.tokens(t, fc.plain, fc.codeGrant(t, code, v, dpopAuth), proof, "DPoP")
		wantCnf(t, tok.AccessToken, "jkt", jkt)
		tok = fc.tokens(t, fc.plain, refreshGrant(t, tok.RefreshToken, dpopAuth), proof, "DPoP")
		wantCnf(t, tok.AccessToken, "jkt", jkt)
		// dpop-bind-enforcer: revocation needs a DPoP proof too.
		revoke := dpopAuth(t)
		revoke.Set("token", tok.AccessToken)
		status, body, _ := fc.post(t, fc.plain, disc.Revocation, revoke, nil)
		wantStatusError(t, status, body, 400, "invalid_dpop_proof", "DPoP proof is missing")
		revoke = dpopAuth(t)
		revoke.Set("token", tok.AccessToken)
		status, _, _ = fc.post(t, fc.plain, disc.Revocation, revoke,
			http.Header{"Dpop": {dpopProof(t, dpopKey, http.MethodPost, disc.Revocation)}})
		if status != http.StatusOK {
			t.Fatalf("revocation with a DPoP proof: status %d", status)
		}
	})
	// The refusals were client policies': Keycloak's error events name the
	// reason and the executor's words (it records no such event for the
	// PAR endpoint's, the DPoP executor's and the refresh grant's).
	events, err := kc.InRealm(fapiRealm).Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	policyErrors := map[string]bool{}
	for _, e := range events {
		if e.Details["reason"] == "client_policy_error" {
			policyErrors[e.Details["client_policy_error_detail"]] = true
		}
	}
	for _, want := range []string{
		"request_uri not included.",
		"Invalid redirect_uri",
		"Missing parameter: code_challenge_method",
		"Configured client authentication method not allowed for client",
		"Client Certification missing for MTLS HoK Token Binding",
		"not allowed signature algorithm.",
	} {
		if !policyErrors[want] {
			t.Errorf("no client_policy_error event %q; policy errors seen: %v", want, policyErrors)
		}
	}
	checked := time.Now()

	// envoy-bff under the profiles, through Envoy over HTTPS (envoy-bff
	// trusting the test CA, Chromium trusting Envoy's and Keycloak's
	// certificates): one frontend per client on one host, under its own
	// path prefix, and the plain client at "/".
	jwtKeyFile := writeKeyPEM(t, dir, "jwt-es256", jwtKey)
	plain := harness.Frontend{Name: "plain", Host: "127.0.0.1", ClientID: fapiPlainClient, ClientSecret: fapiPlainSecret, Issuer: kc.Issuer()}
	mtls := harness.Frontend{Name: "mtls", Host: "127.0.0.1", PathPrefix: "/mtls/", ClientID: fapiMTLSClient, Issuer: kc.Issuer()}
	pkjwt := harness.Frontend{Name: "jwt", Host: "127.0.0.1", PathPrefix: "/jwt/", ClientID: fapiJWTClient, Issuer: kc.Issuer()}
	dpop := harness.Frontend{Name: "dpop", Host: "127.0.0.1", PathPrefix: "/dpop/", ClientID: fapiDPoPClient, Issuer: kc.Issuer()}
	dpopKeyFile := writeKeyPEM(t, dir, "dpop-client-ps256", dpopClientKey)
	fapiOIDC := map[string]map[string]any{
		// tls_client_auth: the certificate authenticates and binds the tokens.
		"mtls": {"client_auth": "tls_client_auth", "tls_client_cert_file": mtlsCert.CertFile, "tls_client_key_file": mtlsCert.KeyFile},
		// private_key_jwt (ES256, aud = issuer); the profile's token binding
		// still wants a certificate on the connection.
		"jwt": {"client_auth": "private_key_jwt", "client_key_file": jwtKeyFile, "client_key_id": jwtKey.kid, "client_key_alg": "ES256",
			"tls_client_cert_file": jwtCert.CertFile, "tls_client_key_file": jwtCert.KeyFile},
		// fapi-2-dpop-security-profile: private_key_jwt (PS256) and
		// DPoP-bound tokens, no certificate.
		"dpop": {"client_auth": "private_key_jwt", "client_key_file": dpopKeyFile, "client_key_id": dpopClientKey.kid, "client_key_alg": "PS256", "dpop": true},
	}
	s, err := harness.Start(ctx, harness.Options{
		Dir: dir, Listen: listen, TLS: pki, Issuer: kc.Issuer(),
		Frontends: []harness.Frontend{plain, mtls, pkjwt, dpop},
		BFFConfig: func(doc map[string]any) {
			for _, f := range doc["frontends"].([]any) {
				fd := f.(map[string]any)
				oidc := fd["oidc"].(map[string]any)
				oidc["scopes"] = []string{"openid", "profile", "email"}
				if extra, ok := fapiOIDC[fd["name"].(string)]; ok {
					delete(oidc, "client_secret")
					// Keycloak's discovery never says PAR is required (the
					// policy is per client), so the frontend is told.
					oidc["pushed_authorization_requests"] = "always"
					for k, v := range extra {
						oidc[k] = v
					}
				}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs:\n%s", s.Logs(3000))
		}
		s.Close()
	})
	if s.URL != appURL {
		t.Fatalf("stack URL %s, want %s", s.URL, appURL)
	}
	browser := startChromium(t, ctx, chromium, trustCerts(s.EnvoyCert, kc.Cert))
	run := steps(t, browser, shots, "fapi-", 30*time.Second)
	var name, status string
	run("01-https-anonymous", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#login", chromedp.ByQuery))
	run("02-https-keycloak-form", chromedp.Click("#login", chromedp.ByQuery), chromedp.WaitVisible("#username", chromedp.ByQuery))
	run("03-https-signed-in",
		chromedp.SendKeys("#username", userName, chromedp.ByQuery),
		chromedp.SendKeys("#password", userPassword, chromedp.ByQuery),
		chromedp.Click("#kc-login", chromedp.ByQuery),
		chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
		chromedp.Text("#user-name", &name, chromedp.ByQuery))
	run("04-https-api", chromedp.Click("#call-api", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#status').textContent.startsWith('API answered')`, nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text("#status", &status, chromedp.ByQuery))
	if name != "Alice Liddell" || !strings.HasPrefix(status, "API answered 200") {
		t.Fatalf("over HTTPS: the page shows user %q and %q", name, status)
	}
	https := time.Now()

	// Each FAPI client through envoy-bff: PAR, the client authentication
	// and the certificate binding are Keycloak's to refuse, so a login, an
	// API call, a refresh after the 15 s token and a logout that succeed
	// prove envoy-bff did each right.
	for _, f := range []harness.Frontend{mtls, pkjwt, dpop} {
		fapiSession(t, s, f, browser, run)
	}
	t.Logf("timing: keycloak up %s, profile checks %s, HTTPS login %s, FAPI sessions %s, total %s",
		kcStarted.Sub(start).Round(time.Millisecond), checked.Sub(kcStarted).Round(time.Millisecond),
		https.Sub(checked).Round(time.Millisecond), time.Since(https).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// fapiSession logs in to f in the browser (Keycloak's form or single
// sign-on, then its consent page), calls the API, calls it again after the
// access token expired (a refresh under the profile), and logs out.
func fapiSession(t *testing.T, s *harness.Stack, f harness.Frontend, browser context.Context, run func(string, ...chromedp.Action)) {
	t.Helper()
	step := func(n string) string { return f.Name + "-" + n }
	refreshes := func() float64 {
		return metricSum(t, s, `envoy_bff_token_refreshes_total{frontend="`+f.Name+`",kind="session",outcome="refreshed"}`)
	}
	var mu sync.Mutex
	var authorizeURLs []string
	lctx, stopListening := context.WithCancel(browser)
	defer stopListening()
	chromedp.ListenTarget(lctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Type == network.ResourceTypeDocument && strings.Contains(e.Request.URL, "/protocol/openid-connect/auth") {
			mu.Lock()
			authorizeURLs = append(authorizeURLs, e.Request.URL)
			mu.Unlock()
		}
	})
	run(step("01-anonymous"), chromedp.Navigate(f.URL(s)+"/"), chromedp.WaitVisible("#login", chromedp.ByQuery))
	run(step("02-login"), chromedp.Click("#login", chromedp.ByQuery))
	// Keycloak's form (no session yet), then its consent page (FAPI
	// clients require consent), in whichever order it shows them; a page
	// between navigations has no state yet.
	deadline := time.Now().Add(60 * time.Second)
	for signedIn := false; !signedIn; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the login did not finish in 60 s", f.Name)
		}
		var page string
		ectx, cancel := context.WithTimeout(browser, 5*time.Second)
		err := chromedp.Run(ectx, chromedp.Evaluate(`document.querySelector('#signed-in:not([hidden])') ? 'in' :
			document.querySelector('#username') ? 'form' : document.querySelector('input[name=accept]') ? 'consent' :
			(document.body && document.body.dataset.state === 'anonymous') ? 'app: ' + document.querySelector('#status').textContent : ''`, &page))
		cancel()
		switch {
		case err != nil || page == "":
			time.Sleep(300 * time.Millisecond) // navigating
		case page == "in":
			signedIn = true
		case page == "form":
			run(step("03-form"), chromedp.SendKeys("#username", userName, chromedp.ByQuery),
				chromedp.SendKeys("#password", userPassword, chromedp.ByQuery), chromedp.Click("#kc-login", chromedp.ByQuery))
			time.Sleep(300 * time.Millisecond)
		case page == "consent":
			run(step("04-consent"), chromedp.Click("input[name=accept]", chromedp.ByQuery))
			time.Sleep(300 * time.Millisecond)
		default:
			t.Fatalf("%s: the login ended on the app with %q", f.Name, page)
		}
	}
	shots := screenshots(t)
	shots.take(browser, "fapi-"+step("05-signed-in"))
	// The browser reached Keycloak with client_id and request_uri only (PAR).
	mu.Lock()
	seen := append([]string(nil), authorizeURLs...)
	mu.Unlock()
	if len(seen) == 0 {
		t.Fatalf("%s: the browser never reached Keycloak's authorization endpoint", f.Name)
	}
	for _, raw := range seen {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if q := u.Query(); len(q) != 2 || q.Get("client_id") != f.ClientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
			t.Fatalf("%s: an authorization request carried %v, want client_id and a PAR request_uri only", f.Name, q)
		}
	}
	callAPI := func(n string) {
		t.Helper()
		var status, result string
		run(step(n), chromedp.Click("#call-api", chromedp.ByQuery),
			chromedp.Poll(`document.querySelector('#status').textContent.startsWith('API answered') || document.querySelector('#status').className === 'error'`, nil, chromedp.WithPollingTimeout(20*time.Second)),
			chromedp.Text("#status", &status, chromedp.ByQuery), chromedp.Text("#api-result", &result, chromedp.ByQuery))
		if !strings.HasPrefix(status, "API answered 200") || !strings.Contains(result, `"saw_authorization": true`) {
			t.Fatalf("%s: %s: the page shows %q %s", f.Name, n, status, result)
		}
	}
	callAPI("06-api")
	before := refreshes()
	time.Sleep(16 * time.Second) // the realm's access tokens live 15 s
	callAPI("07-api-after-expiry")
	if n := refreshes() - before; n < 1 {
		t.Fatalf("%s: no refresh after the access token expired", f.Name)
	}
	run(step("08-logged-out"), chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login", chromedp.ByQuery))
	// The logout revoked the refresh token at Keycloak: the profile checks
	// revocation's client authentication and certificate too.
	for _, l := range strings.Split(s.Logs(4000), "\n") {
		if strings.Contains(l, `"frontend":"`+f.Name+`"`) && strings.Contains(l, "revo") && strings.Contains(l, `"level":"WARN"`) {
			t.Errorf("%s: the logout's revocation failed: %s", f.Name, l)
		}
	}
}

// writeKeyPEM writes k's private key as PKCS#8 PEM under dir.
func writeKeyPEM(t *testing.T, dir, name string, k signingKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fapiFlow drives the back channel (PAR, token) and a scripted browser
// against the FAPI realm.
type fapiFlow struct {
	ctx              context.Context
	appURL           string // the redirect URIs' origin
	token, par, auth string // endpoints
	plain            *http.Client
	ua               *http.Client // the "browser": cookies, no client certificate
}

// clientAuth makes one request's client authentication parameters.
type clientAuth func(t *testing.T) url.Values

// signingKey is a client's key for private_key_jwt assertions.
type signingKey struct {
	kid string
	alg jose.SignatureAlgorithm
	key crypto.Signer
}

func newSigningKey(t *testing.T, kid string, alg jose.SignatureAlgorithm) signingKey {
	t.Helper()
	var key crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: alg, key: key}
}

// jwksAttribute is the public JWKS of keys as the realm's jwks.string
// attribute: a JSON string's content, escaped to sit between its quotes.
func jwksAttribute(t *testing.T, keys ...signingKey) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.key.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	quoted, err := json.Marshal(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	return string(quoted[1 : len(quoted)-1])
}

// assertionAuth is private_key_jwt (RFC 7523) for clientID with key and
// audience aud: a fresh assertion each call.
func (f *fapiFlow) assertionAuth(clientID string, key signingKey, aud string) clientAuth {
	return func(t *testing.T) url.Values {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.alg, Key: key.key},
			(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.kid))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		a, err := jwt.Signed(signer).Claims(jwt.Claims{
			Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud},
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(60 * time.Second)),
			ID: randomString(t),
		}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return url.Values{"client_id": {clientID},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	}
}

// dpopProof is an RFC 9449 proof for method and target.
func dpopProof(t *testing.T, key *ecdsa.PrivateKey, method, target string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := jwt.Signed(signer).Claims(map[string]any{
		"htm": method, "htu": target, "iat": time.Now().Unix(), "jti": randomString(t),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func jwkThumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	sum, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(sum)
}

func randomString(t *testing.T) string {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// pkce is one PKCE S256 verifier and its challenge.
type pkce struct{ verifier, challenge string }

func newPKCE(t *testing.T) pkce {
	v := randomString(t) + randomString(t)
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authParams is an authorization request (for PAR or the front channel);
// challenge "" leaves PKCE out.
func authParams(clientID, appURL, challenge string) url.Values {
	q := url.Values{"client_id": {clientID}, "response_type": {"code"}, "scope": {"openid"},
		"redirect_uri": {appURL + "/bff/callback"}, "state": {"s-" + clientID}, "nonce": {"n-" + clientID}}
	if challenge != "" {
		q.Set("code_challenge", challenge)
		q.Set("code_challenge_method", "S256")
	}
	return q
}

func (f *fapiFlow) codeGrant(t *testing.T, code string, v pkce, auth clientAuth) url.Values {
	form := auth(t)
	form.Set("grant_type", "authorization_code")
	form.Set("code", code)
	form.Set("redirect_uri", f.appURL+"/bff/callback")
	form.Set("code_verifier", v.verifier)
	return form
}

func refreshGrant(t *testing.T, refresh string, auth clientAuth) url.Values {
	form := auth(t)
	form.Set("grant_type", "refresh_token")
	form.Set("refresh_token", refresh)
	return form
}

// post sends a form and decodes the JSON answer.
func (f *fapiFlow) post(t *testing.T, client *http.Client, target string, form url.Values, hdr http.Header) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body map[string]any
	if len(raw) == 0 {
		return resp.StatusCode, nil, resp.Header // revocation answers 200 without a body
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("POST %s: status %d, not JSON: %.300s", target, resp.StatusCode, raw)
	}
	return resp.StatusCode, body, resp.Header
}

// tokenSet is a token response.
type tokenSet struct {
	AccessToken, RefreshToken, TokenType string
}

// tokens sends a grant that must succeed with tokenType; proof, when set,
// makes a fresh DPoP header per attempt.
func (f *fapiFlow) tokens(t *testing.T, client *http.Client, form url.Values, proof func() http.Header, tokenType string) tokenSet {
	t.Helper()
	var hdr http.Header
	if proof != nil {
		hdr = proof()
	}
	status, body, _ := f.post(t, client, f.token, form, hdr)
	if status != http.StatusOK {
		t.Fatalf("token request (%s): status %d: %v %v", form.Get("grant_type"), status, body["error"], body["error_description"])
	}
	tok := tokenSet{AccessToken: str(body["access_token"]), RefreshToken: str(body["refresh_token"]), TokenType: str(body["token_type"])}
	if tok.TokenType != tokenType || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token response: token_type %q (want %s), access token %v, refresh token %v",
			tok.TokenType, tokenType, tok.AccessToken != "", tok.RefreshToken != "")
	}
	return tok
}

func str(v any) string { s, _ := v.(string); return s }

// code pushes an authorization request for clientID (with its client
// authentication, over client), has the scripted browser sign in and
// consent as needed, and returns the code from the redirect.
func (f *fapiFlow) code(t *testing.T, client *http.Client, clientID string, auth clientAuth, v pkce, hdr http.Header) string {
	t.Helper()
	form := authParams(clientID, f.appURL, v.challenge)
	for k, vals := range auth(t) {
		form[k] = vals
	}
	status, body, _ := f.post(t, client, f.par, form, hdr)
	requestURI := str(body["request_uri"])
	if status != http.StatusCreated || requestURI == "" {
		t.Fatalf("PAR for %s: status %d: %v %v", clientID, status, body["error"], body["error_description"])
	}
	q := url.Values{"client_id": {clientID}, "request_uri": {requestURI}}
	loc := f.authorizeRedirect(t, q)
	got := loc.Query()
	if got.Get("error") != "" || got.Get("code") == "" || got.Get("state") != "s-"+clientID {
		t.Fatalf("authorization for %s ended at %s?%s", clientID, loc.Path, redactCode(got))
	}
	return got.Get("code")
}

func redactCode(q url.Values) string {
	if q.Has("code") {
		q.Set("code", "…")
	}
	return q.Encode()
}

var (
	formAction  = regexp.MustCompile(`<form[^>]*\saction="([^"]+)"`)
	hiddenInput = regexp.MustCompile(`<input[^>]*type="hidden"[^>]*>`)
	inputName   = regexp.MustCompile(`\sname="([^"]*)"`)
	inputValue  = regexp.MustCompile(`\svalue="([^"]*)"`)
)

// authorizeRedirect opens the authorization endpoint with q in the
// scripted browser, fills Keycloak's login form and consent page when they
// come (at most four pages), and returns the redirect to the app.
func (f *fapiFlow) authorizeRedirect(t *testing.T, q url.Values) *url.URL {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.auth+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		resp, err := f.ua.Do(req)
		if err != nil {
			t.Fatalf("browser %s: %v", req.URL.Path, err)
		}
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
			loc, err := resp.Location()
			if err != nil || loc.Host != strings.TrimPrefix(f.appURL, "https://") {
				t.Fatalf("browser redirected to %v (%v)", loc, err)
			}
			return loc
		}
		m := formAction.FindSubmatch(page)
		if resp.StatusCode != http.StatusOK || m == nil {
			t.Fatalf("browser: status %d at %s without a form: %.400s", resp.StatusCode, req.URL.Path, pageText(page))
		}
		form := url.Values{}
		for _, in := range hiddenInput.FindAll(page, -1) {
			if n := inputName.FindSubmatch(in); n != nil {
				val := ""
				if v := inputValue.FindSubmatch(in); v != nil {
					val = html.UnescapeString(string(v[1]))
				}
				form.Set(html.UnescapeString(string(n[1])), val)
			}
		}
		switch {
		case strings.Contains(string(page), `name="password"`):
			form.Set("username", userName)
			form.Set("password", userPassword)
		case strings.Contains(string(page), `name="accept"`):
			form.Set("accept", "Yes")
		default:
			t.Fatalf("browser: unexpected page at %s: %.400s", req.URL.Path, pageText(page))
		}
		action, err := req.URL.Parse(html.UnescapeString(string(m[1])))
		if err != nil {
			t.Fatalf("browser: form action: %v", err)
		}
		req, err = http.NewRequestWithContext(f.ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	t.Fatal("browser: no redirect to the app after four pages")
	return nil
}

// pageText is an HTML page's visible text, roughly, for failure messages.
func pageText(page []byte) string {
	s := regexp.MustCompile(`(?s)<(script|style).*?</(script|style)>|<[^>]+>`).ReplaceAllString(string(page), " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

// newUserAgent is the scripted browser: a cookie jar, the test CA trusted,
// no client certificate, and redirects followed within Keycloak only (not
// to the app's port).
func newUserAgent(t *testing.T, pki *harness.PKI, appPort int) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar: jar, Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: pki.ClientTLS(nil)},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Port() == strconv.Itoa(appPort) || len(via) > 5 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

func getJSON(t *testing.T, ctx context.Context, client *http.Client, target string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", target, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
}

// authorizePage opens the authorization endpoint with q in the scripted
// browser and returns the status and text of the page Keycloak shows (or
// where it redirects, the code left out).
func (f *fapiFlow) authorizePage(t *testing.T, q url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodGet, f.auth+"?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.ua.Do(req)
	if err != nil {
		t.Fatalf("browser %s: %v", req.URL.Path, err)
	}
	defer resp.Body.Close()
	if loc, err := resp.Location(); err == nil {
		return resp.StatusCode, "redirect to " + loc.Scheme + "://" + loc.Host + loc.Path + "?" + redactCode(loc.Query())
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, pageText(page)
}

// wantStatusError checks a back-channel error answer.
func wantStatusError(t *testing.T, status int, body map[string]any, wantStatus int, code, descPart string) {
	t.Helper()
	desc := str(body["error_description"])
	if status != wantStatus || str(body["error"]) != code || !strings.Contains(desc, descPart) {
		t.Fatalf("status %d %v %q, want %d %s with %q", status, body["error"], desc, wantStatus, code, descPart)
	}
	t.Logf("refused: %d error=%s error_description=%q", status, code, desc)
}

// wantCnf checks the access token's confirmation claim (RFC 8705 x5t#S256
// or RFC 9449 jkt). Keycloak signs it; the test reads it unverified, as
// the signature is not what is under test.
func wantCnf(t *testing.T, accessToken, member, want string) {
	t.Helper()
	parts := strings.Split(accessToken, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Cnf map[string]string `json:"cnf"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if got := claims.Cnf[member]; got != want {
		t.Fatalf("access token cnf = %v, want %s %s", claims.Cnf, member, want)
	}
	t.Logf("accepted: access token bound by cnf.%s", member)
}
