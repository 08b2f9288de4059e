package integration

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/test/harness"
	"github.com/envoy-bff/envoy-bff/test/sampleapi"
)

// The two APIs of the token-profile stacks: orders by RFC 8693 audience,
// reports by RFC 8707 resource. Envoy serves each at /<name>/ with token
// profile <name>; the session's own token (aud sample-api) goes to /api/.
const (
	ordersAudience  = "orders-api"
	reportsResource = "https://reports.example.com/"
)

func profileAPIs() map[string]string {
	return map[string]string{"orders": ordersAudience, "reports": reportsResource}
}

// withProfiles gives a replica's config the exchange profiles the APIs' routes name.
func withProfiles(doc map[string]any) {
	doc["tokens"] = map[string]any{
		"orders":  map[string]any{"type": "exchange", "audience": ordersAudience},
		"reports": map[string]any{"type": "exchange", "resource": reportsResource},
	}
}

// TestProfiles_T74 is issue 14's token profiles through real Envoy, two
// envoy-bff replicas on real Redis and the local provider: each API gets a
// token exchanged for it, once per session and profile across replicas,
// never the session's own token nor another API's; a refused exchange is
// 403 and a failed one 503, the API receiving nothing and the session kept;
// logout drops the derived tokens with the session.
func TestProfiles_T74(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{Replicas: 2, Redis: true, APIs: profileAPIs(), BFFConfig: withProfiles})
	orders, reports := s.APIs["orders"], s.APIs["reports"]
	b := newBrowser(t, s.URL)
	u := loginBrowser(t, s, b)

	t.Run("T74 each API gets the token made for it, never the session's own", func(t *testing.T) {
		// Through Envoy, twice each: round robin reaches both replicas.
		for range 2 {
			w := whoamiOf(t, b.api("/orders/whoami"))
			if w.Sub != "demo-user" || w.TokenError != "" || !slices.Equal(w.Aud, []string{ordersAudience}) || w.APIAudience != ordersAudience {
				t.Fatalf("/orders/whoami: the API saw sub %q aud %v (%s), want demo-user's token for %s", w.Sub, w.Aud, w.TokenError, ordersAudience)
			}
			w = whoamiOf(t, b.api("/reports/whoami"))
			if w.Sub != "demo-user" || w.TokenError != "" || !slices.Equal(w.Aud, []string{reportsResource}) {
				t.Fatalf("/reports/whoami: the API saw sub %q aud %v (%s), want demo-user's token for %s", w.Sub, w.Aud, w.TokenError, reportsResource)
			}
			w = whoamiOf(t, b.api("/api/whoami"))
			if w.Sub != "demo-user" || w.TokenError != "" || !slices.Equal(w.Aud, []string{oidctest.DefaultAudience}) || w.ClientID != harness.ClientID {
				t.Fatalf("/api/whoami: the API saw sub %q aud %v client %q (%s), want the session's own token", w.Sub, w.Aud, w.ClientID, w.TokenError)
			}
		}
		// The tokens themselves, as each replica forwards them: the
		// session's own on /api/, one exchanged token per profile shared
		// by both replicas, no two the same.
		rec, err := s.ReadSession(t.Context(), u.value)
		if err != nil {
			t.Fatal(err)
		}
		forwarded := map[string]string{} // profile ("" = none) → token
		for i, c := range dialAll(t, s) {
			for _, profile := range []string{"", "orders", "reports"} {
				c.Extensions = map[string]string{"bff.token": profile}
				r := mustCheck(t, c, u.cookie)
				if r.Status != 200 || r.Bearer == "" {
					t.Fatalf("replica %d, profile %q: %d %s", i+1, profile, r.Status, r.Body)
				}
				if prev, ok := forwarded[profile]; ok && prev != r.Bearer {
					t.Errorf("profile %q: the replicas forward different tokens", profile)
				}
				forwarded[profile] = r.Bearer
			}
		}
		if forwarded[""] != rec.GetAccessToken() {
			t.Error("the default route does not forward the session's own access token")
		}
		if forwarded["orders"] == rec.GetAccessToken() || forwarded["reports"] == rec.GetAccessToken() || forwarded["orders"] == forwarded["reports"] {
			t.Error("an exchange profile forwards the session's own token or another profile's")
		}
		// One exchange per session and profile for all of the above.
		counts := s.Provider.ExchangeCounts()
		for _, aud := range []string{ordersAudience, reportsResource} {
			if n := counts[oidctest.AudienceKey{SID: u.sid, Audience: aud}]; n != 1 {
				t.Errorf("the provider exchanged %d tokens for %s, want 1 shared by every call and replica", n, aud)
			}
		}
		// Neither API ever received the other's token…
		for name, a := range s.APIs {
			if st := a.Stats(); st.WrongAudience != 0 || st.Rejected != 0 {
				t.Errorf("API %s: %d tokens of another audience, %d rejected", name, st.WrongAudience, st.Rejected)
			}
		}
		// …and would refuse it: each API's own handler, given the other's token.
		for _, c := range []struct {
			api   *sampleapi.API
			token string
		}{{orders, forwarded["reports"]}, {reports, forwarded["orders"]}, {orders, forwarded[""]}} {
			before := c.api.Stats().WrongAudience
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/api/whoami", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			w := httptest.NewRecorder()
			c.api.ServeHTTP(w, req)
			if w.Code != 401 || c.api.Stats().WrongAudience != before+1 {
				t.Errorf("the %s API given another audience's token: %d %s, want 401 counted as a wrong audience", c.api.Audience(), w.Code, w.Body)
			}
		}
	})

	// A second session, whose orders token the provider is asked for only
	// once it refuses or fails: nothing is cached to fall back on.
	b2 := newBrowser(t, s.URL)
	loginBrowser(t, s, b2)
	untouched := func(t *testing.T, what string, f func()) {
		t.Helper()
		before, upstream := orders.Stats(), envoyCounter(t, s.Envoy, "cluster.api_orders.upstream_rq_total")
		f()
		if after := orders.Stats(); after != before {
			t.Errorf("%s: the orders API answered requests: %+v → %+v", what, before, after)
		}
		if n := envoyCounter(t, s.Envoy, "cluster.api_orders.upstream_rq_total") - upstream; n != 0 {
			t.Errorf("%s: Envoy sent %d requests to the orders API", what, n)
		}
	}

	t.Run("T74 a refused exchange is 403 token_exchange_refused, never the session's token", func(t *testing.T) {
		s.Provider.SetExchangeError("invalid_target", 400)
		defer s.Provider.SetExchangeError("", 0)
		untouched(t, "refused exchange", func() {
			for range 2 {
				if r := b2.api("/orders/whoami"); r.Status != 403 || errCode(r) != "token_exchange_refused" {
					t.Errorf("/orders/whoami: %d %s, want 403 token_exchange_refused", r.Status, r.Body)
				}
			}
		})
		if r := b2.api("/api/whoami"); r.Status != 200 {
			t.Errorf("the session after a refused exchange: /api/whoami %d %s", r.Status, r.Body)
		}
	})

	t.Run("T74 a failed exchange with nothing cached is 503 token_exchange_unavailable", func(t *testing.T) {
		s.Provider.SetExchangeError("temporarily_unavailable", 503)
		defer s.Provider.SetExchangeError("", 0)
		untouched(t, "failed exchange", func() {
			for range 2 {
				r := b2.api("/orders/whoami")
				if r.Status != 503 || errCode(r) != "token_exchange_unavailable" || r.Header.Get("Retry-After") == "" {
					t.Errorf("/orders/whoami: %d Retry-After %q %s, want 503 token_exchange_unavailable with Retry-After", r.Status, r.Header.Get("Retry-After"), r.Body)
				}
			}
		})
		if r := b2.api("/api/whoami"); r.Status != 200 {
			t.Errorf("the session after a failed exchange: /api/whoami %d %s", r.Status, r.Body)
		}
		s.Provider.SetExchangeError("", 0)
		if w := whoamiOf(t, b2.api("/orders/whoami")); !slices.Equal(w.Aud, []string{ordersAudience}) {
			t.Errorf("once the provider is back: the orders API saw aud %v", w.Aud)
		}
	})

	t.Run("logout drops the session's derived tokens", func(t *testing.T) {
		rdb := redisClient(t, s.RedisURL)
		mine := derivedKeyOf(t, s, u.value)
		before := scanKeys(t, rdb, "*:t")
		if !slices.Contains(before, mine) || len(before) != 2 {
			t.Fatalf("derived-token keys before logout: %v, want this session's %s and the other session's", before, mine)
		}
		logout, _ := b.api("/bff/user").json(t)["logoutUrl"].(string)
		if r := b.get(logout); r.Status != 302 {
			t.Fatalf("logout: %d %s", r.Status, r.Body)
		}
		after := scanKeys(t, rdb, "*:t")
		if slices.Contains(after, mine) || len(after) != 1 {
			t.Errorf("derived-token keys after logout: %v, want only the other session's", after)
		}
		hc := &http.Client{Timeout: 10 * time.Second}
		for range 2 {
			if resp, body, err := spaGet(hc, s.URL, "/orders/whoami", u.cookie); err != nil || resp.StatusCode != 401 {
				t.Errorf("/orders/whoami with the logged-out cookie: %v %v %s, want 401", err, resp, body)
			}
		}
	})
}

