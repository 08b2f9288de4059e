package oidctest

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var d discovery
	getJSON(t, e.client, e.srv.URL+PathDiscovery, &d)
	iss := e.srv.URL
	checks := []struct {
		name      string
		got, want any
	}{
		{"issuer", d.Issuer, iss},
		{"authorization_endpoint", d.AuthorizationEndpoint, iss + PathAuthorize},
		{"token_endpoint", d.TokenEndpoint, iss + PathToken},
		{"jwks_uri", d.JWKSURI, iss + PathJWKS},
		{"userinfo_endpoint", d.UserinfoEndpoint, iss + PathUserinfo},
		{"end_session_endpoint", d.EndSessionEndpoint, iss + PathEndSession},
		{"revocation_endpoint", d.RevocationEndpoint, iss + PathRevoke},
		{"response_types", len(d.ResponseTypesSupported) == 1 && d.ResponseTypesSupported[0] == "code", true},
		{"pkce", len(d.CodeChallengeMethodsSupported) == 1 && d.CodeChallengeMethodsSupported[0] == "S256", true},
		{"alg", len(d.IDTokenSigningAlgValuesSupported) == 1 && d.IDTokenSigningAlgValuesSupported[0] == "RS256", true},
		{"grant types", len(d.GrantTypesSupported), 4},
		{"iss parameter", d.AuthorizationResponseISSSupported, true},
		{"backchannel", d.BackchannelLogoutSupported, true},
		{"backchannel session", d.BackchannelLogoutSessionSupported, true},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.got != c.want {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestCodeFlow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		basic bool
	}{
		{"client_secret_basic", true},
		{"client_secret_post", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			resp := e.authorize(t, authorizeParams())
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("authorize status %d", resp.StatusCode)
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			q := loc.Query()
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
				t.Errorf("redirected to %s", got)
			}
			if q.Get("state") != "st-1" || q.Get("iss") != e.srv.URL || q.Get("code") == "" {
				t.Fatalf("callback query %v", q)
			}
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {q.Get("code")},
				"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
			}
			user, pass := testClient, testSecret
			if !tt.basic {
				form.Set("client_id", testClient)
				form.Set("client_secret", testSecret)
				user, pass = "", ""
			}
			res := e.postForm(t, PathToken, form, user, pass)
			if res.Status != http.StatusOK {
				t.Fatalf("token: %d %s", res.Status, res.Error)
			}
			if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q", cc)
			}
			if res.TokenType != "Bearer" || res.ExpiresIn != 300 || res.RefreshToken == "" {
				t.Errorf("token response %+v", res.tokenResponse)
			}
			set := e.jwks(t)
			id, hdr := verify(t, set, res.IDToken)
			if hdr.KeyID != e.p.KeyID() || hdr.Algorithm != "RS256" {
				t.Errorf("ID token header %+v", hdr)
			}
			now := float64(e.clock.Now().Unix())
			want := map[string]any{
				"iss": e.srv.URL, "sub": "demo-user", "aud": testClient, "azp": testClient,
				"nonce": "n-1", "name": "Demo User", "email": "demo@example.com", "preferred_username": "demo",
				"iat": now, "auth_time": now, "exp": now + 300,
			}
			for k, v := range want {
				if id[k] != v {
					t.Errorf("id_token %s = %v, want %v", k, id[k], v)
				}
			}
			at, atHdr := verify(t, set, res.AccessToken)
			if atHdr.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("AT typ %v", atHdr.ExtraHeaders["typ"])
			}
			for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "scope", "client_id", "sid"} {
				if _, ok := at[k]; !ok {
					t.Errorf("access token lacks %s", k)
				}
			}
			if at["sid"] != id["sid"] || at["client_id"] != testClient || at["aud"] != DefaultAudience {
				t.Errorf("access token claims %v", at)
			}
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+PathUserinfo, nil)
			req.Header.Set("Authorization", "Bearer "+res.AccessToken)
			ui, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = ui.Body.Close()
			if ui.StatusCode != http.StatusOK {
				t.Errorf("userinfo status %d", ui.StatusCode)
			}
			if s := e.p.Stats(); s.Authorizations != 1 || s.AuthorizationCodeGrants != 1 || s.UserinfoRequests != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(url.Values)
		status    int
		wantError string // for redirects
	}{
		{"unknown client", func(q url.Values) { q.Set("client_id", "nope") }, http.StatusBadRequest, ""},
		{"unregistered redirect_uri", func(q url.Values) { q.Set("redirect_uri", testRedirect+"/x") }, http.StatusBadRequest, ""},
		{"redirect_uri missing", func(q url.Values) { q.Del("redirect_uri") }, http.StatusBadRequest, ""},
		{"response_type token", func(q url.Values) { q.Set("response_type", "token") }, http.StatusFound, "unsupported_response_type"},
		{"no code_challenge", func(q url.Values) { q.Del("code_challenge"); q.Del("code_challenge_method") }, http.StatusFound, "invalid_request"},
		{"plain method", func(q url.Values) { q.Set("code_challenge_method", "plain") }, http.StatusFound, "invalid_request"},
		{"method missing", func(q url.Values) { q.Del("code_challenge_method") }, http.StatusFound, "invalid_request"},
		{"short challenge", func(q url.Values) { q.Set("code_challenge", "abc") }, http.StatusFound, "invalid_request"},
		{"repeated state", func(q url.Values) { q.Add("state", "x") }, http.StatusFound, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			q := authorizeParams()
			tt.mutate(q)
			resp := e.authorize(t, q)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status != http.StatusFound {
				if resp.Header.Get("Location") != "" {
					t.Error("error redirect to an unverified redirect_uri")
				}
				return
			}
			loc, _ := url.Parse(resp.Header.Get("Location"))
			lq := loc.Query()
			if lq.Get("error") != tt.wantError || lq.Get("code") != "" || lq.Get("iss") != e.srv.URL {
				t.Errorf("redirect query %v", lq)
			}
			if tt.name != "repeated state" && lq.Get("state") != "st-1" {
				t.Errorf("state %q", lq.Get("state"))
			}
		})
	}
}

