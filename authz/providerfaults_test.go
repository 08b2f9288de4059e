package authz

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/envoy-bff/envoy-bff/oidcflow"
	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// realEnv is Check over the real parts a deployment has: the local OpenID
// provider, oidcflow's handler and Refresher, and the memory store, on one
// settable clock. The browser's login runs through the real endpoints.
type realEnv struct {
	t        *testing.T
	clock    *sessiontest.Clock
	provider *oidctest.Provider
	store    *session.MemoryStore
	flow     *oidcflow.Handler
	srv      *Server
	bff      *httptest.Server
	logs     *bytes.Buffer
	token    atomic.Pointer[http.HandlerFunc] // replaces the provider's token endpoint while set
}

func newRealEnv(t *testing.T, providerTimeout time.Duration) *realEnv {
	t.Helper()
	e := &realEnv{t: t, clock: sessiontest.NewClock(sessiontest.Epoch), logs: &bytes.Buffer{}}
	var flow atomic.Pointer[oidcflow.Handler]
	e.bff = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { flow.Load().ServeHTTP(w, r) }))
	t.Cleanup(e.bff.Close)
	p, err := oidctest.NewProvider(oidctest.ProviderConfig{
		Clients: []oidctest.Client{{ID: "envoy-bff", Secret: "test-secret-5d2c", RedirectURIs: []string{e.bff.URL + "/bff/callback"}}},
		Now:     e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.provider = p
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := e.token.Load(); h != nil && r.URL.Path == oidctest.PathToken {
			(*h)(w, r)
			return
		}
		p.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(idp.Close)
	if err := p.SetIssuer(idp.URL); err != nil {
		t.Fatal(err)
	}
	scfg := sessiontest.Config()
	e.store = session.NewMemoryStore(scfg, sessiontest.KeyRing(t), e.clock.Now)
	cfg := oidcflow.DefaultConfig()
	cfg.Issuer, cfg.ClientID, cfg.ClientSecret = idp.URL, "envoy-bff", "test-secret-5d2c"
	cfg.RedirectURL = e.bff.URL + "/bff/callback"
	cfg.ProviderTimeout = providerTimeout
	anti := oidcflow.AntiforgeryConfig{Header: "X-CSRF", Value: "1"}
	logger := newTestLogger(e.logs)
	e.flow, err = oidcflow.NewHandler(cfg, oidcflow.Deps{
		Store: e.store, Cookie: scfg.Cookie, Antiforgery: anti, Logger: logger, Now: e.clock.Now,
		AbsoluteLifetime: scfg.AbsoluteLifetime,
		IdleTimeout:      scfg.IdleTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	flow.Store(e.flow)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.flow.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv, err = NewServer(testConfig(), Deps{
		Sessions: e.store, Refresher: e.flow.Refresher(), Cookie: scfg.Cookie, Antiforgery: anti,
		Logger: logger, Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// login signs a browser in through /bff/login, the provider and
// /bff/callback, and returns its session cookie's value.
func (e *realEnv) login() string {
	e.t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u, cookie string) *http.Response {
		e.t.Helper()
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			e.t.Fatal(err)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp
	}
	login := get(e.bff.URL+"/bff/login?returnUrl=/", "")
	var loginCookie string
	for _, ck := range login.Cookies() {
		if ck.Name == "__Host-bff-login" {
			loginCookie = ck.Name + "=" + ck.Value
		}
	}
	cb := get(login.Header.Get("Location"), "")
	done := get(cb.Header.Get("Location"), loginCookie)
	for _, ck := range done.Cookies() {
		if ck.Name == "__Host-bff" && ck.Value != "" {
			return ck.Value
		}
	}
	e.t.Fatalf("login: callback answered %d without a session cookie", done.StatusCode)
	return ""
}

// check is one API call with the anti-forgery header and the session cookie.
func (e *realEnv) check(cookie string) *authv3.CheckResponse {
	e.t.Helper()
	resp, err := e.srv.Check(e.t.Context(), creq(http.MethodGet, "/api/orders",
		map[string]string{"x-csrf": "1", "cookie": "__Host-bff=" + cookie}, nil))
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// stored reads the session behind cookie.
func (e *realEnv) stored(cookie string) (string, string, error) {
	e.t.Helper()
	id, err := session.ParseID(cookie)
	if err != nil {
		e.t.Fatal(err)
	}
	rec, err := e.store.Get(e.t.Context(), id)
	return rec.GetAccessToken(), rec.GetRefreshToken(), err
}

// clears reports whether a denial clears the session cookie.
func clears(resp *authv3.CheckResponse) bool {
	return strings.Contains(deniedHeader(resp, "set-cookie"), "Max-Age=0")
}

// TestProviderFaultsThroughCheck covers T59-T61 as the API caller sees them,
// with the real refresher and provider behind Check.
func TestProviderFaultsThroughCheck(t *testing.T) {
	t.Parallel()

	t.Run("T59_token_endpoint_times_out_one_call_503_session_kept", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t, 2*time.Second)
		cookie := e.login()
		at, rt, _ := e.stored(cookie)
		e.clock.Advance(6 * time.Minute) // the access token has expired
		release := e.provider.HoldRefreshes()
		defer release()
		const n = 10
		resps := make([]*authv3.CheckResponse, n)
		var wg sync.WaitGroup
		wg.Go(func() { resps[0] = e.check(cookie) })
		deadline := time.Now().Add(5 * time.Second)
		for e.provider.HeldRefreshes() != 1 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		for i := 1; i < n; i++ { // while the first call hangs at the provider
			wg.Go(func() { resps[i] = e.check(cookie) })
		}
		wg.Wait()
		for i, resp := range resps {
			if status(resp) != http.StatusServiceUnavailable || errorCode(t, resp) != "token_refresh_unavailable" ||
				deniedHeader(resp, "retry-after") == "" || clears(resp) {
				t.Fatalf("call %d: %d %s, set-cookie %q", i, status(resp), errorCode(t, resp), deniedHeader(resp, "set-cookie"))
			}
		}
		if st := e.provider.Stats(); st.RefreshRequests != 1 || st.RefreshTokenGrants != 0 {
			t.Fatalf("provider saw %d refresh requests (%d granted) for one refresh token, want 1", st.RefreshRequests, st.RefreshTokenGrants)
		}
		if gotAT, gotRT, err := e.stored(cookie); err != nil || gotAT != at || gotRT != rt {
			t.Fatalf("session lost or changed: %v", err)
		}
		// The provider recovers: the same session refreshes and passes. (The
		// provider must have seen the client go first, or the held request
		// would rotate the token with no one left to receive it.)
		for e.provider.Stats().AbandonedRefreshes != 1 && time.Now().Before(deadline.Add(5*time.Second)) {
			time.Sleep(5 * time.Millisecond)
		}
		release()
		if resp := e.check(cookie); status(resp) != http.StatusOK {
			t.Fatalf("after recovery: %d %s", status(resp), errorCode(t, resp))
		}
	})

	t.Run("T59_token_endpoint_times_out_still_valid_token_passes", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t, 300*time.Millisecond)
		cookie := e.login()
		at, _, _ := e.stored(cookie)
		e.clock.Advance(4*time.Minute + 30*time.Second) // due, not yet expired
		e.provider.SetRefreshDelay(5 * time.Second)
		resp := e.check(cookie)
		if v, n := upstreamHeader(resp, "authorization"); status(resp) != http.StatusOK || n != 1 || v != "Bearer "+at {
			t.Fatalf("%d %s: want the still-valid old token", status(resp), errorCode(t, resp))
		}
		if _, _, err := e.stored(cookie); err != nil {
			t.Fatalf("session lost: %v", err)
		}
	})

	for name, answer := range map[string]http.HandlerFunc{
		"5xx": func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "upstream down", http.StatusBadGateway) },
		"non_json": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte("<html>maintenance</html>"))
		},
		"over_1MiB": func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"padded","token_type":"Bearer","expires_in":300}` + strings.Repeat(" ", 2<<20)))
		},
	} {
		t.Run("T60_"+name+"_expired_token_503_session_kept", func(t *testing.T) {
			t.Parallel()
			e := newRealEnv(t, 2*time.Second)
			cookie := e.login()
			_, rt, _ := e.stored(cookie)
			e.clock.Advance(6 * time.Minute)
			e.token.Store(&answer)
			resp := e.check(cookie)
			if status(resp) != http.StatusServiceUnavailable || errorCode(t, resp) != "token_refresh_unavailable" || clears(resp) {
				t.Fatalf("%d %s", status(resp), errorCode(t, resp))
			}
			if _, gotRT, err := e.stored(cookie); err != nil || gotRT != rt {
				t.Fatalf("session lost or changed: %v", err)
			}
		})
	}

	t.Run("T60_invalid_grant_session_deleted_401_session_expired", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t, 2*time.Second)
		cookie := e.login()
		_, rt, _ := e.stored(cookie)
		// The provider forgets the grant (revoked at the provider, say).
		if r, err := http.PostForm(e.provider.Issuer()+oidctest.PathRevoke, url.Values{
			"token": {rt}, "client_id": {"envoy-bff"}, "client_secret": {"test-secret-5d2c"},
		}); err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("revoke at the provider: %v", err)
		}
		e.clock.Advance(6 * time.Minute)
		resp := e.check(cookie)
		if status(resp) != http.StatusUnauthorized || errorCode(t, resp) != "session_expired" || !clears(resp) {
			t.Fatalf("%d %s, set-cookie %q", status(resp), errorCode(t, resp), deniedHeader(resp, "set-cookie"))
		}
		if _, _, err := e.stored(cookie); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("session not deleted: %v", err)
		}
	})

	t.Run("T61_new_refresh_token_saved_before_the_new_access_token_is_used", func(t *testing.T) {
		t.Parallel()
		e := newRealEnv(t, 2*time.Second)
		cookie := e.login()
		at, rt, _ := e.stored(cookie)
		e.clock.Advance(6 * time.Minute)
		resp := e.check(cookie)
		v, _ := upstreamHeader(resp, "authorization")
		storedAT, storedRT, err := e.stored(cookie)
		if status(resp) != http.StatusOK || err != nil || v != "Bearer "+storedAT || storedAT == at || storedRT == rt {
			t.Fatalf("%d: the token sent upstream must be the stored one, with the rotated refresh token stored", status(resp))
		}
	})
}
