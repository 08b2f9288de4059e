package sampleapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
)

const (
	clientID = "bff"
	secret   = "s3cret"
	redirect = "https://app.example/bff/callback"
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

// env is a provider, its server (counting JWKS fetches) and an API in front of it.
type env struct {
	p         *oidctest.Provider
	issuer    string
	api       *API
	jwksHits  atomic.Int32
	apiClock  *clock
	providerT *clock
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func newEnv(t *testing.T, mutate func(*Config)) *env {
	t.Helper()
	e := &env{apiClock: &clock{t: time.Now()}, providerT: &clock{t: time.Now()}}
	p, err := oidctest.NewProvider(oidctest.ProviderConfig{
		Clients:   []oidctest.Client{{ID: clientID, Secret: secret, RedirectURIs: []string{redirect}, TokenExchange: true}},
		Audiences: map[string][]string{"orders": {"orders:read"}, "billing": nil},
		Now:       e.providerT.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == oidctest.PathJWKS {
			e.jwksHits.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	if err := p.SetIssuer(srv.URL); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Issuer: srv.URL, Now: e.apiClock.Now}
	if mutate != nil {
		mutate(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p, e.issuer, e.api = p, srv.URL, api
	return e
}

// userToken runs the code flow against the provider and returns the access token.
func (e *env) userToken(t *testing.T) string {
	t.Helper()
	return e.tokenRequest(t, e.codeGrant(t, "openid profile"))
}

// codeGrant runs /authorize for scope and returns the authorization_code
// grant's form that redeems the code it gave.
func (e *env) codeGrant(t *testing.T, scope string) url.Values {
	t.Helper()
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "scope": {scope},
		"state": {"s"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(e.issuer + oidctest.PathAuthorize + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier},
	}
}

// tokenRequest posts form to the token endpoint and returns the access token.
func (e *env) tokenRequest(t *testing.T, form url.Values) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+oidctest.PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// whoami calls the API with headers and decodes the answer.
func (e *env) whoami(t *testing.T, header http.Header) Whoami {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("whoami: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	var w Whoami
	if err := json.Unmarshal(rec.Body.Bytes(), &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestWhoamiTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		mutate   func(*Config)
		header   func(t *testing.T, e *env) http.Header
		advance  time.Duration // on the API's clock
		wantSub  string
		wantAuth bool
		wantErr  bool
	}{
		{"no authorization", nil, func(*testing.T, *env) http.Header { return nil }, 0, "", false, false},
		{"user token", nil, func(t *testing.T, e *env) http.Header { return bearer(e.userToken(t)) }, 0, "demo-user", true, false},
		{"lower-case scheme", nil, func(t *testing.T, e *env) http.Header {
			return http.Header{"Authorization": {"bearer " + e.userToken(t)}}
		}, 0, "demo-user", true, false},
		{"client credentials token", nil, func(t *testing.T, e *env) http.Header {
			return bearer(e.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}}))
		}, 0, clientID, true, false},
		{"expired token", nil, func(t *testing.T, e *env) http.Header { return bearer(e.userToken(t)) }, 6 * time.Minute, "", true, true},
		{"garbage", nil, func(*testing.T, *env) http.Header { return bearer("not.a.jwt") }, 0, "", true, true},
		{"basic scheme", nil, func(*testing.T, *env) http.Header { return http.Header{"Authorization": {"Basic YTpi"}} }, 0, "", true, true},
		{"two authorization headers", nil, func(t *testing.T, e *env) http.Header {
			tok := e.userToken(t)
			return http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}
		}, 0, "", true, true},
		{"tampered payload", nil, func(t *testing.T, e *env) http.Header {
			parts := strings.Split(e.userToken(t), ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","iss":"` + e.issuer + `","exp":9999999999}`))
			return bearer(strings.Join(parts, "."))
		}, 0, "", true, true},
		{"wrong issuer", nil, func(t *testing.T, e *env) http.Header {
			tok, err := e.p.MintLogoutToken(oidctest.LogoutToken{Issuer: "https://evil.example", Subject: "demo-user", Type: "JWT"})
			if err != nil {
				t.Fatal(err)
			}
			return bearer(tok)
		}, 0, "", true, true},
		{"logout token", nil, func(t *testing.T, e *env) http.Header {
			tok, err := e.p.MintLogoutToken(oidctest.LogoutToken{Subject: "demo-user"})
			if err != nil {
				t.Fatal(err)
			}
			return bearer(tok)
		}, 0, "", true, true},
		{"audience matches", func(c *Config) { c.Audience = oidctest.DefaultAudience }, func(t *testing.T, e *env) http.Header { return bearer(e.userToken(t)) }, 0, "demo-user", true, false},
		{"exchanged token, no audience check", nil, func(t *testing.T, e *env) http.Header {
			return bearer(e.exchanged(t, e.userToken(t), "orders"))
		}, 0, "demo-user", true, false},
		{"token from another provider", nil, func(t *testing.T, _ *env) http.Header { return bearer(newEnv(t, nil).userToken(t)) }, 0, "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.mutate)
			h := tt.header(t, e)
			e.apiClock.Advance(tt.advance)
			got := e.whoami(t, h)
			if got.Sub != tt.wantSub || got.SawAuthorization != tt.wantAuth || (got.TokenError != "") != tt.wantErr {
				t.Fatalf("got %+v", got)
			}
			if tt.wantSub != "" {
				exp, err := time.Parse(time.RFC3339, got.TokenExpiresAt)
				if err != nil || !exp.After(e.apiClock.Now()) {
					t.Errorf("token_expires_at %q", got.TokenExpiresAt)
				}
				if got.ClientID != clientID || len(got.Aud) == 0 {
					t.Errorf("client_id %q, aud %q", got.ClientID, got.Aud)
				}
			} else if got.TokenExpiresAt != "" {
				t.Errorf("token_expires_at %q without a verified token", got.TokenExpiresAt)
			}
		})
	}
}

func TestWhoamiCookies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cookies   []string
		cfgName   string
		wantSaw   bool
		wantIn    bool // session_name_in_cookie_header
		wantNames []string
	}{
		{"none", nil, "", false, false, []string{}},
		{"session cookie among others", []string{"a=1; __Host-bff=abc; b=2"}, "", true, true, []string{"a", "__Host-bff", "b"}},
		{"only others", []string{"a=1; b=2"}, "", false, false, []string{"a", "b"}},
		{"case variant", []string{"__host-bff=x"}, "", false, false, []string{"__host-bff"}},
		{"prefix variant", []string{"__Host-bffx=x; __Secure-bff=y"}, "", false, true, []string{"__Host-bffx", "__Secure-bff"}},
		{"second cookie header", []string{"a=1", "__Host-bff=z"}, "", true, true, []string{"a", "__Host-bff"}},
		// Envoy's merge of repeated Cookie headers: the ';' split misnames
		// the pair, the header check still sees it.
		{"comma-joined session cookie", []string{"a=1,__Host-bff=z"}, "", false, true, []string{"a"}},
		{"leading comma", []string{",__Host-bff=z"}, "", false, true, []string{",__Host-bff"}},
		{"configured name", []string{"__Host-app=1"}, "__Host-app", true, true, []string{"__Host-app"}},
		{"default not seen with custom name", []string{"__Host-bff=1"}, "__Host-app", false, false, []string{"__Host-bff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.SessionCookieName = tt.cfgName })
			got := e.whoami(t, http.Header{"Cookie": tt.cookies})
			if got.SawSessionCookie != tt.wantSaw || strings.Join(got.CookieNames, ",") != strings.Join(tt.wantNames, ",") {
				t.Errorf("got saw=%v names=%v", got.SawSessionCookie, got.CookieNames)
			}
			if got.SessionNameInCookieHeader != tt.wantIn || got.CookieHeaders != len(tt.cookies) {
				t.Errorf("got session_name_in_cookie_header=%v cookie_headers=%d", got.SessionNameInCookieHeader, got.CookieHeaders)
			}
			if got.Sub != "" || got.SawAuthorization {
				t.Errorf("got %+v", got)
			}
		})
	}
}

func TestKeyRotationAndCooldown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	if got := e.whoami(t, bearer(e.userToken(t))); got.Sub != "demo-user" {
		t.Fatalf("before rotation: %+v", got)
	}
	if _, err := e.p.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if got := e.whoami(t, bearer(e.userToken(t))); got.Sub != "demo-user" {
		t.Fatalf("after rotation: %+v", got)
	}
	if n := e.jwksHits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
	for range 20 {
		tok := e.userToken(t)
		parts := strings.Split(tok, ".")
		parts[0] = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"random-` + parts[2][:8] + `"}`))
		if got := e.whoami(t, bearer(strings.Join(parts, "."))); got.Sub != "" {
			t.Fatalf("unknown kid accepted: %+v", got)
		}
	}
	if n := e.jwksHits.Load(); n != 2 {
		t.Errorf("%d JWKS fetches after unknown kids inside the cooldown, want still 2", n)
	}
	e.apiClock.Advance(11 * time.Second)
	if _, err := e.p.RotateKey(); err != nil {
		t.Fatal(err)
	}
	if got := e.whoami(t, bearer(e.userToken(t))); got.Sub != "demo-user" {
		t.Fatalf("after cooldown: %+v", got)
	}
	if n := e.jwksHits.Load(); n != 3 {
		t.Errorf("%d JWKS fetches after the cooldown, want 3", n)
	}
}

func TestProviderDownThenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tok := e.userToken(t)
	e.p.SetDown(true)
	if got := e.whoami(t, bearer(tok)); got.Sub != "" || !strings.Contains(got.TokenError, "unavailable") {
		t.Fatalf("provider down: %+v", got)
	}
	e.p.SetDown(false)
	if got := e.whoami(t, bearer(tok)); got.Sub != "demo-user" {
		t.Fatalf("provider back: %+v", got)
	}
	e.p.SetDown(true)
	if got := e.whoami(t, bearer(tok)); got.Sub != "demo-user" {
		t.Errorf("cached keys not used while provider down: %+v", got)
	}
}

func TestRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/api/health", 200, "ok"},
		{http.MethodGet, "/api/whoami", 200, `"sub":""`},
		{http.MethodPost, "/api/whoami", 405, `"error":"method_not_allowed"`},
		{http.MethodGet, "/api/nope", 404, `"error":"not_found"`},
		{http.MethodGet, "/api/", 404, `"error":"not_found"`},
		{http.MethodGet, "/", 404, `"error":"not_found"`},
	}
	e := newEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			e.api.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("got %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestNewInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no issuer", Config{}},
		{"relative issuer", Config{Issuer: "/x"}},
		{"ftp issuer", Config{Issuer: "ftp://x"}},
		{"negative cooldown", Config{Issuer: "http://x", RefetchCooldown: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := New(tt.cfg); err == nil {
				t.Error("no error")
			}
		})
	}
}

// exchanged exchanges subject at the provider for a token for audiences.
func (e *env) exchanged(t *testing.T, subject string, audiences ...string) string {
	t.Helper()
	return e.tokenRequest(t, url.Values{
		"grant_type": {oidctest.GrantTypeTokenExchange}, "subject_token": {subject},
		"subject_token_type": {oidctest.TokenTypeAccessToken}, "audience": audiences,
	})
}

// call sends GET path to the API with headers and returns the recorder.
func (e *env) call(path string, header http.Header) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	return rec
}

// TestAudienceAPI: an API built for an audience serves only tokens made for
// it; any other request is 401 invalid_token, counted, and a valid token for
// another audience is counted as such (T74).
func TestAudienceAPI(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		header    func(t *testing.T, e *env) http.Header
		advance   time.Duration // on the API's clock
		status    int
		challenge string // WWW-Authenticate on 401
		wantAud   []string
		wantStats Stats
	}{
		{"token exchanged for the API", func(t *testing.T, e *env) http.Header {
			return bearer(e.exchanged(t, e.userToken(t), "orders"))
		}, 0, 200, "", []string{"orders"}, Stats{Served: 1, Verified: 1}},
		{"token exchanged for it and another", func(t *testing.T, e *env) http.Header {
			return bearer(e.exchanged(t, e.userToken(t), "billing", "orders"))
		}, 0, 200, "", []string{"billing", "orders"}, Stats{Served: 1, Verified: 1}},
		{"client credentials token for the API", func(t *testing.T, e *env) http.Header {
			return bearer(e.tokenRequest(t, url.Values{"grant_type": {"client_credentials"}, "audience": {"orders"}}))
		}, 0, 200, "", []string{"orders"}, Stats{Served: 1, Verified: 1}},
		{"the session's own token", func(t *testing.T, e *env) http.Header { return bearer(e.userToken(t)) },
			0, 401, `Bearer realm="sample-api", error="invalid_token"`, []string{oidctest.DefaultAudience}, Stats{Rejected: 1, WrongAudience: 1}},
		{"token exchanged for another API", func(t *testing.T, e *env) http.Header {
			return bearer(e.exchanged(t, e.userToken(t), "billing"))
		}, 0, 401, `Bearer realm="sample-api", error="invalid_token"`, []string{"billing"}, Stats{Rejected: 1, WrongAudience: 1}},
		{"expired token for the API", func(t *testing.T, e *env) http.Header {
			return bearer(e.exchanged(t, e.userToken(t), "orders"))
		}, 6 * time.Minute, 401, `Bearer realm="sample-api", error="invalid_token"`, nil, Stats{Rejected: 1}},
		{"garbage", func(*testing.T, *env) http.Header { return bearer("not.a.jwt") },
			0, 401, `Bearer realm="sample-api", error="invalid_token"`, nil, Stats{Rejected: 1}},
		{"no token", func(*testing.T, *env) http.Header { return nil }, 0, 401, `Bearer realm="sample-api"`, nil, Stats{Rejected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.Audience = "orders" })
			h := tt.header(t, e)
			e.apiClock.Advance(tt.advance)
			rec := e.call("/api/whoami", h)
			if rec.Code != tt.status || rec.Header().Get("WWW-Authenticate") != tt.challenge {
				t.Fatalf("got %d %q: %s", rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
			}
			var body struct {
				Error string `json:"error"`
				Whoami
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if strings.Join(body.Aud, " ") != strings.Join(tt.wantAud, " ") || body.APIAudience != "orders" {
				t.Errorf("aud %q, api_audience %q", body.Aud, body.APIAudience)
			}
			if tt.status == 200 {
				if body.Error != "" || body.Sub == "" || body.ClientID != clientID || body.AuthorizedParty != clientID || body.TokenError != "" {
					t.Errorf("body %s", rec.Body)
				}
			} else if body.Error != "invalid_token" || body.Sub != "" || body.TokenExpiresAt != "" || body.ClientID != "" {
				t.Errorf("body %s", rec.Body)
			}
			if s := e.api.Stats(); s != tt.wantStats {
				t.Errorf("stats %+v, want %+v", s, tt.wantStats)
			}
			// Health stays open.
			if rec := e.call("/api/health", nil); rec.Code != http.StatusOK {
				t.Errorf("health %d", rec.Code)
			}
		})
	}
}

// TestNoAudienceStats: without an audience every whoami is served, bad
// tokens included, and nothing is rejected.
func TestNoAudienceStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.whoami(t, bearer(e.userToken(t)))
	e.whoami(t, bearer("not.a.jwt"))
	e.whoami(t, nil)
	if s := e.api.Stats(); s != (Stats{Served: 3, Verified: 1}) {
		t.Errorf("stats %+v", s)
	}
	if e.api.Audience() != "" {
		t.Errorf("audience %q", e.api.Audience())
	}
}

func TestWhoamiUserHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	got := e.whoami(t, http.Header{"X-User-Department": {"research"}, "X-User-Sub": {"a", "b"}, "X-Other": {"no"}})
	want := map[string]string{"X-User-Department": "research", "X-User-Sub": "a, b"}
	if len(got.UserHeaders) != len(want) {
		t.Fatalf("user_headers = %v, want %v", got.UserHeaders, want)
	}
	for k, v := range want {
		if got.UserHeaders[k] != v {
			t.Errorf("user_headers[%s] = %q, want %q", k, got.UserHeaders[k], v)
		}
	}
}
