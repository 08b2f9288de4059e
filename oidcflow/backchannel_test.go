package oidcflow

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
)

// postLogout delivers a back-channel logout request as a provider would.
func (e *env) postLogout(body, contentType string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.bff.URL+"/bff/backchannel-logout", strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func (e *env) logoutWith(token string) response {
	return e.postLogout("logout_token="+url.QueryEscape(token), "application/x-www-form-urlencoded")
}

func (e *env) mint(t oidctest.LogoutToken) string {
	e.t.Helper()
	tok, err := e.provider.MintLogoutToken(t)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// alive reports whether the session still exists.
func (e *env) alive(id session.ID) bool {
	e.t.Helper()
	_, err := e.store.inner.Get(e.t.Context(), id)
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// attackerKey is a key the provider never had.
func attackerKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// forge signs claims with k under the given kid.
func forge(t *testing.T, k *rsa.PrivateKey, kid string, header map[jose.HeaderKey]any, claims string) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", kid)
	for hk, v := range header {
		opts = opts.WithHeader(hk, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign([]byte(claims))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestBackchannelLogout(t *testing.T) {
	t.Parallel()

	t.Run("T32_sid_ends_that_session_and_revokes_its_refresh_token", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		other, _ := e.loggedIn()
		r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()}))
		if r.Status != http.StatusOK || r.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d, cache-control %q: %s", r.Status, r.Header.Get("Cache-Control"), r.Body)
		}
		if e.alive(id) {
			t.Fatal("the session of that sid survived")
		}
		if !e.alive(other) {
			t.Fatal("another provider session's session was ended")
		}
		if !e.provider.IsRevoked(rec.GetRefreshToken()) {
			t.Fatal("the refresh token is not revoked at the provider")
		}
	})

	t.Run("T32_sub_only_ends_every_session_of_the_user", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a, rec := e.loggedIn()
		b, _ := e.loggedIn()
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Subject: rec.GetSubject()})); r.Status != http.StatusOK {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if e.alive(a) || e.alive(b) {
			t.Fatal("a session of the user survived")
		}
	})

	t.Run("T35_replay_400_without_side_effects_and_idempotent_for_gone_sessions", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		_, rec := e.loggedIn()
		tok := e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})
		if r := e.logoutWith(tok); r.Status != http.StatusOK {
			t.Fatalf("first delivery: %d", r.Status)
		}
		// The same user logs in again; a replay of the old token must not touch it.
		again, _ := e.loggedIn()
		wantError(t, e.logoutWith(tok), http.StatusBadRequest, "invalid_request")
		if !e.alive(again) {
			t.Fatal("a replayed token ended a session")
		}
		// A fresh token for the sid already logged out: nothing left, still 200.
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK {
			t.Fatalf("token for a gone session: %d", r.Status)
		}
	})

	bad := []struct {
		name  string
		token func(e *env, rec *sessionpb.Session) string
	}{
		{"T33_events_missing", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), OmitEvents: true})
		}},
		{"T33_events_wrong_uri", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Events: map[string]any{"http://example.com/other": map[string]any{}}})
		}},
		{"T33_event_not_an_object", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Events: map[string]any{oidctest.BackchannelLogoutEvent: "yes"}})
		}},
		{"T33_events_not_an_object", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Events: []string{oidctest.BackchannelLogoutEvent}})
		}},
		{"T33_nonce_present", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Nonce: "n"})
		}},
		{"T33_neither_sub_nor_sid", func(e *env, r *sessionpb.Session) string { return e.mint(oidctest.LogoutToken{}) }},
		{"T33_id_token_posted", func(e *env, r *sessionpb.Session) string { return r.GetIdToken() }},
		{"T33_typ_not_logout_jwt", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Type: "JWT"})
		}},
		{"T34_wrong_iss", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Issuer: "https://evil.example.com"})
		}},
		{"T34_aud_without_client", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Audience: "someone-else"})
		}},
		{"T34_expired", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), IssuedAt: e.clock.Now().Add(-90 * time.Second), ExpiresIn: 30 * time.Second})
		}},
		{"T34_iat_too_old", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), IssuedAt: e.clock.Now().Add(-3 * time.Minute), ExpiresIn: 10 * time.Minute})
		}},
		{"T41_iat_in_the_future", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), IssuedAt: e.clock.Now().Add(2 * time.Minute)})
		}},
		{"T41_exp_as_string", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Extra: map[string]any{"exp": "99999999999"}})
		}},
		{"T41_exp_as_float", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Extra: map[string]any{"exp": 1e30}})
		}},
		{"T33_jti_missing", func(e *env, r *sessionpb.Session) string {
			return e.mint(oidctest.LogoutToken{Sid: r.GetSid(), Extra: map[string]any{"jti": ""}})
		}},
		{"T34_bad_signature", func(e *env, r *sessionpb.Session) string {
			return forge(t, attackerKey(t), e.provider.KeyID(), nil, validClaims(e, r))
		}},
		{"T34_alg_none", func(e *env, r *sessionpb.Session) string {
			return b64(`{"alg":"none","kid":"`+e.provider.KeyID()+`"}`) + "." + b64(validClaims(e, r)) + "."
		}},
		{"T34_alg_HS256", func(e *env, r *sessionpb.Session) string {
			return b64(`{"alg":"HS256","kid":"`+e.provider.KeyID()+`"}`) + "." + b64(validClaims(e, r)) + "." + b64("mac")
		}},
		{"T38_jku_header_ignored", func(e *env, r *sessionpb.Session) string {
			return forge(t, attackerKey(t), e.provider.KeyID(), map[jose.HeaderKey]any{"jku": "https://evil.example.com/jwks"}, validClaims(e, r))
		}},
		{"T39_jwe_instead_of_jws", func(e *env, r *sessionpb.Session) string {
			return b64(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + "." + b64("k") + "." + b64("iv") + "." + b64("ct") + "." + b64("tag")
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name+"_400_nothing_deleted", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			id, rec := e.loggedIn()
			wantError(t, e.logoutWith(tc.token(e, rec)), http.StatusBadRequest, "invalid_request")
			if !e.alive(id) {
				t.Fatal("a refused logout token deleted the session")
			}
			if e.provider.IsRevoked(rec.GetRefreshToken()) {
				t.Fatal("a refused logout token revoked the refresh token")
			}
		})
	}

	t.Run("T36_request_shapes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		tok := e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})
		form := "application/x-www-form-urlencoded"
		wantError(t, e.browser().get("/bff/backchannel-logout?logout_token="+url.QueryEscape(tok)), http.StatusMethodNotAllowed, "method_not_allowed")
		wantError(t, e.postLogout(`{"logout_token":"`+tok+`"}`, "application/json"), http.StatusBadRequest, "invalid_request")
		wantError(t, e.postLogout("", form), http.StatusBadRequest, "invalid_request")
		wantError(t, e.postLogout("logout_token="+tok+"&logout_token="+tok, form), http.StatusBadRequest, "invalid_request")
		wantError(t, e.postLogout("logout_token="+tok+"&pad="+strings.Repeat("a", 16<<10), form), http.StatusRequestEntityTooLarge, "request_too_large")
		// T40: an oversized token or a dot flood never gets past the body limit.
		wantError(t, e.logoutWith(strings.Repeat(".", 100_000)), http.StatusRequestEntityTooLarge, "request_too_large")
		if !e.alive(id) {
			t.Fatal("a malformed request deleted the session")
		}
		if r := e.logoutWith(tok); r.Status != http.StatusOK || e.alive(id) {
			t.Fatalf("the well-formed request after them: %d", r.Status)
		}
	})

	t.Run("T37_random_kids_fetch_the_key_set_at_most_once_per_cooldown", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		d, err := e.h.provider.get()
		if err != nil {
			t.Fatal(err)
		}
		// The first valid token loads the set.
		e.logoutWith(e.mint(oidctest.LogoutToken{Sid: "unrelated"}))
		before := d.logout.keys.fetches()
		k := attackerKey(t)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for i := range 1000 {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				r := e.logoutWith(forge(t, k, fmt.Sprintf("random-kid-%d", i), nil, validClaims(e, rec)))
				if r.Status != http.StatusBadRequest {
					t.Errorf("forged token %d: %d", i, r.Status)
				}
			})
		}
		wg.Wait()
		if n := d.logout.keys.fetches() - before; n > 1 {
			t.Fatalf("%d key-set fetches for 1000 unknown kids within one cooldown, want at most 1", n)
		}
		if !e.alive(id) {
			t.Fatal("a forged token deleted the session")
		}
	})

	t.Run("T62_rotated_provider_key_one_refetch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		id, rec := e.loggedIn()
		d, _ := e.h.provider.get()
		e.logoutWith(e.mint(oidctest.LogoutToken{Sid: "unrelated"})) // loads the set
		if _, err := e.provider.RotateKey(); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(jwksCooldown) // the cooldown has passed since the first fetch
		before := d.logout.keys.fetches()
		if r := e.logoutWith(e.mint(oidctest.LogoutToken{Sid: rec.GetSid()})); r.Status != http.StatusOK {
			t.Fatalf("token under the new key: %d %s", r.Status, r.Body)
		}
		if d.logout.keys.fetches()-before != 1 || e.alive(id) {
			t.Fatalf("%d refetches; session alive %v", d.logout.keys.fetches()-before, e.alive(id))
		}
	})
}

