package oidctest

import (
	"context"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	audOrders  = "orders"
	audReports = "reports"
	resBilling = "https://billing.example/api"
	idTokenURN = "urn:ietf:params:oauth:token-type:id_token"
)

// exchangeConfig registers three targets and lets "bff", "other" and the
// public "spa" exchange; "plain" is a confidential client without the flag.
func exchangeConfig(c *ProviderConfig) {
	c.Audiences = map[string][]string{
		audOrders:  {"orders:read", "orders:write"},
		audReports: nil,
		resBilling: {"billing"},
	}
	for i := range c.Clients {
		c.Clients[i].TokenExchange = true
	}
	c.Clients = append(c.Clients, Client{ID: "plain", Secret: "plain-secret"})
}

// exchangeForm is a valid token exchange request for subject, plus extra.
func exchangeForm(subject string, extra url.Values) url.Values {
	f := url.Values{
		"grant_type":         {GrantTypeTokenExchange},
		"subject_token":      {subject},
		"subject_token_type": {TokenTypeAccessToken},
	}
	for k, v := range extra {
		if v == nil {
			delete(f, k)
			continue
		}
		f[k] = v
	}
	return f
}

// exchangeToken exchanges subject for the "bff" client.
func (e *env) exchangeToken(t *testing.T, subject string, extra url.Values) tokenResult {
	t.Helper()
	return e.postForm(t, PathToken, exchangeForm(subject, extra), testClient, testSecret)
}

func TestTokenExchange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		extra     url.Values
		post      bool // client_secret_post instead of basic
		wantAud   any
		wantScope string
	}{
		{"audience, default scope", url.Values{"audience": {audOrders}}, false, audOrders, "orders:read orders:write"},
		{"audience and narrower scope", url.Values{"audience": {audOrders}, "scope": {"orders:read"}}, false, audOrders, "orders:read"},
		{"audience without scopes", url.Values{"audience": {audReports}}, false, audReports, ""},
		{"resource", url.Values{"resource": {resBilling}}, false, resBilling, "billing"},
		{"repeated audience", url.Values{"audience": {audOrders, audReports, audOrders}}, false, []any{audOrders, audReports}, "orders:read orders:write"},
		{"audience and resource", url.Values{"audience": {audOrders}, "resource": {resBilling}, "scope": {"orders:read billing"}}, false, []any{audOrders, resBilling}, "orders:read billing"},
		{"requested_token_type", url.Values{"audience": {audOrders}, "requested_token_type": {TokenTypeAccessToken}}, false, audOrders, "orders:read orders:write"},
		{"client_secret_post", url.Values{"audience": {audOrders}, "client_id": {testClient}, "client_secret": {testSecret}}, true, audOrders, "orders:read orders:write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, exchangeConfig)
			login := e.login(t)
			user, pass := testClient, testSecret
			if tt.post {
				user, pass = "", ""
			}
			res := e.postForm(t, PathToken, exchangeForm(login.AccessToken, tt.extra), user, pass)
			if res.Status != http.StatusOK {
				t.Fatalf("exchange: %d %s %s", res.Status, res.Error, res.Description)
			}
			if res.IssuedTokenType != TokenTypeAccessToken || res.TokenType != "Bearer" || res.RefreshToken != "" || res.IDToken != "" ||
				res.ExpiresIn != int64(DefaultAccessTokenTTL/time.Second) || res.Scope != tt.wantScope {
				t.Errorf("answer %+v", res.tokenResponse)
			}
			if res.Header.Get("Cache-Control") != "no-store" {
				t.Error("answer cacheable")
			}
			set := e.jwks(t)
			got, hdr := verify(t, set, res.AccessToken)
			subj, _ := verify(t, set, login.AccessToken)
			now := e.clock.Now()
			if !reflect.DeepEqual(got["aud"], tt.wantAud) || got["sub"] != "demo-user" || got["client_id"] != testClient || got["azp"] != testClient ||
				got["iss"] != e.srv.URL || got["sid"] != subj["sid"] || got["auth_time"] != subj["auth_time"] || got["jti"] == subj["jti"] ||
				got["exp"] != float64(now.Add(DefaultAccessTokenTTL).Unix()) || hdr.ExtraHeaders["typ"] != "at+jwt" {
				t.Errorf("claims %v (typ %v)", got, hdr.ExtraHeaders["typ"])
			}
			if sc, _ := got["scope"].(string); sc != tt.wantScope {
				t.Errorf("scope claim %q", sc)
			}
			aud := strings.Join(func() []string {
				switch a := tt.wantAud.(type) {
				case string:
					return []string{a}
				default:
					var out []string
					for _, v := range a.([]any) {
						out = append(out, v.(string))
					}
					return out
				}
			}(), " ")
			if s := e.p.Stats(); s.TokenExchanges != 1 || s.ExchangeRequests != 1 {
				t.Errorf("stats %+v", s)
			}
			if c := e.p.ExchangeCounts(); !maps.Equal(c, map[AudienceKey]int{{SID: subj["sid"].(string), Audience: aud}: 1}) {
				t.Errorf("counts %v", c)
			}
			if !slices.Contains(e.p.IssuedTokens(), res.AccessToken) {
				t.Error("exchanged token not among the issued tokens")
			}
			if e.p.IsRevoked(res.AccessToken) || e.userinfo(t, res.AccessToken) != http.StatusOK {
				t.Error("exchanged token not live")
			}
		})
	}
}