// profLoadTTL is the access-token lifetime of the three-replica run: short,
// so 10 s cross several expiries of the session's token and of every
// exchanged token.
const profLoadTTL = 3 * time.Second

// TestProfiles_T74ThreeReplicas is T63's load with an exchange profile:
// three replicas on one Redis, 50 clients on 10 sessions for 10 s, each
// session called on /orders/whoami (its exchanged token) and /api/whoami
// (its own). No request fails; each session's own token is refreshed once
// per expiry (the provider's reuse detection); each session's exchanges
// (ExchangeCounts) fit the expiries the run can hold, and each came only
// once the token before it was due (ExchangeLog): one exchange per expiry
// per session and profile; the replicas' exchange counters add up to the
// provider's exchanges.
func TestProfiles_T74ThreeReplicas(t *testing.T) {
	s := startStack(t, harness.Options{
		Replicas:       3,
		Redis:          true,
		AccessTokenTTL: profLoadTTL,
		APIs:           profileAPIs(),
		BFFConfig: func(doc map[string]any) {
			withProfiles(doc)
			doc["log"] = map[string]any{"level": "info", "format": "json"}
			doc["session"].(map[string]any)["lock_ttl"] = scaleLockTTL.String()
			doc["oidc"].(map[string]any)["provider_timeout"] = scaleProviderLimit.String()
		},
	})
	var users []*scaleUser // each session twice: its orders calls, its own
	for range scaleSessions {
		u := loginUser(t, s)
		orders := &scaleUser{browser: u.browser, cookie: u.cookie, sid: u.sid, api: s.URL + "/orders/whoami", client: harness.ClientID}
		if r := orders.browser.api("/orders/whoami"); r.Status != 200 {
			t.Fatalf("/orders/whoami before the load: %d %s", r.Status, r.Body)
		}
		users = append(users, orders, u)
	}
	const d = scaleLoadFor / 2
	before := s.Provider.ExchangeCounts()
	start := time.Now()
	// Half of TestScaleOut's clients, as TestScaleOutTwoFrontends: a loaded
	// 2-core machine can hold a request between Check and the API longer
	// than a short token's refresh lead.
	loadOneRefreshPerExpiry(t, s, users, scaleClients/2, d)
	elapsed := time.Since(start)
	after := s.Provider.ExchangeCounts()

	// One exchange per expiry: each exchange of a session and profile
	// comes only once the token before it was due, half its lifetime
	// (capped lead) after it was obtained, never while it was fresh: two
	// replicas renewing one expiry come milliseconds apart. The provider
	// sees an exchange up to the replica's request latency after the
	// replica decided on it; lateSlack allows that.
	const lateSlack = 400 * time.Millisecond
	logged := s.Provider.ExchangeLog()
	// The exp is truncated to the second, so a token lives at least
	// profLoadTTL-1s: no more than elapsed/minGap expiries fit in the run,
	// plus the one reached before it began (the boundary). At least one per
	// two lifetimes proves the exchanges kept up.
	minGap := (profLoadTTL - time.Second) / 2
	most, least := int(elapsed/minGap)+1, int(d/(2*profLoadTTL))
	var per []int
	total, closest := 0, time.Hour
	for i := 0; i < len(users); i += 2 {
		key := oidctest.AudienceKey{SID: users[i].sid, Audience: ordersAudience}
		n := after[key] - before[key]
		per = append(per, n)
		total += n
		if n > most || n < least {
			t.Errorf("session %s: %d exchanges for %s in %s, want %d to %d (one per expiry)", users[i].sid, n, ordersAudience, elapsed.Round(time.Millisecond), least, most)
		}
		chain := logged[key]
		if len(chain) != after[key] {
			t.Fatalf("session %s: the provider logged %d exchanges and counted %d", users[i].sid, len(chain), after[key])
		}
		for k := 1; k < len(chain); k++ {
			prev, next := chain[k-1], chain[k]
			due := prev.Issued.Add(prev.Expires.Sub(prev.Issued) / 2)
			if early := due.Sub(next.Issued); early > lateSlack {
				t.Errorf("session %s: exchange %d came %s before the token of exchange %d was due: two exchanges for one expiry", users[i].sid, k, early.Round(time.Millisecond), k-1)
			}
			closest = min(closest, next.Issued.Sub(due))
		}
	}
	if n := after[oidctest.AudienceKey{SID: users[0].sid, Audience: reportsResource}]; n != 0 {
		t.Errorf("%d exchanges for reports, which nothing called", n)
	}
	var refreshed, busy, fresh float64
	for _, b := range s.BFFs {
		refreshed += metric(t, b, `envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome="refreshed"}`)
		busy += metric(t, b, `envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome="lock_busy"}`)
		fresh += metric(t, b, `envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome="already_fresh"}`)
	}
	st := s.Provider.Stats()
	t.Logf("exchanges for %s per session in %s: %v (%d in all, bound %d to %d each; the earliest came %s after its predecessor was due); replicas: %v refreshed, %v already fresh, %v lock busy; provider: %d exchanges, %d requests",
		ordersAudience, elapsed.Round(time.Millisecond), per, total, least, most, closest.Round(time.Millisecond), refreshed, fresh, busy, st.TokenExchanges, st.ExchangeRequests)
	if int(refreshed) != st.TokenExchanges {
		t.Errorf("replicas count %v exchanges, the provider issued %d", refreshed, st.TokenExchanges)
	}
	if st.ExchangeRequests != st.TokenExchanges {
		t.Errorf("the provider answered %d of %d exchange requests with an error", st.ExchangeRequests-st.TokenExchanges, st.ExchangeRequests)
	}
	if st := s.APIs["orders"].Stats(); st.Rejected != 0 || st.Served < 1000 {
		t.Errorf("orders API: %d served, %d rejected", st.Served, st.Rejected)
	}
}

