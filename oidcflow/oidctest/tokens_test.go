package oidctest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	first := e.login(t)
	second := e.refresh(t, first.RefreshToken)
	if second.Status != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatalf("rotation: %d %q", second.Status, second.Error)
	}
	if second.IDToken == "" {
		t.Error("refresh returned no ID token")
	}
	set := e.jwks(t)
	id1, _ := verify(t, set, first.IDToken)
	id2, _ := verify(t, set, second.IDToken)
	for _, k := range []string{"iss", "sub", "aud", "sid", "auth_time", "nonce"} {
		if id1[k] != id2[k] {
			t.Errorf("refreshed ID token %s changed: %v → %v", k, id1[k], id2[k])
		}
	}
	if e.p.IsRevoked(first.RefreshToken) {
		t.Error("a rotated token is reported revoked before any reuse")
	}
	reuse := e.refresh(t, first.RefreshToken)
	if reuse.Status != http.StatusBadRequest || reuse.Error != "invalid_grant" {
		t.Fatalf("reuse: %d %q", reuse.Status, reuse.Error)
	}
	for name, tok := range map[string]string{"old RT": first.RefreshToken, "new RT": second.RefreshToken, "new AT": second.AccessToken} {
		if !e.p.IsRevoked(tok) {
			t.Errorf("%s not revoked after reuse", name)
		}
	}
	if r := e.refresh(t, second.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("newest RT still works after reuse: %d", r.Status)
	}
	want := Stats{Authorizations: 1, AuthorizationCodeGrants: 1, RefreshTokenGrants: 1, RefreshRequests: 3, InvalidGrants: 2, FamilyRevocations: 1, DiscoveryRequests: 1, JWKSRequests: 1}
	if s := e.p.Stats(); s != want {
		t.Errorf("stats %+v, want %+v", s, want)
	}
}

func TestRefreshErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		user      string
		pass      string
		form      func(rt string) url.Values
		advance   time.Duration
		wantError string
	}{
		{"unknown token", testClient, testSecret, func(string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}
		}, 0, "invalid_grant"},
		{"other client", "other", "other-secret", func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		}, 0, "invalid_grant"},
		{"expired", testClient, testSecret, func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		}, DefaultRefreshTokenTTL + time.Second, "invalid_grant"},
		{"wider scope", testClient, testSecret, func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"openid admin"}}
		}, 0, "invalid_scope"},
		{"repeated parameter", testClient, testSecret, func(rt string) url.Values {
			return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt, rt}}
		}, 0, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			rt := e.login(t).RefreshToken
			e.clock.Advance(tt.advance)
			if res := e.postForm(t, PathToken, tt.form(rt), tt.user, tt.pass); res.Error != tt.wantError {
				t.Errorf("got %d %q, want %q", res.Status, res.Error, tt.wantError)
			}
		})
	}
}

func TestRefreshWithoutRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ProviderConfig) { c.DisableRefreshRotation = true; c.OmitSID = true })
	first := e.login(t)
	for i := range 3 {
		res := e.refresh(t, first.RefreshToken)
		if res.Status != http.StatusOK || res.RefreshToken != "" {
			t.Fatalf("refresh %d: %d %q rt=%v", i, res.Status, res.Error, res.RefreshToken != "")
		}
		if claims, _ := verify(t, e.jwks(t), res.AccessToken); claims["sid"] != nil {
			t.Error("sid emitted although OmitSID")
		}
	}
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		form      url.Values
		wantAud   string
		wantScope any
	}{
		{"defaults", url.Values{}, DefaultAudience, nil},
		{"audience and scope", url.Values{"audience": {"orders"}, "scope": {"orders:read"}}, "orders", "orders:read"},
		{"resource", url.Values{"resource": {"https://api.example"}}, "https://api.example", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			tt.form.Set("grant_type", "client_credentials")
			res := e.postForm(t, PathToken, tt.form, testClient, testSecret)
			if res.Status != http.StatusOK || res.RefreshToken != "" || res.IDToken != "" {
				t.Fatalf("%d %q", res.Status, res.Error)
			}
			claims, _ := verify(t, e.jwks(t), res.AccessToken)
			if claims["sub"] != testClient || claims["client_id"] != testClient || claims["aud"] != tt.wantAud || claims["scope"] != tt.wantScope || claims["sid"] != nil {
				t.Errorf("claims %v", claims)
			}
			if s := e.p.Stats(); s.ClientCredentialsGrants != 1 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		token       func(tokenResult) string
		user, pass  string
		status      int
		revoked     bool // the RT ends up revoked
		atRevoked   bool
		userinfoOff bool
	}{
		{"refresh token", func(r tokenResult) string { return r.RefreshToken }, testClient, testSecret, 200, true, true, true},
		{"access token", func(r tokenResult) string { return r.AccessToken }, testClient, testSecret, 200, false, true, true},
		{"unknown token", func(tokenResult) string { return "nope" }, testClient, testSecret, 200, false, false, false},
		{"another client's token", func(r tokenResult) string { return r.RefreshToken }, "other", "other-secret", 200, false, false, false},
		{"bad client", func(r tokenResult) string { return r.RefreshToken }, testClient, "bad", 401, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			tok := e.login(t)
			res := e.postForm(t, PathRevoke, url.Values{"token": {tt.token(tok)}, "token_type_hint": {"refresh_token"}}, tt.user, tt.pass)
			if res.Status != tt.status {
				t.Fatalf("status %d", res.Status)
			}
			if got := e.p.IsRevoked(tok.RefreshToken); got != tt.revoked {
				t.Errorf("RT revoked = %v", got)
			}
			if got := e.p.IsRevoked(tok.AccessToken); got != tt.atRevoked {
				t.Errorf("AT revoked = %v", got)
			}
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+PathUserinfo, nil)
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			ui, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = ui.Body.Close()
			if off := ui.StatusCode == http.StatusUnauthorized; off != tt.userinfoOff {
				t.Errorf("userinfo status %d", ui.StatusCode)
			}
		})
	}
}

func TestEndSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		params       func(idToken string) url.Values
		status       int
		wantLocation string
		ended        bool
	}{
		{"hint and registered redirect", func(id string) url.Values {
			return url.Values{"id_token_hint": {id}, "post_logout_redirect_uri": {testPostOut}, "state": {"s1"}}
		}, http.StatusFound, testPostOut + "?state=s1", true},
		{"hint only", func(id string) url.Values { return url.Values{"id_token_hint": {id}} }, http.StatusOK, "", true},
		{"no parameters", func(string) url.Values { return url.Values{} }, http.StatusOK, "", false},
		{"client_id and redirect", func(string) url.Values {
			return url.Values{"client_id": {testClient}, "post_logout_redirect_uri": {testPostOut}}
		}, http.StatusFound, testPostOut, false},
		{"unregistered redirect", func(id string) url.Values {
			return url.Values{"id_token_hint": {id}, "post_logout_redirect_uri": {"https://evil.example/"}}
		}, http.StatusBadRequest, "", false},
		{"redirect without client", func(string) url.Values {
			return url.Values{"post_logout_redirect_uri": {testPostOut}}
		}, http.StatusBadRequest, "", false},
		{"forged hint", func(id string) url.Values { return url.Values{"id_token_hint": {id + "x"}} }, http.StatusBadRequest, "", false},
		{"hint for another client", func(id string) url.Values {
			return url.Values{"id_token_hint": {id}, "client_id": {"other"}}
		}, http.StatusBadRequest, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu       sync.Mutex
				received []string
			)
			rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				mu.Lock()
				received = append(received, r.PostForm.Get("logout_token"))
				mu.Unlock()
			}))
			t.Cleanup(rp.Close)
			e := newEnv(t, func(c *ProviderConfig) { c.Clients[0].BackchannelLogoutURI = rp.URL })
			tok := e.login(t)
			resp, err := e.client.Get(e.srv.URL + PathEndSession + "?" + tt.params(tok.IDToken).Encode())
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			if got := e.p.IsRevoked(tok.RefreshToken); got != tt.ended {
				t.Errorf("RT revoked = %v, want %v", got, tt.ended)
			}
			mu.Lock()
			defer mu.Unlock()
			if tt.ended != (len(received) == 1) {
				t.Fatalf("%d back-channel logout tokens", len(received))
			}
			if tt.ended {
				id, _ := verify(t, e.jwks(t), tok.IDToken)
				lt, hdr := verify(t, e.jwks(t), received[0])
				if lt["sid"] != id["sid"] || lt["aud"] != testClient || hdr.ExtraHeaders["typ"] != "logout+jwt" {
					t.Errorf("logout token %v %v", lt, hdr)
				}
				if s := e.p.Stats(); s.BackchannelLogouts != 1 || s.EndSessions != 1 {
					t.Errorf("stats %+v", s)
				}
			}
		})
	}
}