func TestTokenExchangeRefused(t *testing.T) {
	t.Parallel()
	type fixture struct {
		e     *env
		login tokenResult
	}
	subject := func(f fixture) string { return f.login.AccessToken }
	tests := []struct {
		name       string
		mutate     func(*ProviderConfig) // after exchangeConfig
		setup      func(t *testing.T, f fixture)
		subject    func(t *testing.T, f fixture) string
		extra      url.Values
		user, pass string
		status     int
		wantError  string
	}{
		{name: "unknown subject token", subject: func(*testing.T, fixture) string { return "garbage" }, wantError: "invalid_grant"},
		{name: "tampered subject token", subject: func(_ *testing.T, f fixture) string {
			return subject(f)[:len(subject(f))-4] + "AAAA"
		}, wantError: "invalid_grant"},
		{name: "subject token of another provider", subject: func(t *testing.T, _ fixture) string {
			return newEnv(t, exchangeConfig).login(t).AccessToken
		}, wantError: "invalid_grant"},
		{name: "expired subject token", setup: func(_ *testing.T, f fixture) { f.e.clock.Advance(DefaultAccessTokenTTL) }, wantError: "invalid_grant"},
		{name: "subject token revoked", setup: func(t *testing.T, f fixture) {
			f.e.postForm(t, PathRevoke, url.Values{"token": {subject(f)}}, testClient, testSecret)
		}, wantError: "invalid_grant"},
		{name: "subject family revoked", setup: func(t *testing.T, f fixture) {
			f.e.postForm(t, PathRevoke, url.Values{"token": {f.login.RefreshToken}}, testClient, testSecret)
		}, wantError: "invalid_grant"},
		{name: "provider session ended", setup: func(t *testing.T, f fixture) {
			claims, _ := verify(t, f.e.jwks(t), subject(f))
			f.e.p.EndSession(t.Context(), claims["sid"].(string))
		}, wantError: "invalid_grant"},
		{name: "provider session past its max lifetime", mutate: func(c *ProviderConfig) {
			c.SessionMaxLifetime, c.AccessTokenTTL = time.Minute, time.Hour
		}, setup: func(_ *testing.T, f fixture) { f.e.clock.Advance(time.Minute) }, wantError: "invalid_grant"},
		{name: "subject token issued to another client", user: "other", pass: "other-secret", wantError: "invalid_grant"},
		{name: "client credentials token as subject", subject: func(t *testing.T, f fixture) string {
			return f.e.postForm(t, PathToken, url.Values{"grant_type": {"client_credentials"}}, testClient, testSecret).AccessToken
		}, wantError: "invalid_grant"},
		{name: "ID token as subject", subject: func(_ *testing.T, f fixture) string { return f.login.IDToken }, wantError: "invalid_grant"},
		{name: "refresh token as subject", subject: func(_ *testing.T, f fixture) string { return f.login.RefreshToken }, wantError: "invalid_grant"},
		{name: "subject_token missing", extra: url.Values{"subject_token": nil}, wantError: "invalid_request"},
		{name: "subject_token_type missing", extra: url.Values{"subject_token_type": nil}, wantError: "invalid_request"},
		{name: "subject_token_type id_token", extra: url.Values{"subject_token_type": {idTokenURN}}, wantError: "invalid_request"},
		{name: "requested_token_type refresh_token", extra: url.Values{"requested_token_type": {"urn:ietf:params:oauth:token-type:refresh_token"}}, wantError: "invalid_request"},
		{name: "actor_token", extra: url.Values{"actor_token": {"x"}, "actor_token_type": {TokenTypeAccessToken}}, wantError: "invalid_request"},
		{name: "repeated subject_token", subject: func(_ *testing.T, f fixture) string { return subject(f) },
			extra: url.Values{"subject_token": {"a", "b"}}, wantError: "invalid_request"},
		{name: "no audience or resource", extra: url.Values{"audience": nil}, wantError: "invalid_request"},
		{name: "unknown audience", extra: url.Values{"audience": {"payroll"}}, wantError: "invalid_target"},
		{name: "one unknown audience among known ones", extra: url.Values{"audience": {audOrders, "payroll"}}, wantError: "invalid_target"},
		{name: "empty audience", extra: url.Values{"audience": {""}}, wantError: "invalid_target"},
		{name: "unknown resource", extra: url.Values{"audience": nil, "resource": {"https://payroll.example/"}}, wantError: "invalid_target"},
		{name: "relative resource", extra: url.Values{"audience": nil, "resource": {"/api"}}, wantError: "invalid_target"},
		{name: "resource with fragment", extra: url.Values{"audience": nil, "resource": {resBilling + "#x"}}, wantError: "invalid_target"},
		{name: "no audiences configured", mutate: func(c *ProviderConfig) { c.Audiences = nil }, wantError: "invalid_target"},
		{name: "scope not allowed", extra: url.Values{"scope": {"orders:read admin"}}, wantError: "invalid_scope"},
		{name: "scope of another audience", extra: url.Values{"scope": {"billing"}}, wantError: "invalid_scope"},
		{name: "scope for an audience without scopes", extra: url.Values{"audience": {audReports}, "scope": {"openid"}}, wantError: "invalid_scope"},
		{name: "client without the flag", user: "plain", pass: "plain-secret", wantError: "unauthorized_client"},
		{name: "public client", extra: url.Values{"client_id": {"spa"}}, user: "-", wantError: "unauthorized_client"},
		{name: "bad client secret", user: testClient, pass: "wrong", status: http.StatusUnauthorized, wantError: "invalid_client"},
		{name: "unknown client", user: "nobody", pass: "x", status: http.StatusUnauthorized, wantError: "invalid_client"},
		{name: "no client authentication", user: "-", status: http.StatusUnauthorized, wantError: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *ProviderConfig) {
				exchangeConfig(c)
				if tt.mutate != nil {
					tt.mutate(c)
				}
			})
			f := fixture{e: e, login: e.login(t)}
			if tt.setup != nil {
				tt.setup(t, f)
			}
			sub := subject(f)
			if tt.subject != nil {
				sub = tt.subject(t, f)
			}
			extra := url.Values{"audience": {audOrders}}
			maps.Copy(extra, tt.extra)
			user, pass := tt.user, tt.pass
			switch user {
			case "":
				user, pass = testClient, testSecret
			case "-":
				user, pass = "", ""
			}
			status := tt.status
			if status == 0 {
				status = http.StatusBadRequest
			}
			res := e.postForm(t, PathToken, exchangeForm(sub, extra), user, pass)
			if res.Status != status || res.Error != tt.wantError || res.AccessToken != "" {
				t.Fatalf("got %d %q (%s), want %d %q", res.Status, res.Error, res.Description, status, tt.wantError)
			}
			if s := e.p.Stats(); s.TokenExchanges != 0 || len(e.p.ExchangeCounts()) != 0 {
				t.Errorf("a refused exchange was counted: %+v", s)
			}
		})
	}
}