// validClaims are well-formed logout claims for rec's sid.
func validClaims(e *env, rec *sessionpb.Session) string {
	now := e.clock.Now().Unix()
	return fmt.Sprintf(`{"iss":%q,"aud":%q,"iat":%d,"exp":%d,"jti":"j-%d","sid":%q,"events":{%q:{}}}`,
		e.cfg.Issuer, e.cfg.ClientID, now, now+120, now, rec.GetSid(), backchannelEvent)
}

// TestLogoutTokenShape: the verifier's own pre-parse limits (T39, T40),
// behind the handler's body limit.
func TestLogoutTokenShape(t *testing.T) {
	t.Parallel()
	v := newLogoutVerifier("https://idp.example.com", "app", nil, nil, time.Now)
	for name, raw := range map[string]string{
		"over_16KiB": strings.Repeat("a", 8<<10) + "." + strings.Repeat("b", 8<<10) + ".c",
		"dot_flood":  strings.Repeat(".", 100_000),
		"jwe":        "a.b.c.d.e",
		"two_parts":  "a.b",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := v.verify(t.Context(), raw); !errors.Is(err, errInvalidLogoutToken) {
				t.Fatalf("verify: %v", err)
			}
		})
	}
}

// TestLogoutClaims covers the claim rules that need byte-exact payloads (T41).
func TestLogoutClaims(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_900_000_000, 0)
	v := newLogoutVerifier("https://idp.example.com", "app", nil, nil, func() time.Time { return now })
	base := `"iss":"https://idp.example.com","aud":["app","other"],"iat":1900000000,"jti":"j1","sid":"s1","events":{"` + backchannelEvent + `":{}}`
	for _, tc := range []struct {
		name    string
		payload string
		ok      bool
	}{
		{"valid", "{" + base + "}", true},
		{"valid_with_exp", "{" + base + `,"exp":1900000100}`, true},
		{"duplicate_sub", "{" + base + `,"sub":"a","sub":"b"}`, false},
		{"duplicate_iss", `{"iss":"https://evil.example.com",` + base + "}", false},
		{"iat_as_string", strings.Replace("{"+base+"}", `"iat":1900000000`, `"iat":"1900000000"`, 1), false},
		{"iat_as_float", strings.Replace("{"+base+"}", `"iat":1900000000`, `"iat":1900000000.5`, 1), false},
		{"iat_exponent", strings.Replace("{"+base+"}", `"iat":1900000000`, `"iat":1.9e9`, 1), false},
		{"exp_1e30", "{" + base + `,"exp":1e30}`, false},
		{"not_an_object", `["iss"]`, false},
		{"trailing_garbage", "{" + base + "}x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := v.checkClaims([]byte(tc.payload))
			if (err == nil) != tc.ok {
				t.Fatalf("checkClaims: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, errInvalidLogoutToken) {
				t.Fatalf("error does not wrap errInvalidLogoutToken: %v", err)
			}
		})
	}
}

