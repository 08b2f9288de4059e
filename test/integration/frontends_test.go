package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// The apps of the multi-frontend stack. shop and admin share one cookie
// name, which their different hosts allow; partner lives under /partner/ on
// shop's host with a cookie of its own. extra joins by a config reload, on a
// host no frontend serves before.
var (
	feShop    = harness.Frontend{Name: "shop", Host: "localhost", Cookie: "__Host-bff"}
	feAdmin   = harness.Frontend{Name: "admin", Host: "127.0.0.1", Cookie: "__Host-bff"}
	fePartner = harness.Frontend{Name: "partner", Host: "localhost", PathPrefix: "/partner/", Cookie: "__Host-bff-partner"}
	feExtra   = harness.Frontend{Name: "extra", Host: "other.example", Cookie: "__Host-bff-extra", Later: true}
)

// TestFrontends is issue 13's proof through real Envoy, two envoy-bff
// replicas on one real Redis and the local provider (one client per app):
// three apps on two hosts log in and each API gets its own client's token;
// a session of one app is nothing on another's routes and endpoints (T72);
// back-channel logout and the admin API end one app's sessions only; a host
// no app serves is 403 frontend_unknown, a reload by SIGHUP adds an app, and
// an invalid config is refused whole (T73). The subtests run in order on
// one stack: the API request counter is only theirs when nothing else calls.
func TestFrontends(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{
		Replicas:  2,
		Redis:     true,
		Frontends: []harness.Frontend{feShop, feAdmin, fePartner, feExtra},
		BFFConfig: func(doc map[string]any) {
			// Reloads in this test come from SIGHUP alone.
			doc["reload"] = map[string]any{"poll_interval": "0s"}
		},
	})
	apiRequests := func(t *testing.T) int {
		t.Helper()
		return envoyCounter(t, s.Envoy, "cluster.api.upstream_rq_total")
	}
	checks := dialAll(t, s)
	// everyReplica asserts what each replica's Check answers for a's session
	// on a's own route.
	everyReplica := func(t *testing.T, a *appSession, want int) {
		t.Helper()
		for i, c := range checks {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			r, err := c.APIAt(ctx, a.f.Host, a.f.Prefix()+"api/whoami", a.cookie())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != want {
				t.Fatalf("%s session: replica %d answers %d, want %d: %s", a.f.Name, i+1, r.Status, want, r.Body)
			}
		}
	}
	// No session cookie value, and no token the provider issued, reaches
	// any log of the run.
	var values []string
	login := func(t *testing.T, b *browser, f harness.Frontend) *appSession {
		t.Helper()
		a := loginApp(t, b, f)
		values = append(values, a.value)
		return a
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		leaks, err := s.LogLeaks(map[string][]string{"session cookie": values})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leaks {
			t.Errorf("in a log: %s", l)
		}
	})
	localhost := newBrowser(t, appOrigin(s, "localhost"))
	loopback := newBrowser(t, appOrigin(s, "127.0.0.1"))
	var shop, admin, partner *appSession

	t.Run("each app logs in through Envoy and its API gets a token of its own client", func(t *testing.T) {
		// One browser per origin, as a real one: shop and partner share
		// localhost's cookie jar, so partner's requests carry shop's cookie.
		shop = login(t, localhost, feShop)
		partner = login(t, localhost, fePartner)
		admin = login(t, loopback, feAdmin)
		for _, c := range []struct {
			b *browser
			a *appSession
		}{{localhost, shop}, {localhost, partner}, {loopback, admin}} {
			r := c.b.api(c.a.f.Prefix() + "api/whoami")
			if r.Status != 200 {
				t.Fatalf("%s: %s: %d %s", c.a.f.Name, c.a.f.Prefix()+"api/whoami", r.Status, r.Body)
			}
			assertWhoami(t, c.a.f, r)
			if u := c.b.api(c.a.f.BFFPath() + "/user"); u.Status != 200 || u.json(t)["aud"] != c.a.f.Client() {
				t.Errorf("%s: %s/user: %d %s, want 200 with aud %s", c.a.f.Name, c.a.f.BFFPath(), u.Status, u.Body, c.a.f.Client())
			}
		}
		if shop.value == admin.value || shop.value == partner.value {
			t.Fatal("two apps hold the same session ID")
		}
	})

	t.Run("an app under a path prefix has its own realtime routes", func(t *testing.T) {
		// The page's EventSource on partner's prefix: no X-CSRF, the
		// browser's same-origin marker instead, and partner's token.
		feed := appOrigin(s, "localhost") + fePartner.Prefix() + "api/events"
		code, events := openSSE(t, feed, map[string]string{"Cookie": partner.cookie(), "Sec-Fetch-Site": "same-origin"}, 1)
		if code != http.StatusOK || len(events) != 1 || events[0].name != "hello" || subjectOf(t, []byte(events[0].data)) == "" {
			t.Fatalf("%s: %d %+v, want partner's hello with its subject", feed, code, events)
		}
		h := http.Header{"Cookie": {partner.cookie()}, "Sec-Fetch-Site": {"cross-site"}, "Origin": {"https://evil.example"}}
		if code, body := getSSE(t, feed, h); code != http.StatusForbidden || !bytes.Contains(body, []byte("origin_not_allowed")) {
			t.Fatalf("%s from another site: %d %s, want 403 origin_not_allowed", feed, code, body)
		}
	})

	t.Run("T72 a session of one app is nothing on another app's routes and endpoints", func(t *testing.T) {
		tests := []struct {
			name, host, path, cookie string
		}{
			{"shop's cookie on admin's host under the same name", feAdmin.Host, "/api/whoami", "__Host-bff=" + shop.value},
			{"admin's cookie on shop's host under the same name", feShop.Host, "/api/whoami", "__Host-bff=" + admin.value},
			{"shop's value copied under partner's name on partner's route", fePartner.Host, "/partner/api/whoami", "__Host-bff-partner=" + shop.value},
			{"partner's value copied under shop's name on shop's route", feShop.Host, "/api/whoami", "__Host-bff=" + partner.value},
			{"shop's cookie alone on partner's route", fePartner.Host, "/partner/api/whoami", "__Host-bff=" + shop.value},
			{"admin's value under partner's name on partner's route", fePartner.Host, "/partner/api/whoami", "__Host-bff-partner=" + admin.value},
			{"shop's cookie on admin's /bff/user", feAdmin.Host, "/bff/user", "__Host-bff=" + shop.value},
			{"shop's value under partner's name on partner's /bff/user", fePartner.Host, "/partner/bff/user", "__Host-bff-partner=" + shop.value},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				upstream := apiRequests(t)
				r := send(t, s, tt.host, tt.path, tt.cookie)
				if r.Status != 401 || r.json(t)["error"] != "unauthenticated" {
					t.Errorf("%d %s, want 401 unauthenticated", r.Status, r.Body)
				}
				if n := apiRequests(t) - upstream; n != 0 {
					t.Errorf("the API received %d request(s) for it", n)
				}
			})
		}

		t.Run("shop's cookie on admin's logout ends nothing of shop", func(t *testing.T) {
			revocations := s.Provider.Stats().Revocations
			// Admin finds no session of its own: it sends the browser home,
			// not to the provider's logout.
			r := send(t, s, feAdmin.Host, "/bff/logout?sid="+url.QueryEscape(shop.sid), "__Host-bff="+shop.value)
			if loc := r.Header.Get("Location"); r.Status != 302 || strings.HasPrefix(loc, s.IssuerURL) {
				t.Errorf("admin's logout: %d to %q, want 302 home", r.Status, loc)
			}
			if n := s.Provider.Stats().Revocations - revocations; n != 0 {
				t.Errorf("admin's logout revoked %d tokens at the provider", n)
			}
			assertServes(t, s, shop)
		})

		// Both of localhost's session cookies on either app's route: each
		// app takes its own, and its upstream sees neither (their hosts
		// overlap), while an ordinary cookie passes.
		for _, a := range []*appSession{partner, shop} {
			t.Run("shop's and partner's cookies on "+a.f.Name+"'s route: "+a.f.Name+"'s session, neither upstream", func(t *testing.T) {
				upstream := apiRequests(t)
				r := send(t, s, a.f.Host, a.f.Prefix()+"api/whoami", shop.cookie(), "a=1", partner.cookie())
				if r.Status != 200 {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
				w := assertWhoami(t, a.f, r)
				if !slices.Equal(w.CookieNames, []string{"a"}) {
					t.Errorf("upstream received cookies %v, want only [a]", w.CookieNames)
				}
				if w.SawSessionCookie || w.SessionNameInCookieHeader {
					t.Errorf("a session cookie's name reached the upstream: %s", r.Body)
				}
				if n := apiRequests(t) - upstream; n != 1 {
					t.Errorf("the API received %d requests, want 1", n)
				}
			})
		}
		for _, a := range []*appSession{shop, admin, partner} {
			assertServes(t, s, a)
		}
	})

	t.Run("T72 back-channel logout of shop's user ends shop's sessions only", func(t *testing.T) {
		// The provider ends one shop session: its logout token reaches
		// shop's back-channel URI through Envoy.
		shop2 := login(t, newBrowser(t, appOrigin(s, "localhost")), feShop)
		before := s.Provider.Stats()
		if !s.Provider.EndSession(t.Context(), shop2.sid) {
			t.Fatal("the provider did not know shop's session")
		}
		st := s.Provider.Stats()
		if st.BackchannelLogouts != before.BackchannelLogouts+1 || st.BackchannelLogoutErrors != before.BackchannelLogoutErrors {
			t.Fatalf("back-channel deliveries %d→%d, errors %d→%d", before.BackchannelLogouts, st.BackchannelLogouts, before.BackchannelLogoutErrors, st.BackchannelLogoutErrors)
		}
		everyReplica(t, shop2, 401)
		for _, a := range []*appSession{shop, admin, partner} {
			assertServes(t, s, a)
			everyReplica(t, a, 200)
		}

		// A token for shop's client naming the user (no sid) ends all of
		// the user's shop sessions; admin's and partner's sessions of the
		// same user, same provider, same issuer, stay. At admin's or
		// partner's back-channel URI the same token is refused.
		bySub, err := s.Provider.MintLogoutToken(oidctest.LogoutToken{Audience: feShop.Client(), Subject: "demo-user"})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []harness.Frontend{feAdmin, fePartner} {
			if code := postBackchannelTo(t, s, f, bySub); code != 400 {
				t.Errorf("shop's logout token at %s's back-channel URI: %d, want 400", f.Name, code)
			}
		}
		for _, a := range []*appSession{shop, admin, partner} {
			everyReplica(t, a, 200)
		}
		if code := postBackchannelTo(t, s, feShop, bySub); code != 200 {
			t.Fatalf("shop's logout token at shop's back-channel URI: %d", code)
		}
		everyReplica(t, shop, 401)
		assertDenied(t, s, shop)
		for _, a := range []*appSession{admin, partner} {
			assertServes(t, s, a)
			everyReplica(t, a, 200)
		}
		// A shop token naming admin's provider session ends nothing of admin's.
		bySid, err := s.Provider.MintLogoutToken(oidctest.LogoutToken{Audience: feShop.Client(), Sid: admin.sid})
		if err != nil {
			t.Fatal(err)
		}
		if code := postBackchannelTo(t, s, feShop, bySid); code != 200 {
			t.Fatalf("shop's logout token for admin's sid at shop's URI: %d", code)
		}
		everyReplica(t, admin, 200)
	})

	t.Run("T72 admin API revocation of shop's sessions ends shop's only", func(t *testing.T) {
		shop = login(t, localhost, feShop)
		shop2 := login(t, newBrowser(t, appOrigin(s, "localhost")), feShop)
		adminAPI := "http://" + s.BFFs[1].AdminAddr + "/admin/sessions"
		listed := func(frontend string) int {
			t.Helper()
			code, m := adminCall(t, http.MethodGet, adminAPI+"?frontend="+frontend+"&sub=demo-user")
			if code != 200 {
				t.Fatalf("list %s's sessions: %d %v", frontend, code, m)
			}
			list, _ := m["sessions"].([]any)
			return len(list)
		}
		if n := listed("shop"); n != 2 {
			t.Fatalf("shop has %d sessions of demo-user, want 2 (the back-channel logout ended the others)", n)
		}
		admins, partners := listed("admin"), listed("partner")
		if admins < 1 || partners < 1 {
			t.Fatalf("admin lists %d sessions, partner %d", admins, partners)
		}

		code, m := adminCall(t, http.MethodDelete, adminAPI+"?sub=demo-user")
		if desc, _ := m["error_description"].(string); code != 400 || m["error"] != "invalid_request" || !strings.Contains(desc, "admin, partner, shop") {
			t.Errorf("revoke without frontend=: %d %v, want 400 invalid_request naming the frontends", code, m)
		}
		for _, a := range []*appSession{shop, shop2, admin, partner} {
			everyReplica(t, a, 200)
		}

		code, m = adminCall(t, http.MethodDelete, adminAPI+"?frontend=shop&sub=demo-user")
		if code != 200 || m["ended"] != 2.0 {
			t.Fatalf("revoke frontend=shop: %d %v, want 200 ended 2", code, m)
		}
		for _, a := range []*appSession{shop, shop2} {
			everyReplica(t, a, 401)
			assertDenied(t, s, a)
		}
		for _, a := range []*appSession{admin, partner} {
			everyReplica(t, a, 200)
			assertServes(t, s, a)
		}
		if n, na, np := listed("shop"), listed("admin"), listed("partner"); n != 0 || na != admins || np != partners {
			t.Errorf("after the revocation: shop %d, admin %d (was %d), partner %d (was %d)", n, na, admins, np, partners)
		}
	})

	t.Run("T73 a host no frontend serves is 403 frontend_unknown", func(t *testing.T) {
		shop = login(t, localhost, feShop)
		for _, path := range []string{"/api/whoami", "/partner/api/whoami"} {
			for _, cookie := range []string{shop.cookie(), partner.cookie(), admin.cookie()} {
				upstream := apiRequests(t)
				r := send(t, s, feExtra.Host, path, cookie)
				if r.Status != 403 || r.json(t)["error"] != "frontend_unknown" {
					t.Errorf("%s on %s: %d %s, want 403 frontend_unknown", path, feExtra.Host, r.Status, r.Body)
				}
				if n := apiRequests(t) - upstream; n != 0 {
					t.Errorf("%s on %s: the API received %d request(s)", path, feExtra.Host, n)
				}
			}
		}
		// Its browser endpoints are no app's either.
		if r := send(t, s, feExtra.Host, "/bff/login"); r.Status != 404 || r.json(t)["error"] != "frontend_unknown" {
			t.Errorf("/bff/login on %s: %d %s, want 404 frontend_unknown", feExtra.Host, r.Status, r.Body)
		}
	})

	t.Run("T73 reload by SIGHUP adds an app; an invalid config is refused whole", func(t *testing.T) {
		ctx := t.Context()
		kept := []*appSession{shop, admin, partner}
		for _, b := range s.BFFs {
			line, err := b.Reload(ctx, func(doc map[string]any) {
				doc["frontends"] = append(doc["frontends"].([]any), s.FrontendDoc(feExtra))
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, `"msg":"config reloaded"`) || !strings.Contains(line, `"cause":"signal"`) || !strings.Contains(line, `"added":["extra"]`) {
				t.Fatalf("%s: reload logged %s, want extra added on the signal", b.Name, line)
			}
		}
		extra := login(t, loopbackBrowser(t, appOrigin(s, feExtra.Host)), feExtra)
		assertServes(t, s, extra)
		everyReplica(t, extra, 200)
		for _, a := range kept {
			assertServes(t, s, a)
			everyReplica(t, a, 200)
		}
		assertReady(t, s, "shop", "admin", "partner", "extra")

		// A bad issuer for shop: the whole file is refused, every app
		// serves on as before, and the replica says which field.
		for _, b := range s.BFFs {
			line, err := b.Reload(ctx, func(doc map[string]any) {
				frontendIn(t, doc, "shop")["oidc"].(map[string]any)["issuer"] = "not a url"
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, `"msg":"config reload refused`) || !strings.Contains(line, "frontends[shop].oidc.issuer") {
				t.Fatalf("%s: reload logged %s, want it refused naming frontends[shop].oidc.issuer", b.Name, line)
			}
		}
		for _, a := range append(kept, extra) {
			assertServes(t, s, a)
			everyReplica(t, a, 200)
		}
		// shop still logs in at its real provider.
		assertServes(t, s, login(t, newBrowser(t, appOrigin(s, "localhost")), feShop))
		assertReady(t, s, "shop", "admin", "partner", "extra")

		// A valid config without extra: its host is no app's again, and
		// the apps that did not change keep their sessions.
		for _, b := range s.BFFs {
			line, err := b.Reload(ctx, func(doc map[string]any) {
				doc["frontends"] = []any{s.FrontendDoc(feShop), s.FrontendDoc(feAdmin), s.FrontendDoc(fePartner)}
			})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(line, `"msg":"config reloaded"`) || !strings.Contains(line, `"removed":["extra"]`) || !strings.Contains(line, `"changed":null`) {
				t.Fatalf("%s: reload logged %s, want extra removed and nothing changed", b.Name, line)
			}
		}
		if r := send(t, s, feExtra.Host, "/api/whoami", extra.cookie()); r.Status != 403 || r.json(t)["error"] != "frontend_unknown" {
			t.Errorf("extra's session after its removal: %d %s, want 403 frontend_unknown", r.Status, r.Body)
		}
		for _, a := range kept {
			assertServes(t, s, a)
			everyReplica(t, a, 200)
		}
		assertReady(t, s, "shop", "admin", "partner")
	})
}

// appSession is one app's session in a browser.
type appSession struct {
	f     harness.Frontend
	value string // its session cookie's value
	sid   string // the provider session
}

// cookie is the session as a Cookie header pair.
func (a *appSession) cookie() string { return a.f.CookieName() + "=" + a.value }

// appOrigin is Envoy's listener on host: an app's origin to a browser.
func appOrigin(s *harness.Stack, host string) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(s.Port))
}