// TestProfiles_T75 is issue 14's route requirements through real Envoy:
// path rules (no context extensions on these routes) requiring a group, an
// acr and a maximum authentication age, against the local provider's user
// (groups [staff]) and its levels silver and gold.
func TestProfiles_T75(t *testing.T) {
	t.Parallel()
	apis := map[string]string{"admins": "", "staff": "", "gold": "", "fresh": ""}
	s := startStack(t, harness.Options{
		APIs:         apis,
		PathRuleAPIs: slices.Collect(maps.Keys(apis)),
		Provider: func(c *oidctest.ProviderConfig) {
			c.ACRValues = []string{"silver", "gold"}
			c.User.Groups = []string{"staff"}
		},
		BFFConfig: func(doc map[string]any) {
			rule := func(prefix string, require map[string]any) map[string]any {
				return map[string]any{"prefix": prefix, "policy": "user", "require": require}
			}
			doc["authz"] = map[string]any{"path_rules": []any{
				rule("/admins/", map[string]any{"groups": []any{"admins"}}),
				rule("/staff/", map[string]any{"groups": []any{"admins", "staff"}}),
				rule("/gold/", map[string]any{"acr": []any{"gold"}, "max_age": "10m"}),
				rule("/fresh/", map[string]any{"max_age": "3s"}),
			}}
		},
	})
	// untouched runs f and asserts that the named API received nothing.
	untouched := func(t *testing.T, name string, f func()) {
		t.Helper()
		before, upstream := s.APIs[name].Stats(), envoyCounter(t, s.Envoy, "cluster.api_"+name+".upstream_rq_total")
		f()
		if after := s.APIs[name].Stats(); after != before {
			t.Errorf("the %s API answered requests: %+v → %+v", name, before, after)
		}
		if n := envoyCounter(t, s.Envoy, "cluster.api_"+name+".upstream_rq_total") - upstream; n != 0 {
			t.Errorf("Envoy sent %d requests to the %s API", n, name)
		}
	}
	b := newBrowser(t, s.URL)
	loginBrowser(t, s, b)
	if acr := b.api("/bff/user").json(t)["acr"]; acr != "silver" {
		t.Fatalf("a plain login reached acr %v, want the weakest, silver", acr)
	}
	verified := func(t *testing.T, path string) {
		t.Helper()
		if w := whoamiOf(t, b.api(path)); w.Sub != "demo-user" || w.TokenError != "" {
			t.Errorf("%s: the API saw sub %q (%s), want the demo user's verified token", path, w.Sub, w.TokenError)
		}
	}

	t.Run("T75 a session lacking a required claim is 403 insufficient_claims and the API gets nothing", func(t *testing.T) {
		untouched(t, "admins", func() {
			r := b.api("/admins/whoami")
			if r.Status != 403 || errCode(r) != "insufficient_claims" {
				t.Errorf("/admins/whoami: %d %s, want 403 insufficient_claims", r.Status, r.Body)
			}
			if strings.Contains(r.Body, "staff") {
				t.Errorf("the denial names the session's claim values: %s", r.Body)
			}
		})
		verified(t, "/staff/whoami") // one of the required groups: passes
	})

	var loginURL string
	t.Run("T75 an acr too weak is 401 step_up_required with the RFC 9470 challenge", func(t *testing.T) {
		untouched(t, "gold", func() {
			r := b.api("/gold/whoami")
			if r.Status != 401 || errCode(r) != "step_up_required" {
				t.Fatalf("/gold/whoami: %d %s, want 401 step_up_required", r.Status, r.Body)
			}
			challenge := r.Header.Get("WWW-Authenticate")
			for _, want := range []string{`Bearer error="insufficient_user_authentication"`, `acr_values="gold"`, `max_age=600`} {
				if !strings.Contains(challenge, want) {
					t.Errorf("WWW-Authenticate %q lacks %s", challenge, want)
				}
			}
			loginURL, _ = r.json(t)["loginUrl"].(string)
			lu, err := url.Parse(loginURL)
			if err != nil || lu.Path != "/bff/login" || lu.Query().Get("acr_values") != "gold" || lu.Query().Get("max_age") != "600" {
				t.Fatalf("loginUrl %q, want /bff/login asking acr_values=gold and max_age=600", loginURL)
			}
		})
	})

	t.Run("T75 acr and auth_time from the browser change nothing", func(t *testing.T) {
		now := strconv.FormatInt(time.Now().Unix(), 10)
		forged := "acr=gold&auth_time=" + now
		untouched(t, "gold", func() {
			if r := b.api("/gold/whoami?" + forged); r.Status != 401 {
				t.Errorf("/gold/whoami with acr in the query: %d %s", r.Status, r.Body)
			}
			// A login asking through them…
			if r, hops := b.follow("/bff/login?" + forged + "&returnUrl=%2F"); r.Status != 200 {
				t.Fatalf("login with acr and auth_time parameters ended at %v with %d", hops, r.Status)
			}
			if q := s.Provider.LastAuthorizeRequest(); q.Has("acr") || q.Has("auth_time") || q.Has("acr_values") {
				t.Errorf("the provider was asked %v", q)
			}
			// …and a callback carrying them.
			cb := pendingCallback(t, b, "/")
			if r, hops := b.follow(cb + "&" + forged); r.Status != 200 {
				t.Fatalf("callback with acr and auth_time parameters ended at %v with %d", hops, r.Status)
			}
			if acr := b.api("/bff/user?" + forged).json(t)["acr"]; acr != "silver" {
				t.Errorf("after logins with forged parameters the session's acr is %v, want silver", acr)
			}
			if r := b.api("/gold/whoami"); r.Status != 401 || errCode(r) != "step_up_required" {
				t.Errorf("/gold/whoami after them: %d %s, want 401 step_up_required", r.Status, r.Body)
			}
		})
	})

	t.Run("T75 the step-up login mints a fresh session that passes", func(t *testing.T) {
		old := b.cookies["__Host-bff"]
		r, hops := b.follow(loginURL + "&returnUrl=" + url.QueryEscape("/app/reports?x=1"))
		if r.Status != 200 || !strings.HasSuffix(hops[len(hops)-1], "/app/reports?x=1") {
			t.Fatalf("step-up login ended at %v with %d", hops, r.Status)
		}
		if q := s.Provider.LastAuthorizeRequest(); q.Get("acr_values") != "gold" || q.Get("max_age") != "600" {
			t.Errorf("the provider was asked acr_values %q max_age %q", q.Get("acr_values"), q.Get("max_age"))
		}
		if b.cookies["__Host-bff"] == "" || b.cookies["__Host-bff"] == old {
			t.Fatal("the step-up login kept the session ID")
		}
		if resp, _, err := spaGet(&http.Client{Timeout: 10 * time.Second}, s.URL, "/api/whoami", "__Host-bff="+old); err != nil || resp.StatusCode != 401 {
			t.Errorf("the session ID from before the step-up: %v %v, want 401", err, resp)
		}
		if acr := b.api("/bff/user").json(t)["acr"]; acr != "gold" {
			t.Errorf("/bff/user acr %v, want gold", acr)
		}
		verified(t, "/gold/whoami")
		if r := b.api("/admins/whoami"); r.Status != 403 {
			t.Errorf("a gold session without the group: /admins/whoami %d", r.Status)
		}
	})

	t.Run("T75 a login older than max_age steps up to a fresh one", func(t *testing.T) {
		verified(t, "/fresh/whoami") // just logged in
		var r response
		deadline := time.Now().Add(10 * time.Second)
		for r = b.api("/fresh/whoami"); r.Status == 200 && time.Now().Before(deadline); r = b.api("/fresh/whoami") {
			time.Sleep(200 * time.Millisecond)
		}
		if r.Status != 401 || errCode(r) != "step_up_required" || !strings.Contains(r.Header.Get("WWW-Authenticate"), "max_age=3") {
			t.Fatalf("/fresh/whoami 3 s after the login: %d %q %s, want 401 step_up_required with max_age=3", r.Status, r.Header.Get("WWW-Authenticate"), r.Body)
		}
		login, _ := r.json(t)["loginUrl"].(string)
		if r, hops := b.follow(login + "&returnUrl=%2F"); r.Status != 200 {
			t.Fatalf("step-up login ended at %v with %d", hops, r.Status)
		}
		if q := s.Provider.LastAuthorizeRequest(); q.Get("max_age") != "3" {
			t.Errorf("the provider was asked max_age %q", q.Get("max_age"))
		}
		verified(t, "/fresh/whoami")
	})
}