// FuzzLogoutToken: verify never panics, and whatever it accepts is a
// logout token of this provider for this client.
func FuzzLogoutToken(f *testing.F) {
	p, err := oidctest.NewProvider(oidctest.ProviderConfig{Clients: []oidctest.Client{{ID: "app", Secret: "s", RedirectURIs: []string{"http://127.0.0.1/bff/callback"}}}})
	if err != nil {
		f.Fatal(err)
	}
	issuer, err := p.Start("127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = p.Close() })
	v := newLogoutVerifier(issuer, "app", newJWKSCache(issuer+oidctest.PathJWKS, nil, time.Hour, time.Now), nil, time.Now)
	for _, lt := range []oidctest.LogoutToken{{Sid: "s1"}, {Subject: "u1"}, {Sid: "s1", Nonce: "n"}, {Sid: "s1", OmitEvents: true}} {
		tok, err := p.MintLogoutToken(lt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
	}
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.verify(t.Context(), raw)
		if err != nil {
			if !errors.Is(err, errInvalidLogoutToken) {
				t.Fatalf("error does not wrap errInvalidLogoutToken: %v", err)
			}
			return
		}
		if c.Issuer != issuer || c.JTI == "" || (c.Subject == "" && c.SID == "") {
			t.Fatalf("accepted %+v", c)
		}
	})
}