// loopbackBrowser is a browser for an origin whose host nothing resolves:
// it connects to 127.0.0.1 (Envoy, the provider) whatever the name, as a
// name service pointing the name at this machine would.
func loopbackBrowser(t *testing.T, origin string) *browser {
	t.Helper()
	b := newBrowser(t, origin)
	tr := &http.Transport{DialContext: loopbackDial}
	t.Cleanup(tr.CloseIdleConnections)
	b.client.Transport = tr
	return b
}

func loopbackDial(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, network, net.JoinHostPort("127.0.0.1", port))
}

// loginApp logs b in to f through Envoy (f's <prefix>bff/login, the
// provider, f's callback, back to f's prefix) and returns the session.
func loginApp(t *testing.T, b *browser, f harness.Frontend) *appSession {
	t.Helper()
	r, hops := b.follow(f.BFFPath() + "/login")
	if r.Status != 200 {
		t.Fatalf("%s: login ended at %v with %d %s", f.Name, hops, r.Status, r.Body)
	}
	if u, err := url.Parse(hops[len(hops)-1]); err != nil || u.Host != b.origin.Host || u.Path != f.Prefix() {
		t.Errorf("%s: login ended at %s, want its prefix %s on %s", f.Name, hops[len(hops)-1], f.Prefix(), b.origin.Host)
	}
	value := b.cookies[f.CookieName()]
	if value == "" {
		t.Fatalf("%s: login set no %s cookie", f.Name, f.CookieName())
	}
	u := b.api(f.BFFPath() + "/user")
	if u.Status != 200 {
		t.Fatalf("%s: %s/user: %d %s", f.Name, f.BFFPath(), u.Status, u.Body)
	}
	logout, _ := u.json(t)["logoutUrl"].(string)
	lu, err := url.Parse(logout)
	if err != nil || lu.Query().Get("sid") == "" || !strings.HasPrefix(lu.Path, f.BFFPath()+"/") {
		t.Fatalf("%s: logoutUrl %q: want one under %s carrying a sid", f.Name, logout, f.BFFPath())
	}
	return &appSession{f: f, value: value, sid: lu.Query().Get("sid")}
}