func TestAuthorizeErrorHook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.p.SetAuthorizeError("access_denied")
	loc, _ := url.Parse(e.authorize(t, authorizeParams()).Header.Get("Location"))
	if loc.Query().Get("error") != "access_denied" || loc.Query().Get("state") != "st-1" {
		t.Errorf("redirect %s", loc)
	}
	e.p.SetAuthorizeError("")
	_ = e.code(t)
}

func TestCodeGrantErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(form url.Values)
		user      string
		pass      string
		advance   time.Duration
		status    int
		wantError string
	}{
		{"PKCE mismatch", func(f url.Values) { f.Set("code_verifier", testVerifier[:42]+"Z") }, testClient, testSecret, 0, 400, "invalid_grant"},
		{"verifier missing", func(f url.Values) { f.Del("code_verifier") }, testClient, testSecret, 0, 400, "invalid_grant"},
		{"verifier is the challenge", func(f url.Values) { f.Set("code_verifier", challenge(testVerifier)) }, testClient, testSecret, 0, 400, "invalid_grant"},
		{"redirect_uri mismatch", func(f url.Values) { f.Set("redirect_uri", "https://app.example/other") }, testClient, testSecret, 0, 400, "invalid_grant"},
		{"unknown code", func(f url.Values) { f.Set("code", "nope") }, testClient, testSecret, 0, 400, "invalid_grant"},
		{"expired code", func(url.Values) {}, testClient, testSecret, 2 * time.Minute, 400, "invalid_grant"},
		{"wrong secret", func(url.Values) {}, testClient, "wrong", 0, 401, "invalid_client"},
		{"unknown client", func(url.Values) {}, "ghost", "x", 0, 401, "invalid_client"},
		{"code of another client", func(url.Values) {}, "other", "other-secret", 0, 400, "invalid_grant"},
		{"no client auth", func(url.Values) {}, "", "", 0, 401, "invalid_client"},
		{"unsupported grant", func(f url.Values) { f.Set("grant_type", "password") }, testClient, testSecret, 0, 400, "unsupported_grant_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			code := e.code(t)
			e.clock.Advance(tt.advance)
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {code},
				"redirect_uri": {testRedirect}, "code_verifier": {testVerifier},
			}
			tt.mutate(form)
			res := e.postForm(t, PathToken, form, tt.user, tt.pass)
			if res.Status != tt.status || res.Error != tt.wantError || res.AccessToken != "" {
				t.Fatalf("got %d %q, want %d %q", res.Status, res.Error, tt.status, tt.wantError)
			}
			if res.Header.Get("Content-Type") != "application/json" || res.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", res.Header)
			}
		})
	}
}

func TestCodeReuseRevokesIssuedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	code := e.code(t)
	first := e.exchange(t, code)
	if first.Status != http.StatusOK {
		t.Fatalf("first exchange %d", first.Status)
	}
	second := e.exchange(t, code)
	if second.Status != http.StatusBadRequest || second.Error != "invalid_grant" {
		t.Fatalf("reuse: %d %q", second.Status, second.Error)
	}
	if !e.p.IsRevoked(first.RefreshToken) || !e.p.IsRevoked(first.AccessToken) {
		t.Error("tokens from the reused code are not revoked")
	}
	if r := e.refresh(t, first.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("refresh after code reuse: %d %q", r.Status, r.Error)
	}
	if s := e.p.Stats(); s.InvalidGrants != 2 || s.FamilyRevocations != 1 || s.AuthorizationCodeGrants != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestPublicClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	q := authorizeParams()
	q.Set("client_id", "spa")
	q.Set("redirect_uri", "https://spa.example/cb")
	loc, _ := url.Parse(e.authorize(t, q).Header.Get("Location"))
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {"spa"},
		"redirect_uri": {"https://spa.example/cb"}, "code_verifier": {testVerifier},
	}
	if res := e.postForm(t, PathToken, form, "", ""); res.Status != http.StatusOK {
		t.Fatalf("public client code grant: %d %s", res.Status, res.Error)
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "client_id": {"spa"}}
	if res := e.postForm(t, PathToken, cc, "", ""); res.Error != "unauthorized_client" {
		t.Errorf("public client_credentials: %d %q", res.Status, res.Error)
	}
}

// TestBrowserSessions: with BrowserSessions, a silent authorization needs
// the cookie of a live session at the provider (single sign-on) and joins
// that session; without one, or after the session ended, it answers
// login_required. An interactive one always starts a new session.
func TestBrowserSessions(t *testing.T) {
	e := newEnv(t, func(c *ProviderConfig) { c.BrowserSessions = true })
	silent := authorizeParams()
	silent.Set("prompt", "none")
	outcome := func(resp *http.Response) (code, errCode string) {
		t.Helper()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize: status %d", resp.StatusCode)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		return loc.Query().Get("code"), loc.Query().Get("error")
	}
	withCookie := func(q url.Values, ck *http.Cookie) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, e.srv.URL+PathAuthorize+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if ck != nil {
			req.AddCookie(ck)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	sidOf := func(code string) string {
		t.Helper()
		res := e.exchange(t, code)
		claims, _ := verify(t, e.jwks(t), res.IDToken)
		sid, _ := claims["sid"].(string)
		return sid
	}

	if _, errCode := outcome(withCookie(silent, nil)); errCode != "login_required" {
		t.Fatalf("silent without a session: error %q, want login_required", errCode)
	}
	resp := withCookie(authorizeParams(), nil)
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == browserSessionCookie {
			ck = c
		}
	}
	code, _ := outcome(resp)
	if ck == nil || code == "" || !ck.HttpOnly {
		t.Fatalf("interactive authorization: code %q, cookie %v", code, ck)
	}
	first := sidOf(code)
	code, errCode := outcome(withCookie(silent, ck))
	if code == "" || errCode != "" {
		t.Fatalf("silent with the session's cookie: code %q error %q", code, errCode)
	}
	if sid := sidOf(code); sid != first {
		t.Fatalf("silent login got sid %q, want the browser's session %q", sid, first)
	}
	if !e.p.EndSession(t.Context(), first) {
		t.Fatal("EndSession found no session")
	}
	if _, errCode := outcome(withCookie(silent, ck)); errCode != "login_required" {
		t.Fatalf("silent after the session ended: error %q, want login_required", errCode)
	}
}
