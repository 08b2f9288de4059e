package oidctest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testClient   = "bff"
	testSecret   = "s3cret"
	testRedirect = "https://app.example/bff/callback"
	testPostOut  = "https://app.example/"
	testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one provider behind an httptest server.
type env struct {
	p      *Provider
	srv    *httptest.Server
	clock  *fakeClock
	client *http.Client
}

// newEnv starts a provider with a confidential client "bff", a public client
// "spa" and a second confidential client "other"; mutate may change the config.
func newEnv(t *testing.T, mutate func(*ProviderConfig)) *env {
	t.Helper()
	clock := newFakeClock()
	cfg := ProviderConfig{
		Clients: []Client{
			{ID: testClient, Secret: testSecret, RedirectURIs: []string{testRedirect}, PostLogoutRedirectURIs: []string{testPostOut}},
			{ID: "spa", RedirectURIs: []string{"https://spa.example/cb"}},
			{ID: "other", Secret: "other-secret", RedirectURIs: []string{"https://other.example/cb"}},
		},
		Now: clock.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := NewProvider(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	if err := p.SetIssuer(srv.URL); err != nil {
		t.Fatal(err)
	}
	return &env{p: p, srv: srv, clock: clock, client: &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// challenge is the S256 challenge of v.
func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// authorizeParams are valid authorization parameters for the "bff" client.
func authorizeParams() url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {testClient},
		"redirect_uri":          {testRedirect},
		"scope":                 {"openid profile email"},
		"state":                 {"st-1"},
		"nonce":                 {"n-1"},
		"code_challenge":        {challenge(testVerifier)},
		"code_challenge_method": {"S256"},
	}
}

// authorize sends an authorization request and returns the response.
func (e *env) authorize(t *testing.T, q url.Values) *http.Response {
	t.Helper()
	resp, err := e.client.Get(e.srv.URL + PathAuthorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// code runs /authorize with valid parameters and returns the code.
func (e *env) code(t *testing.T) string {
	t.Helper()
	resp := e.authorize(t, authorizeParams())
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: status %d", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	c := loc.Query().Get("code")
	if c == "" {
		t.Fatalf("authorize: no code in %s", loc)
	}
	return c
}

// tokenResult is a decoded token endpoint answer.
type tokenResult struct {
	Status int
	Header http.Header
	tokenResponse
	oauthError
}

// token posts form to the token endpoint, authenticating with basic when user is set.
func (e *env) postForm(t *testing.T, path string, form url.Values, user, pass string) tokenResult {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := tokenResult{Status: resp.StatusCode, Header: resp.Header}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &out.tokenResponse); err != nil {
			t.Fatalf("token body: %v: %s", err, body)
		}
		_ = json.Unmarshal(body, &out.oauthError)
	}
	return out
}

// exchange redeems code for the "bff" client with the test verifier.
func (e *env) exchange(t *testing.T, code string) tokenResult {
	t.Helper()
	return e.postForm(t, PathToken, url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
	}, testClient, testSecret)
}

// refresh redeems a refresh token for the "bff" client.
func (e *env) refresh(t *testing.T, rt string) tokenResult {
	t.Helper()
	return e.postForm(t, PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, testClient, testSecret)
}

// login runs the whole code flow and returns the tokens.
func (e *env) login(t *testing.T) tokenResult {
	t.Helper()
	res := e.exchange(t, e.code(t))
	if res.Status != http.StatusOK {
		t.Fatalf("exchange: %d %s %s", res.Status, res.Error, res.Description)
	}
	return res
}

// jwks fetches the key set the way a relying party would: discovery, then jwks_uri.
func (e *env) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	var d discovery
	getJSON(t, e.client, e.srv.URL+PathDiscovery, &d)
	var set jose.JSONWebKeySet
	getJSON(t, e.client, d.JWKSURI, &set)
	return set
}

// getJSON GETs u and decodes a 200 JSON answer into v.
func getJSON(t *testing.T, c *http.Client, u string, v any) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// verify checks raw's RS256 signature against set and returns its claims and header.
func verify(t *testing.T, set jose.JSONWebKeySet, raw string) (map[string]any, jose.Header) {
	t.Helper()
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", tok.Headers[0].KeyID, len(keys))
	}
	var claims map[string]any
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return claims, tok.Headers[0]
}