// frontendClient sends requests to Envoy's listener whatever the Host.
var frontendClient = &http.Client{
	Timeout:       10 * time.Second,
	Transport:     &http.Transport{DialContext: loopbackDial},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// send makes one SPA-style GET (with the anti-forgery header) through
// Envoy with host as its Host and cookies as one Cookie header.
func send(t *testing.T, s *harness.Stack, host, path string, cookies ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, appOrigin(s, host)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	if len(cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	resp, err := frontendClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// whoami is what the sample API saw of a request.
type whoami struct {
	Sub                       string   `json:"sub"`
	ClientID                  string   `json:"client_id"`
	TokenError                string   `json:"token_error"`
	CookieNames               []string `json:"cookie_names"`
	SawSessionCookie          bool     `json:"saw_session_cookie"`
	SessionNameInCookieHeader bool     `json:"session_name_in_cookie_header"`
}

// assertWhoami asserts that the API verified a token issued to f's client
// for the demo user, and that no session cookie (of any app: every name
// here starts with __Host-bff) reached it.
func assertWhoami(t *testing.T, f harness.Frontend, r response) whoami {
	t.Helper()
	var w whoami
	if err := json.Unmarshal([]byte(r.Body), &w); err != nil {
		t.Fatalf("%s: %v: %s", f.Name, err, r.Body)
	}
	if w.Sub != "demo-user" || w.TokenError != "" || w.ClientID != f.Client() {
		t.Errorf("%s: the API saw sub %q client %q (token error %q), want demo-user's token of %s", f.Name, w.Sub, w.ClientID, w.TokenError, f.Client())
	}
	if w.SessionNameInCookieHeader {
		t.Errorf("%s: a session cookie reached the API (cookies %v)", f.Name, w.CookieNames)
	}
	return w
}

// assertServes asserts that a's session passes on its app's API through
// Envoy, on every replica (Envoy's round robin), with its client's token.
func assertServes(t *testing.T, s *harness.Stack, a *appSession) {
	t.Helper()
	for range 2 * len(s.BFFs) {
		r := send(t, s, a.f.Host, a.f.Prefix()+"api/whoami", a.cookie())
		if r.Status != 200 {
			t.Fatalf("%s session through Envoy: %d %s", a.f.Name, r.Status, r.Body)
		}
		assertWhoami(t, a.f, r)
	}
}

// assertDenied asserts that a's session is 401 on its app's API through Envoy.
func assertDenied(t *testing.T, s *harness.Stack, a *appSession) {
	t.Helper()
	for range 2 * len(s.BFFs) {
		if r := send(t, s, a.f.Host, a.f.Prefix()+"api/whoami", a.cookie()); r.Status != 401 {
			t.Fatalf("%s session through Envoy: %d %s, want 401", a.f.Name, r.Status, r.Body)
		}
	}
}

// postBackchannelTo posts a logout token to f's back-channel URI through
// Envoy, as the provider does.
func postBackchannelTo(t *testing.T, s *harness.Stack, f harness.Frontend, token string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, appOrigin(s, f.Host)+f.BFFPath()+"/backchannel-logout",
		strings.NewReader("logout_token="+url.QueryEscape(token)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := frontendClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// adminCall calls a replica's admin API and decodes its JSON answer.
func adminCall(t *testing.T, method, rawURL string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := frontendClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	return resp.StatusCode, m
}

// assertReady asserts that every replica's /readyz is 200 and lists
// exactly the named frontends, each ready.
func assertReady(t *testing.T, s *harness.Stack, names ...string) {
	t.Helper()
	want := "ready\n"
	for _, n := range names {
		want += "frontend " + n + ": ready\n"
	}
	for _, b := range s.BFFs {
		resp, err := frontendClient.Get("http://" + b.AdminAddr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s /readyz: %d %q, want 200 %q", b.Name, resp.StatusCode, body, want)
		}
	}
}

// frontendIn is the named item of a config document's `frontends:`.
func frontendIn(t *testing.T, doc map[string]any, name string) map[string]any {
	t.Helper()
	list, _ := doc["frontends"].([]any)
	for _, item := range list {
		if m, ok := item.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	t.Fatalf("no frontend %s in the config", name)
	return nil
}