// TestExchangedTokensEndWithTheSession: an exchanged token belongs to the
// subject token's session and family: ending the provider session (directly
// or by RP-initiated logout) or reuse detection revokes it.
func TestExchangedTokensEndWithTheSession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		end  func(t *testing.T, e *env, login tokenResult)
	}{
		{"end session", func(t *testing.T, e *env, login tokenResult) {
			claims, _ := verify(t, e.jwks(t), login.AccessToken)
			if !e.p.EndSession(t.Context(), claims["sid"].(string)) {
				t.Fatal("no live session")
			}
		}},
		{"RP-initiated logout", func(t *testing.T, e *env, login tokenResult) {
			resp, err := e.client.Get(e.srv.URL + PathEndSession + "?" + url.Values{"id_token_hint": {login.IDToken}}.Encode())
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}},
		{"refresh token reuse", func(t *testing.T, e *env, login tokenResult) {
			e.refresh(t, login.RefreshToken)
			if r := e.refresh(t, login.RefreshToken); r.Error != "invalid_grant" {
				t.Fatalf("reuse: %d %q", r.Status, r.Error)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, exchangeConfig)
			login := e.login(t)
			other := e.login(t) // another provider session, untouched
			x := e.exchangeToken(t, login.AccessToken, url.Values{"audience": {audOrders}})
			y := e.exchangeToken(t, other.AccessToken, url.Values{"audience": {audOrders}})
			if x.Status != http.StatusOK || y.Status != http.StatusOK {
				t.Fatalf("exchange: %d %d", x.Status, y.Status)
			}
			tt.end(t, e, login)
			if !e.p.IsRevoked(x.AccessToken) || e.userinfo(t, x.AccessToken) != http.StatusUnauthorized {
				t.Error("the exchanged token outlived its session")
			}
			if again := e.exchangeToken(t, login.AccessToken, url.Values{"audience": {audOrders}}); again.Error != "invalid_grant" {
				t.Errorf("exchange after the end: %d %q", again.Status, again.Error)
			}
			if e.p.IsRevoked(y.AccessToken) || e.userinfo(t, y.AccessToken) != http.StatusOK {
				t.Error("another session's exchanged token was revoked")
			}
		})
	}
}

