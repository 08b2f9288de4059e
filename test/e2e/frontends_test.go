package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/envoy-bff/envoy-bff/test/harness"
	"github.com/envoy-bff/envoy-bff/test/sampleapi"
)

// The realms of TestKeycloakFrontends (frontends-realm.json and
// partner-realm.json): shop and admin are two clients of one realm, partner
// the one client of another, each realm with its own user.
const (
	ssoRealm        = "envoy-bff-sso"
	partnerRealm    = "envoy-bff-partners"
	partnerUser     = "paula"
	partnerPassword = "paula-e2e-password"
	aliceName       = "Alice Liddell"
	paulaName       = "Paula Partner"
)

// TestKeycloakFrontends walks three apps behind one Envoy and a pool of two
// envoy-bff replicas on Redis, in headless Chromium against real Keycloak:
// shop (host localhost) and admin (host 127.0.0.1) are two clients of one
// realm, so one Keycloak login serves both (single sign-on), while each has
// its own envoy-bff session; partner (localhost, under /partner/, its own
// cookie) is a client of a second realm, with its own login.
//
// Logout, as configured in the realm files and asserted here: shop's and
// admin's clients have back-channel logout with the session required
// (backchannel.logout.session.required) and no front-channel logout. The
// SPA's logout is RP-initiated: envoy-bff ends shop's session and sends the
// browser to Keycloak's end_session_endpoint, which ends the realm's SSO
// session, and with it, by back-channel logout, admin's session, because
// admin's login came from that SSO session and Keycloak no longer has it
// (OpenID single logout: an admin session outliving it could not be ended
// by Keycloak any more). So "log out of one and stay logged in to the
// other" holds across realms: partner stays logged in; and the next login
// to shop shows Keycloak's form again. Then an administrator ends alice's
// sessions in the first realm through Keycloak's admin API: its
// back-channel logouts end shop's and admin's new sessions and nothing of
// partner's. Screenshots of each step go to test/out/e2e (fe-*.jpg).
func TestKeycloakFrontends(t *testing.T) {
	chromium := chromiumPath(t)
	start := time.Now()
	dir := t.TempDir()
	shots := screenshots(t)
	// The realms name the apps' URLs, so Envoy's port is held from now on.
	listen, err := harness.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	port := strconv.Itoa(listen.Port)
	shopURL, adminURL := "http://localhost:"+port, "http://127.0.0.1:"+port
	partnerURL := shopURL + "/partner"
	vars := []string{"${SHOP_URL}", shopURL, "${ADMIN_URL}", adminURL, "${PARTNER_URL}", partnerURL, "${PARTNER_ORIGIN}", shopURL}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	kc := startRealms(t, ctx, dir, vars, "frontends-realm.json", "partner-realm.json")
	kcStarted := time.Now()
	sso, partners := kc.InRealm(ssoRealm), kc.InRealm(partnerRealm)

	shop := harness.Frontend{Name: "shop", Host: "localhost", ClientID: "envoy-bff-shop", ClientSecret: "envoy-bff-shop-e2e-secret"}
	admin := harness.Frontend{Name: "admin", Host: "127.0.0.1", ClientID: "envoy-bff-admin", ClientSecret: "envoy-bff-admin-e2e-secret"}
	partner := harness.Frontend{Name: "partner", Host: "localhost", PathPrefix: "/partner/", Cookie: "__Host-partner",
		Issuer: partners.Issuer(), ClientID: "envoy-bff-partner", ClientSecret: "envoy-bff-partner-e2e-secret"}
	s, err := harness.Start(ctx, harness.Options{
		Dir: dir, Replicas: 2, Redis: true, Listen: listen,
		Issuer:    sso.Issuer(), // shop's and admin's; partner names its own
		Frontends: []harness.Frontend{shop, admin, partner},
		BFFConfig: func(doc map[string]any) {
			// No offline_access: an administrator's logout at Keycloak
			// must be able to end every session.
			for _, f := range doc["frontends"].([]any) {
				f.(map[string]any)["oidc"].(map[string]any)["scopes"] = []string{"openid", "profile", "email"}
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs:\n%s\n----- keycloak\n%s", s.Logs(3000), kc.Tail(3000))
		}
		s.Close()
	})
	if got := shop.URL(s) + "|" + admin.URL(s) + "|" + partner.URL(s); got != shopURL+"|"+adminURL+"|"+partnerURL {
		t.Fatalf("the apps are at %s, the realms name %s|%s|%s", got, shopURL, adminURL, partnerURL)
	}
	aliceID, err := sso.UserID(ctx, userName)
	if err != nil {
		t.Fatal(err)
	}
	paulaID, err := partners.UserID(ctx, partnerUser)
	if err != nil {
		t.Fatal(err)
	}

	browser := startChromium(t, ctx, chromium)
	docs := recordDocuments(browser, kc.URL)

	run := steps(t, browser, shots, "fe-", 60*time.Second)
	// open loads an app's page and returns the signed-in name ("" when the
	// page shows the anonymous view).
	open := func(step string, f harness.Frontend) string {
		t.Helper()
		var state, name, app, at string
		run(step, chromedp.Navigate(f.URL(s)+"/"),
			chromedp.Poll(`document.body.dataset.state !== 'loading'`, nil, chromedp.WithPollingTimeout(20*time.Second)),
			chromedp.Evaluate(`document.body.dataset.state`, &state),
			chromedp.Evaluate(`document.getElementById('user-name').textContent`, &name),
			chromedp.Evaluate(`document.getElementById('app-name').textContent`, &app),
			chromedp.Evaluate(`document.getElementById('app-host').textContent`, &at))
		if (state == "authenticated") != (name != "") {
			t.Fatalf("%s: state %q with name %q", step, state, name)
		}
		if want := strings.TrimPrefix(f.URL(s), "http://"); app != f.Name || at != want {
			t.Fatalf("%s: the page is app %q at %q, want %q at %q", step, app, at, f.Name, want)
		}
		return name
	}
	// loginWithForm clicks the page's login, requires the realm's form and
	// fills it in.
	loginWithForm := func(step, realm, user, password string) string {
		t.Helper()
		var at, name string
		docs.reset()
		run(step+"-keycloak-form", chromedp.Click("#login", chromedp.ByQuery),
			chromedp.WaitVisible("#username", chromedp.ByQuery), chromedp.Location(&at))
		if !strings.HasPrefix(at, kc.URL+"/realms/"+realm+"/") {
			t.Fatalf("%s: the login form is at %s, want realm %s's", step, at, realm)
		}
		if forms := docs.forms(); len(forms) != 1 {
			t.Fatalf("%s: Keycloak served %d pages, want its one form: %v", step, len(forms), forms)
		}
		run(step+"-signed-in",
			chromedp.SendKeys("#username", user, chromedp.ByQuery),
			chromedp.SendKeys("#password", password, chromedp.ByQuery),
			chromedp.Click("#kc-login", chromedp.ByQuery),
			chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
			chromedp.Text("#user-name", &name, chromedp.ByQuery))
		return name
	}
	// loginSSO clicks the page's login and requires that Keycloak answered
	// it without a page of its own (single sign-on).
	loginSSO := func(step string) string {
		t.Helper()
		var name string
		docs.reset()
		run(step, chromedp.Click("#login", chromedp.ByQuery),
			chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
			chromedp.Text("#user-name", &name, chromedp.ByQuery))
		if n := docs.visits(); n == 0 {
			t.Fatalf("%s: the login never went to Keycloak", step)
		}
		if forms := docs.forms(); len(forms) != 0 {
			t.Fatalf("%s: Keycloak showed a page, want single sign-on: %v", step, forms)
		}
		return name
	}
	// callAPI clicks the page's Call API and returns what the API saw.
	callAPI := func(step string) sampleapi.Whoami {
		t.Helper()
		var status, result string
		run(step, chromedp.Click("#call-api", chromedp.ByQuery),
			chromedp.Poll(`document.querySelector('#status').textContent.startsWith('API answered')`, nil, chromedp.WithPollingTimeout(20*time.Second)),
			chromedp.Text("#status", &status, chromedp.ByQuery),
			chromedp.Text("#api-result", &result, chromedp.ByQuery))
		if !strings.HasPrefix(status, "API answered 200") {
			t.Fatalf("%s: %q", step, status)
		}
		var w sampleapi.Whoami
		if err := json.Unmarshal([]byte(result), &w); err != nil {
			t.Fatalf("%s: the page shows %q: %v", step, result, err)
		}
		for _, c := range w.CookieNames {
			if c == shop.CookieName() || c == admin.CookieName() || c == partner.CookieName() {
				t.Errorf("%s: the API got the session cookie %s", step, c)
			}
		}
		return w
	}
	// wantAPI requires the API answer to be the user's, through f's client.
	wantAPI := func(step string, w sampleapi.Whoami, sub string, f harness.Frontend) {
		t.Helper()
		if w.Sub != sub || w.ClientID != f.Client() || w.TokenError != "" {
			t.Fatalf("%s: the API saw sub %q client %q (token error %q), want %q through %s", step, w.Sub, w.ClientID, w.TokenError, sub, f.Client())
		}
	}
	// signedOutByAPI clicks Call API on a page whose session is gone.
	signedOutByAPI := func(step string) {
		t.Helper()
		var status string
		run(step, chromedp.Click("#call-api", chromedp.ByQuery),
			chromedp.WaitVisible("#login", chromedp.ByQuery), chromedp.Text("#status", &status, chromedp.ByQuery))
		if !strings.HasPrefix(status, "401") {
			t.Fatalf("%s: the page's API call: %q", step, status)
		}
	}
	cookie := func(f harness.Frontend) string {
		t.Helper()
		return browserCookie(t, browser, f.URL(s)+"/", f.CookieName())
	}
	api := func(f harness.Frontend, cookieName, value string) int {
		t.Helper()
		return apiAs(t, f.URL(s)+"/api/whoami", cookieName, value)
	}
	logouts := func(f harness.Frontend, kind string) float64 {
		t.Helper()
		return metricSum(t, s, fmt.Sprintf(`envoy_bff_logouts_total{frontend=%q,kind=%q}`, f.Name, kind))
	}
	keycloakSessions := func(k *harness.Keycloak, user string) [][]string {
		t.Helper()
		got, err := k.SessionClients(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	stepsStart := time.Now()

	// 1. Shop: Keycloak's form, the user's name, the API as the user through shop's client.
	if name := open("01-shop-anonymous", shop); name != "" {
		t.Fatalf("shop before login shows %q", name)
	}
	if name := loginWithForm("02-shop", ssoRealm, userName, userPassword); name != aliceName {
		t.Fatalf("shop shows %q, want %q", name, aliceName)
	}
	wantAPI("03-shop-api", callAPI("03-shop-api"), aliceID, shop)

	// 2. Admin: its own envoy-bff session (none yet), single sign-on at
	// Keycloak, the API through admin's client: one Keycloak session holds
	// both clients.
	if name := open("04-admin-anonymous", admin); name != "" {
		t.Fatalf("admin before its login shows %q", name)
	}
	if name := loginSSO("05-admin-sso"); name != aliceName {
		t.Fatalf("admin shows %q, want %q", name, aliceName)
	}
	wantAPI("06-admin-api", callAPI("06-admin-api"), aliceID, admin)
	if got := keycloakSessions(sso, userName); len(got) != 1 || strings.Join(got[0], " ") != "envoy-bff-admin envoy-bff-shop" {
		t.Fatalf("Keycloak sessions of %s in %s: %v, want one with admin and shop", userName, ssoRealm, got)
	}

	// 3. Partner, on shop's host with shop's cookie in the browser: not
	// logged in; its login is the second realm's form (no single sign-on
	// across realms), as that realm's user.
	if name := open("07-partner-anonymous", partner); name != "" {
		t.Fatalf("partner before its login shows %q (shop's cookie is on this host)", name)
	}
	if name := loginWithForm("08-partner", partnerRealm, partnerUser, partnerPassword); name != paulaName {
		t.Fatalf("partner shows %q, want %q", name, paulaName)
	}
	wantAPI("09-partner-api", callAPI("09-partner-api"), paulaID, partner)
	shopCookie, adminCookie, partnerCookie := cookie(shop), cookie(admin), cookie(partner)
	// Each session opens only its own app, even under the other's cookie name.
	for _, c := range []struct {
		name  string
		f     harness.Frontend
		value string
		want  int
	}{
		{"shop's own", shop, shopCookie, 200},
		{"admin's own", admin, adminCookie, 200},
		{"partner's own", partner, partnerCookie, 200},
		{"shop's at partner", partner, shopCookie, 401},
		{"partner's at shop", shop, partnerCookie, 401},
		{"admin's at shop", shop, adminCookie, 401},
		{"shop's at admin", admin, shopCookie, 401},
	} {
		if code := api(c.f, c.f.CookieName(), c.value); code != c.want {
			t.Errorf("the session %s: API %d, want %d", c.name, code, c.want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 4. Log out of shop: shop's session ends, Keycloak's SSO session ends
	// and with it admin's (back-channel logout); partner's stays.
	run("10-shop-logged-out", chromedp.Navigate(shop.URL(s)+"/"), chromedp.WaitVisible("#logout", chromedp.ByQuery),
		chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login", chromedp.ByQuery))
	if code := api(shop, shop.CookieName(), shopCookie); code != http.StatusUnauthorized {
		t.Fatalf("shop's API with its old cookie after logout: %d", code)
	}
	if got := keycloakSessions(sso, userName); len(got) != 0 {
		t.Fatalf("Keycloak sessions in %s after shop's logout: %v", ssoRealm, got)
	}
	if code := untilAPI(t, func() int { return api(admin, admin.CookieName(), adminCookie) }, http.StatusUnauthorized); code != http.StatusUnauthorized {
		t.Fatalf("admin's API after the SSO session ended: %d", code)
	}
	if code := api(partner, partner.CookieName(), partnerCookie); code != 200 {
		t.Fatalf("partner's API after shop's logout: %d", code)
	}
	for _, c := range []struct {
		f    harness.Frontend
		kind string
		want float64
	}{{shop, "user", 1}, {shop, "backchannel", 0}, {admin, "backchannel", 1}, {admin, "user", 0},
		{partner, "user", 0}, {partner, "backchannel", 0}, {partner, "admin", 0}} {
		if got := logouts(c.f, c.kind); got != c.want {
			t.Errorf("after shop's logout: %s %s logouts %v, want %v", c.f.Name, c.kind, got, c.want)
		}
	}
	if got := keycloakSessions(partners, partnerUser); len(got) != 1 {
		t.Errorf("Keycloak sessions in %s after shop's logout: %v, want 1", partnerRealm, got)
	}
	if name := open("11-admin-ended-by-backchannel", admin); name != "" {
		t.Fatalf("admin after the SSO session ended shows %q", name)
	}
	if name := open("12-partner-still-signed-in", partner); name != paulaName {
		t.Fatalf("partner after shop's logout shows %q, want %q", name, paulaName)
	}
	wantAPI("13-partner-api", callAPI("13-partner-api"), paulaID, partner)

	// 5. Sign in to shop (the form again: the SSO session is gone) and to
	// admin (single sign-on), then an administrator ends alice's sessions
	// in the first realm at Keycloak: its back-channel logouts end shop's
	// and admin's sessions and no partner session.
	open("14-shop-again", shop)
	if name := loginWithForm("15-shop-again", ssoRealm, userName, userPassword); name != aliceName {
		t.Fatalf("shop shows %q, want %q", name, aliceName)
	}
	open("16-admin-again", admin)
	if name := loginSSO("17-admin-sso-again"); name != aliceName {
		t.Fatalf("admin shows %q, want %q", name, aliceName)
	}
	if name := open("18-shop-signed-in-again", shop); name != aliceName {
		t.Fatalf("shop shows %q, want %q", name, aliceName)
	}
	shopCookie, adminCookie = cookie(shop), cookie(admin)
	if api(shop, shop.CookieName(), shopCookie) != 200 || api(admin, admin.CookieName(), adminCookie) != 200 {
		t.Fatal("the second sessions of shop and admin do not open the API")
	}
	if err := sso.LogoutUser(ctx, userName); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		f     harness.Frontend
		value string
	}{{shop, shopCookie}, {admin, adminCookie}} {
		if code := untilAPI(t, func() int { return api(f.f, f.f.CookieName(), f.value) }, http.StatusUnauthorized); code != http.StatusUnauthorized {
			t.Fatalf("%s's API after the administrator's logout: %d", f.f.Name, code)
		}
	}
	if code := api(partner, partner.CookieName(), partnerCookie); code != 200 {
		t.Fatalf("partner's API after the administrator's logout in %s: %d", ssoRealm, code)
	}
	for _, c := range []struct {
		f    harness.Frontend
		kind string
		want float64
	}{{shop, "backchannel", 1}, {admin, "backchannel", 2}, {partner, "backchannel", 0}, {partner, "user", 0}} {
		if got := logouts(c.f, c.kind); got != c.want {
			t.Errorf("after the administrator's logout: %s %s logouts %v, want %v", c.f.Name, c.kind, got, c.want)
		}
	}
	if got := keycloakSessions(partners, partnerUser); len(got) != 1 {
		t.Errorf("Keycloak sessions in %s after the administrator's logout in %s: %v, want 1", partnerRealm, ssoRealm, got)
	}
	// The pages see it too: shop's open page gets a 401 from its next call,
	// admin's page is anonymous, partner's still signed in.
	signedOutByAPI("19-shop-api-after-admin-logout")
	if name := open("20-admin-after-admin-logout", admin); name != "" {
		t.Fatalf("admin after the administrator's logout shows %q", name)
	}
	if name := open("21-partner-after-admin-logout", partner); name != paulaName {
		t.Fatalf("partner after the administrator's logout shows %q, want %q", name, paulaName)
	}
	wantAPI("22-partner-api", callAPI("22-partner-api"), paulaID, partner)
	t.Logf("timings: Keycloak start %v, stack start %v, browser steps %v, total %v",
		kcStarted.Sub(start).Round(time.Second), stepsStart.Sub(kcStarted).Round(time.Second),
		time.Since(stepsStart).Round(time.Second), time.Since(start).Round(time.Second))
}

// documentLog records the browser's page loads at Keycloak, to tell a
// login form from single sign-on: Keycloak answers the authorization
// request with a page (200) to ask for the password, and with a redirect
// when its SSO session already knows the user.
type documentLog struct {
	mu     sync.Mutex
	origin string
	sent   int      // page requests to Keycloak, redirects included
	pages  []string // pages Keycloak answered with content (status URL)
}

func recordDocuments(ctx context.Context, keycloakURL string) *documentLog {
	d := &documentLog{origin: keycloakURL + "/"}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if e.Type == network.ResourceTypeDocument && strings.HasPrefix(e.Request.URL, d.origin) {
				d.mu.Lock()
				d.sent++
				d.mu.Unlock()
			}
		case *network.EventResponseReceived:
			if e.Type == network.ResourceTypeDocument && strings.HasPrefix(e.Response.URL, d.origin) {
				d.mu.Lock()
				d.pages = append(d.pages, fmt.Sprintf("%d %s", e.Response.Status, e.Response.URL))
				d.mu.Unlock()
			}
		}
	})
	return d
}

func (d *documentLog) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sent, d.pages = 0, nil
}

// visits counts the page requests to Keycloak since the last reset.
func (d *documentLog) visits() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sent
}

// forms lists the pages Keycloak showed since the last reset.
func (d *documentLog) forms() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.pages...)
}

// browserCookie is the value of the cookie name the browser holds for url.
func browserCookie(t *testing.T, ctx context.Context, url, name string) string {
	t.Helper()
	var cookies []*network.Cookie
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().WithURLs([]string{url}).Do(ctx)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("the browser holds no %s cookie for %s", name, url)
	return ""
}

// apiAs calls url through Envoy with one session cookie.
func apiAs(t *testing.T, url, cookieName, value string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Cookie", cookieName+"="+value)
	req.Header.Set("X-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("call %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// untilAPI repeats call for up to 5 s until it answers want, in case
// Keycloak delivers a back-channel logout after it has answered the logout
// that caused it.
func untilAPI(t *testing.T, call func() int, want int) int {
	t.Helper()
	start := time.Now()
	for tries := 1; ; tries++ {
		code := call()
		if code == want || time.Since(start) > 5*time.Second {
			if tries > 1 {
				t.Logf("the API answered %d after %d tries in %v", code, tries, time.Since(start).Round(time.Millisecond))
			}
			return code
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricSum sums one series over the replicas.
func metricSum(t *testing.T, s *harness.Stack, series string) float64 {
	t.Helper()
	var sum float64
	for _, b := range s.BFFs {
		v, err := b.Metric(series)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}