// TestProfiles_T77 is the login parameters' allow-list through Envoy: what
// the configuration and the flow set never comes from the browser, and a
// refused silent login returns to the app without a session.
func TestProfiles_T77(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{})
	own := url.Values{
		"redirect_uri": {s.URL + "/bff/callback"},
		"client_id":    {harness.ClientID},
		"scope":        {"openid profile email offline_access"},
	}
	for param, evil := range map[string]string{
		"redirect_uri":  "https://evil.example/cb",
		"response_mode": "form_post",
		"client_id":     "evil-client",
		"scope":         "openid admin",
		"request":       "eyJhbGciOiJub25lIn0.eyJzY29wZSI6ImFkbWluIn0.",
		"request_uri":   "https://evil.example/request.jwt",
	} {
		t.Run("T77 "+param+" from the browser never reaches the provider", func(t *testing.T) {
			b := newBrowser(t, s.URL)
			r := b.get("/bff/login?returnUrl=%2F&" + param + "=" + url.QueryEscape(evil))
			if r.Status != 302 {
				t.Fatalf("/bff/login: %d %s", r.Status, r.Body)
			}
			if loc := r.Header.Get("Location"); strings.Contains(loc, url.QueryEscape(evil)) || strings.Contains(loc, "evil") {
				t.Errorf("the authorization request carries the browser's %s: %s", param, loc)
			}
			if r, hops := b.follow(r.Header.Get("Location")); r.Status != 200 {
				t.Fatalf("login ended at %v with %d", hops, r.Status)
			}
			q := s.Provider.LastAuthorizeRequest()
			if slices.Contains(q[param], evil) || (own.Has(param) && !slices.Equal(q[param], own[param])) || (!own.Has(param) && q.Has(param)) {
				t.Errorf("the provider got %s=%q", param, q[param])
			}
			if b.cookies["__Host-bff"] == "" {
				t.Error("the login set no session")
			}
		})
	}

	t.Run("T77 a refused prompt=none returns to returnUrl with bff_login=required and no session", func(t *testing.T) {
		s.Provider.SetSilentLoginFails(true)
		defer s.Provider.SetSilentLoginFails(false)
		b := newBrowser(t, s.URL)
		r, hops := b.follow("/bff/login?prompt=none&returnUrl=" + url.QueryEscape("/app/orders?x=1"))
		last, err := url.Parse(hops[len(hops)-1])
		if err != nil || r.Status != 200 || last.Path != "/app/orders" || last.Query().Get("x") != "1" || last.Query().Get("bff_login") != "required" {
			t.Fatalf("silent login ended at %v with %d, want /app/orders?x=1&bff_login=required", hops, r.Status)
		}
		if q := s.Provider.LastAuthorizeRequest(); q.Get("prompt") != "none" {
			t.Errorf("the provider was asked prompt %q", q.Get("prompt"))
		}
		if v, ok := b.cookies["__Host-bff"]; ok {
			t.Errorf("a session cookie was set: %q", v)
		}
		if r := b.api("/api/whoami"); r.Status != 401 {
			t.Errorf("/api/whoami after it: %d", r.Status)
		}
	})
}