// TestExchangeNeverOutlivesTheSession: with SessionMaxLifetime, exchanged
// (and refreshed) tokens expire with the provider session.
func TestExchangeNeverOutlivesTheSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ProviderConfig) { exchangeConfig(c); c.SessionMaxLifetime = 6 * time.Minute })
	start := e.clock.Now()
	login := e.login(t)
	e.clock.Advance(4 * time.Minute)
	refreshed := e.refresh(t, login.RefreshToken)
	if refreshed.Status != http.StatusOK || refreshed.ExpiresIn != 120 {
		t.Fatalf("refresh near the session's end: %d expires_in %d", refreshed.Status, refreshed.ExpiresIn)
	}
	e.clock.Advance(90 * time.Second)
	x := e.exchangeToken(t, refreshed.AccessToken, url.Values{"audience": {audOrders}})
	if x.Status != http.StatusOK || x.ExpiresIn != 30 {
		t.Fatalf("exchange: %d %q expires_in %d", x.Status, x.Error, x.ExpiresIn)
	}
	claims, _ := verify(t, e.jwks(t), x.AccessToken)
	if end := start.Add(6 * time.Minute).Unix(); claims["exp"] != float64(end) {
		t.Errorf("exp %v, want the session's end %d", claims["exp"], end)
	}
	e.clock.Advance(30 * time.Second)
	if r := e.refresh(t, refreshed.RefreshToken); r.Error != "invalid_grant" {
		t.Errorf("refresh after the session's end: %d %q", r.Status, r.Error)
	}
}

func TestExchangeCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, exchangeConfig)
	a, b := e.login(t), e.login(t)
	set := e.jwks(t)
	sid := func(tok string) string { c, _ := verify(t, set, tok); return c["sid"].(string) }
	for _, x := range []struct {
		subject string
		aud     []string
	}{
		{a.AccessToken, []string{audOrders}}, {a.AccessToken, []string{audOrders}}, {a.AccessToken, []string{audReports}},
		{b.AccessToken, []string{audOrders}}, {b.AccessToken, []string{audOrders, audReports}},
	} {
		if res := e.exchangeToken(t, x.subject, url.Values{"audience": x.aud}); res.Status != http.StatusOK {
			t.Fatalf("exchange: %d %q", res.Status, res.Error)
		}
	}
	want := map[AudienceKey]int{
		{sid(a.AccessToken), audOrders}: 2, {sid(a.AccessToken), audReports}: 1,
		{sid(b.AccessToken), audOrders}: 1, {sid(b.AccessToken), audOrders + " " + audReports}: 1,
	}
	if got := e.p.ExchangeCounts(); !maps.Equal(got, want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if s := e.p.Stats(); s.TokenExchanges != 5 || s.ExchangeRequests != 5 {
		t.Errorf("stats %+v", s)
	}
	// The log has each of them, in order, with the issued token's exp.
	logged := e.p.ExchangeLog()
	for k, n := range want {
		if len(logged[k]) != n {
			t.Errorf("log of %v: %d exchanges, want %d", k, len(logged[k]), n)
		}
		for _, x := range logged[k] {
			if x.Issued.IsZero() || x.Expires.Before(x.Issued) || x.Expires.Unix() != x.Issued.Add(DefaultAccessTokenTTL).Unix() {
				t.Errorf("log of %v: %+v, want exp one token lifetime after issue", k, x)
			}
		}
	}
}

func TestExchangeHooks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(p *Provider)
		want  []string // error per exchange in turn, "" for success
		codes []int
	}{
		{"next transient", func(p *Provider) { p.FailNextExchanges(2, "temporarily_unavailable", http.StatusServiceUnavailable) },
			[]string{"temporarily_unavailable", "temporarily_unavailable", ""}, []int{503, 503, 200}},
		{"all refused", func(p *Provider) { p.SetExchangeError("invalid_grant", http.StatusBadRequest) },
			[]string{"invalid_grant", "invalid_grant", "invalid_grant"}, []int{400, 400, 400}},
		{"refused then restored", func(p *Provider) {
			p.SetExchangeError("unauthorized_client", http.StatusBadRequest)
			p.SetExchangeError("", 0)
		}, []string{"", ""}, []int{200, 200}},
		{"next before all", func(p *Provider) {
			p.SetExchangeError("invalid_grant", http.StatusBadRequest)
			p.FailNextExchanges(1, "server_error", http.StatusInternalServerError)
		}, []string{"server_error", "invalid_grant"}, []int{500, 400}},
		{"next cancelled", func(p *Provider) {
			p.FailNextExchanges(3, "temporarily_unavailable", http.StatusServiceUnavailable)
			p.FailNextExchanges(0, "", 0)
		}, []string{""}, []int{200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, exchangeConfig)
			login := e.login(t)
			tt.setup(e.p)
			ok := 0
			for i, want := range tt.want {
				res := e.exchangeToken(t, login.AccessToken, url.Values{"audience": {audOrders}})
				if res.Error != want || res.Status != tt.codes[i] {
					t.Fatalf("exchange %d: %d %q, want %d %q", i, res.Status, res.Error, tt.codes[i], want)
				}
				if want == "" {
					ok++
				}
			}
			if s := e.p.Stats(); s.TokenExchanges != ok || s.ExchangeRequests != len(tt.want) {
				t.Errorf("stats %+v", s)
			}
			// Refresh and the rest are untouched by exchange hooks.
			if r := e.refresh(t, login.RefreshToken); r.Status != http.StatusOK {
				t.Errorf("refresh: %d %q", r.Status, r.Error)
			}
		})
	}
}

func TestHoldExchanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, exchangeConfig)
	login := e.login(t)
	release := e.p.HoldExchanges()
	defer release()
	// A held exchange whose client gives up issues nothing.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+PathToken,
		strings.NewReader(exchangeForm(login.AccessToken, url.Values{"audience": {audOrders}}).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClient, testSecret)
	if resp, err := e.client.Do(req); err == nil {
		_ = resp.Body.Close()
		t.Fatal("held exchange answered")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.p.HeldExchanges() != 0 { // the provider sees the client go
		if time.Now().After(deadline) {
			t.Fatal("abandoned exchange still held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan tokenResult, 1)
	go func() { done <- e.exchangeToken(t, login.AccessToken, url.Values{"audience": {audOrders}}) }()
	deadline = time.Now().Add(5 * time.Second)
	for e.p.HeldExchanges() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("exchange not held (%d)", e.p.HeldExchanges())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if s := e.p.Stats(); s.TokenExchanges != 0 {
		t.Fatalf("issued while held: %+v", s)
	}
	release()
	release()
	if res := <-done; res.Status != http.StatusOK {
		t.Fatalf("after release: %d %q", res.Status, res.Error)
	}
	if s := e.p.Stats(); s.TokenExchanges != 1 || s.ExchangeRequests != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestRefreshWithResource: RFC 8707 resource on the refresh grant sets the
// new access token's aud; rotation and the family go on as usual.
func TestRefreshWithResource(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		form      url.Values
		wantError string
		wantAud   any
		wantScope string
		wantID    bool
	}{
		{"resource", url.Values{"resource": {resBilling}}, "", resBilling, "openid profile email", true},
		{"resource and narrower scope", url.Values{"resource": {resBilling}, "scope": {"profile"}}, "", resBilling, "profile", false},
		{"two resources", url.Values{"resource": {resBilling, "https://x.example/"}}, "", []any{resBilling, "https://x.example/"}, "openid profile email", true},
		{"scope only", url.Values{"scope": {"openid"}}, "", DefaultAudience, "openid", true},
		{"unknown resource", url.Values{"resource": {"https://payroll.example/"}}, "invalid_target", nil, "", false},
		{"relative resource", url.Values{"resource": {"billing"}}, "invalid_target", nil, "", false},
		{"scope beyond the grant", url.Values{"resource": {resBilling}, "scope": {"billing"}}, "invalid_scope", nil, "", false},
		{"repeated scope", url.Values{"resource": {resBilling}, "scope": {"openid", "profile"}}, "invalid_request", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *ProviderConfig) {
				exchangeConfig(c)
				c.Audiences["https://x.example/"] = nil
			})
			login := e.login(t)
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {login.RefreshToken}}
			maps.Copy(form, tt.form)
			res := e.postForm(t, PathToken, form, testClient, testSecret)
			if res.Error != tt.wantError {
				t.Fatalf("got %d %q (%s), want %q", res.Status, res.Error, res.Description, tt.wantError)
			}
			if tt.wantError != "" {
				// A refused request consumes nothing.
				if r := e.refresh(t, login.RefreshToken); r.Status != http.StatusOK {
					t.Errorf("refused request consumed the refresh token: %d %q", r.Status, r.Error)
				}
				if len(e.p.ResourceRefreshCounts()) != 0 {
					t.Error("refused request counted")
				}
				return
			}
			set := e.jwks(t)
			got, _ := verify(t, set, res.AccessToken)
			if !reflect.DeepEqual(got["aud"], tt.wantAud) || got["scope"] != tt.wantScope || res.Scope != tt.wantScope ||
				got["client_id"] != testClient || (res.IDToken != "") != tt.wantID {
				t.Errorf("claims %v, scope %q, id token %v", got, res.Scope, res.IDToken != "")
			}
			if res.RefreshToken == "" || res.RefreshToken == login.RefreshToken {
				t.Fatal("not rotated")
			}
			// The family goes on: the new refresh token refreshes as usual,
			// and the old one is now a reuse that revokes everything.
			next := e.refresh(t, res.RefreshToken)
			if next.Status != http.StatusOK {
				t.Fatalf("next refresh: %d %q", next.Status, next.Error)
			}
			if c, _ := verify(t, set, next.AccessToken); c["aud"] != DefaultAudience {
				t.Errorf("plain refresh aud %v", c["aud"])
			}
			if fams := e.p.Families(); len(fams) != 1 || len(fams[0].RefreshGrants) != 2 {
				t.Errorf("families %+v", fams)
			}
			if r := e.refresh(t, login.RefreshToken); r.Error != "invalid_grant" || !e.p.IsRevoked(res.AccessToken) || !e.p.IsRevoked(next.RefreshToken) {
				t.Errorf("reuse after a resource refresh: %d %q", r.Status, r.Error)
			}
			_, hasResource := tt.form["resource"]
			if s := e.p.Stats(); s.RefreshTokenGrants != 2 || (s.ResourceRefreshes == 1) != hasResource {
				t.Errorf("stats %+v", s)
			}
			if hasResource {
				want := map[AudienceKey]int{{got["sid"].(string), strings.Join(tt.form["resource"], " ")}: 1}
				if c := e.p.ResourceRefreshCounts(); !maps.Equal(c, want) {
					t.Errorf("counts %v, want %v", c, want)
				}
			}
		})
	}
}