func TestHoldAndDelayRefreshes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(p *Provider) (release func())
	}{
		{"hold", func(p *Provider) func() { return p.HoldRefreshes() }},
		{"delay", func(p *Provider) func() { p.SetRefreshDelay(300 * time.Millisecond); return func() {} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			rt := e.login(t).RefreshToken
			release := tt.setup(e.p)
			done := make(chan tokenResult, 1)
			go func() { done <- e.refresh(t, rt) }()
			deadline := time.Now().Add(5 * time.Second)
			for e.p.Stats().RefreshRequests == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			select {
			case <-done:
				t.Fatal("refresh answered while held")
			case <-time.After(50 * time.Millisecond):
			}
			if s := e.p.Stats(); s.RefreshTokenGrants != 0 {
				t.Fatalf("refresh granted while held: %+v", s)
			}
			release()
			release()
			if res := <-done; res.Status != http.StatusOK {
				t.Fatalf("after release: %d %q", res.Status, res.Error)
			}
		})
	}
}

func TestHeldRefreshAbandoned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	rt := e.login(t).RefreshToken
	release := e.p.HoldRefreshes()
	defer release()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+PathToken,
		strings.NewReader(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClient, testSecret)
	if resp, err := e.client.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("held refresh answered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.p.Stats().AbandonedRefreshes == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	release()
	if res := e.refresh(t, rt); res.Status != http.StatusOK {
		t.Errorf("abandoned refresh consumed the token: %d %q", res.Status, res.Error)
	}
}

func TestSetDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.p.SetDown(true)
	for _, path := range []string{PathDiscovery, PathJWKS, PathAuthorize, PathToken, PathUserinfo, PathRevoke, PathEndSession} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			resp, err := e.client.Get(e.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
}

func TestSetDownRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.p.SetDown(true)
	e.p.SetDown(false)
	_ = e.login(t)
}

func TestMintLogoutToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    LogoutToken
		check func(t *testing.T, claims map[string]any, hdr jose.Header)
	}{
		{"defaults", LogoutToken{Sid: "sid-1"}, func(t *testing.T, c map[string]any, h jose.Header) {
			ev, _ := c["events"].(map[string]any)
			if _, ok := ev[BackchannelLogoutEvent]; !ok || c["sid"] != "sid-1" || c["aud"] != testClient || c["jti"] == "" || c["sub"] != nil || c["nonce"] != nil {
				t.Errorf("claims %v", c)
			}
			if h.ExtraHeaders["typ"] != "logout+jwt" {
				t.Errorf("typ %v", h.ExtraHeaders["typ"])
			}
		}},
		{"sub only, fixed jti", LogoutToken{Subject: "demo-user", JTI: "j1", Audience: "other"}, func(t *testing.T, c map[string]any, _ jose.Header) {
			if c["sub"] != "demo-user" || c["sid"] != nil || c["jti"] != "j1" || c["aud"] != "other" {
				t.Errorf("claims %v", c)
			}
		}},
		{"malformed variants", LogoutToken{Sid: "s", Nonce: "n", OmitEvents: true, OmitType: true, Issuer: "https://evil.example", ExpiresIn: -1}, func(t *testing.T, c map[string]any, h jose.Header) {
			if c["nonce"] != "n" || c["events"] != nil || c["iss"] != "https://evil.example" || c["exp"] != nil {
				t.Errorf("claims %v", c)
			}
			if _, ok := h.ExtraHeaders["typ"]; ok {
				t.Error("typ present")
			}
		}},
		{"type override and extra", LogoutToken{Sid: "s", Type: "JWT", Extra: map[string]any{"events": "x"}}, func(t *testing.T, c map[string]any, h jose.Header) {
			if h.ExtraHeaders["typ"] != "JWT" || c["events"] != "x" {
				t.Errorf("%v %v", h, c)
			}
		}},
	}
	e := newEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			raw, err := e.p.MintLogoutToken(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			claims, hdr := verify(t, e.jwks(t), raw)
			tt.check(t, claims, hdr)
		})
	}
}

func TestRotateKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	before := e.login(t)
	oldKid := e.p.KeyID()
	kid, err := e.p.RotateKey()
	if err != nil {
		t.Fatal(err)
	}
	if kid == oldKid || e.p.KeyID() != kid {
		t.Fatalf("kid %q after %q", kid, oldKid)
	}
	set := e.jwks(t)
	if len(set.Keys) != 2 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	after := e.login(t)
	if _, h := verify(t, set, after.IDToken); h.KeyID != kid {
		t.Errorf("new token signed by %q", h.KeyID)
	}
	_, _ = verify(t, set, before.IDToken)
	for _, k := range set.Keys {
		if k.Use != "sig" || k.Algorithm != "RS256" || !k.IsPublic() {
			t.Errorf("JWKS entry %+v", k)
		}
	}
}

func TestIssuerWithPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	iss := e.srv.URL + "/realms/demo"
	if err := e.p.SetIssuer(iss + "/"); err != nil {
		t.Fatal(err)
	}
	var d discovery
	getJSON(t, e.client, iss+PathDiscovery, &d)
	if d.Issuer != iss || d.TokenEndpoint != iss+PathToken {
		t.Errorf("discovery %+v", d)
	}
	resp, err := e.client.Get(e.srv.URL + PathDiscovery)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("root discovery %d", resp.StatusCode)
	}
}

func TestNewProviderInvalid(t *testing.T) {
	t.Parallel()
	ok := []Client{{ID: "a", RedirectURIs: []string{"https://a.example/cb"}}}
	tests := []struct {
		name string
		cfg  ProviderConfig
	}{
		{"no clients", ProviderConfig{}},
		{"empty client id", ProviderConfig{Clients: []Client{{}}}},
		{"duplicate client", ProviderConfig{Clients: append(ok, ok...)}},
		{"relative redirect", ProviderConfig{Clients: []Client{{ID: "a", RedirectURIs: []string{"/cb"}}}}},
		{"bad backchannel", ProviderConfig{Clients: []Client{{ID: "a", BackchannelLogoutURI: "ftp://x"}}}},
		{"issuer with query", ProviderConfig{Issuer: "http://x/?a=b", Clients: ok}},
		{"issuer trailing slash", ProviderConfig{Issuer: "http://x/", Clients: ok}},
		{"negative ttl", ProviderConfig{Clients: ok, AccessTokenTTL: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewProvider(tt.cfg); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestStartAndClose(t *testing.T) {
	t.Parallel()
	p, err := NewProvider(ProviderConfig{Clients: []Client{{ID: "a", Secret: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Issuer(); got != "" {
		t.Fatalf("issuer before start %q", got)
	}
	iss, err := p.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if p.Issuer() != iss {
		t.Errorf("Issuer() %q, Start %q", p.Issuer(), iss)
	}
	var d discovery
	getJSON(t, http.DefaultClient, iss+PathDiscovery, &d)
	if d.Issuer != iss {
		t.Errorf("discovery issuer %q", d.Issuer)
	}
	if _, err := p.Serve(mustListen(t)); err == nil {
		t.Error("second Serve accepted")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(iss + PathDiscovery); err == nil {
		t.Error("still serving after Close")
	}
}

// mustListen opens a loopback listener.
func mustListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}