// loggedIn is a browser's session through Envoy.
type loggedIn struct {
	value  string // the session cookie's value
	cookie string // as a Cookie header pair
	sid    string // the provider's session
}

// loginBrowser logs b in through Envoy and returns its session.
func loginBrowser(t *testing.T, s *harness.Stack, b *browser) loggedIn {
	t.Helper()
	if r, hops := b.login("/"); r.Status != 200 {
		t.Fatalf("login ended at %v with %d", hops, r.Status)
	}
	logout, _ := b.api("/bff/user").json(t)["logoutUrl"].(string)
	lu, err := url.Parse(logout)
	if err != nil || lu.Query().Get("sid") == "" {
		t.Fatalf("logoutUrl %q carries no sid", logout)
	}
	v := b.cookies["__Host-bff"]
	return loggedIn{value: v, cookie: "__Host-bff=" + v, sid: lu.Query().Get("sid")}
}

// whoamiOf decodes a sample API's 200 answer.
func whoamiOf(t *testing.T, r response) sampleapi.Whoami {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("whoami: %d %s", r.Status, r.Body)
	}
	var w sampleapi.Whoami
	if err := json.Unmarshal([]byte(r.Body), &w); err != nil {
		t.Fatalf("whoami: %v: %s", err, r.Body)
	}
	return w
}

// derivedKeyOf is the Redis key of the derived tokens of the session a
// cookie value names: <base>{<hash>}:t, found among the keys by its hash.
func derivedKeyOf(t *testing.T, s *harness.Stack, value string) string {
	t.Helper()
	ring, err := session.NewKeyRing(session.KeyList{{ID: "k1", Secret: s.EncryptionKey}}, s.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	id, err := session.ParseID(value)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range scanKeys(t, redisClient(t, s.RedisURL), "*:t") {
		if strings.HasSuffix(k, "{"+ring.HashID(id)+"}:t") {
			return k
		}
	}
	t.Fatalf("no derived-token key for the session in Redis")
	return ""
}