func TestNewProviderInvalidAudience(t *testing.T) {
	t.Parallel()
	_, err := NewProvider(ProviderConfig{Clients: []Client{{ID: "a", Secret: "b"}}, Audiences: map[string][]string{"": nil}})
	if err == nil {
		t.Error("empty audience accepted")
	}
	_, err = NewProvider(ProviderConfig{Clients: []Client{{ID: "a", Secret: "b"}}, SessionMaxLifetime: -time.Second})
	if err == nil {
		t.Error("negative session lifetime accepted")
	}
}

// userinfo calls /userinfo with tok and returns the status.
func (e *env) userinfo(t *testing.T, tok string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+PathUserinfo, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestExchangeBySubjectAudience: as in Keycloak, a client named in the
// subject token's aud may exchange it although another client obtained it.
func TestExchangeBySubjectAudience(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *ProviderConfig) { exchangeConfig(c); c.Audience = "other" })
	login := e.login(t)
	res := e.postForm(t, PathToken, exchangeForm(login.AccessToken, url.Values{"audience": {audOrders}}), "other", "other-secret")
	if res.Status != http.StatusOK {
		t.Fatalf("exchange: %d %q %s", res.Status, res.Error, res.Description)
	}
	if c, _ := verify(t, e.jwks(t), res.AccessToken); c["client_id"] != "other" || c["azp"] != "other" || c["aud"] != audOrders {
		t.Errorf("claims %v", c)
	}
	if r := e.postForm(t, PathToken, exchangeForm(login.AccessToken, url.Values{"audience": {audOrders}}), "plain", "plain-secret"); r.Error != "unauthorized_client" {
		t.Errorf("client without the flag: %d %q", r.Status, r.Error)
	}
}
