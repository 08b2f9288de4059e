package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/envoy-bff/envoy-bff/test/harness"
	"github.com/envoy-bff/envoy-bff/test/sampleapi"
)

// spaIdleTimeout is the session's idle timeout in this test: under the
// page's two-minute warning, so the warning shows at once.
const spaIdleTimeout = 100 * time.Second

// TestKeycloakSPA walks an SPA's whole session life in headless Chromium
// against real Keycloak, Envoy, Redis and envoy-bff:
//   - a first visit tries a silent login (prompt=none); Keycloak answers
//     login_required without a page, and the app shows its Log in button;
//   - after a login on Keycloak's form, the page shows when the session
//     ends (reading it does not extend it) and extends it on request;
//   - its Server-Sent Events feed and WebSocket reach the API through the
//     BFF with the user's token; a UserInfo-only claim is in /bff/user;
//   - a page on another origin of the same site (so the browser sends the
//     session cookie) can neither open the realtime routes (T76) nor read
//     the API or /bff/user; a page on an allowed origin can (CORS);
//   - with the BFF's cookie gone, a reload logs in silently (Keycloak's
//     single sign-on), without a form.
func TestKeycloakSPA(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	shots := screenshots(t)
	listen, err := harness.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	appURL := "http://127.0.0.1:" + strconv.Itoa(listen.Port)
	// Two more origins of the same site (127.0.0.1, other ports): the
	// browser sends the session cookie from both, so only the origin rule
	// and CORS keep them apart.
	foreign := httptest.NewServer(originProbe(appURL))
	defer foreign.Close()
	allowed := httptest.NewServer(originProbe(appURL))
	defer allowed.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	kc := startRealms(t, ctx, dir, []string{"${APP_URL}", appURL, "${BACKCHANNEL_URL}", appURL}, "spa-realm.json")
	s, err := harness.Start(ctx, harness.Options{
		Dir: dir, Redis: true, Listen: listen, SilentLogin: true,
		Issuer: kc.Issuer(), ClientID: clientID, ClientSecret: clientSecret,
		BFFConfig: func(doc map[string]any) {
			oidc := doc["oidc"].(map[string]any)
			oidc["scopes"] = []string{"openid", "profile", "email"}
			oidc["userinfo_claims"] = true
			section(doc, "session")["idle_timeout"] = spaIdleTimeout.String()
			section(doc, "authz")["allowed_origins"] = []string{allowed.URL}
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

	browser := startChromium(t, ctx, chromium)
	docs := recordDocuments(browser, kc.URL)
	run := steps(t, browser, shots, "spa-", 60*time.Second)
	text := func(sel string) string {
		t.Helper()
		var v string
		run("read-"+strings.TrimPrefix(sel, "#"), chromedp.Text(sel, &v, chromedp.ByQuery))
		return v
	}

	// 1. The first visit tries silently; Keycloak has no session for this
	// browser and answers without showing a page.
	docs.reset()
	var at string
	run("01-silent-login-required", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#login", chromedp.ByQuery), chromedp.Location(&at))
	if status := text("#status"); !strings.Contains(status, "provider needs you to log in") {
		t.Fatalf("after the silent login the page says %q", status)
	}
	if at != appURL+"/" {
		t.Fatalf("the page is at %s; want %s/ with the marker taken off", at, appURL)
	}
	if docs.visits() == 0 || len(docs.forms()) != 0 {
		t.Fatalf("the silent login went to Keycloak %d times and saw pages %v; want a visit and no page", docs.visits(), docs.forms())
	}

	// 2. Log in on Keycloak's form.
	run("02-keycloak-form", chromedp.Click("#login", chromedp.ByQuery), chromedp.WaitVisible("#username", chromedp.ByQuery))
	run("03-signed-in",
		chromedp.SendKeys("#username", userName, chromedp.ByQuery),
		chromedp.SendKeys("#password", userPassword, chromedp.ByQuery),
		chromedp.Click("#kc-login", chromedp.ByQuery),
		chromedp.WaitVisible("#signed-in", chromedp.ByQuery))
	var user map[string]any
	run("04-user", evalAsync(`fetch('/bff/user', {headers: {'X-CSRF': '1'}}).then(r => r.json())`, &user))
	sub, _ := user["sub"].(string)
	if sub == "" || user["department"] != "research" {
		t.Fatalf("/bff/user: %v; want the sub and the UserInfo-only claim department=research", user)
	}

	// 3. The session's end: the warning shows (idle timeout under two
	// minutes); reading the status twice does not move it; the button does.
	run("05-session-warning", chromedp.WaitVisible("#session-warning", chromedp.ByQuery))
	status := func(step, method string) sessionStatus {
		t.Helper()
		var st sessionStatus
		run(step, evalAsync(`fetch('/bff/session', {method: '`+method+`', headers: {'X-CSRF': '1'}}).then(r => r.json())`, &st))
		if st.IdleExpiresAt == 0 || st.AbsoluteExpiresAt == 0 || st.AccessTokenExpiresAt == 0 {
			t.Fatalf("%s: /bff/session answered %+v", step, st)
		}
		return st
	}
	first := status("06-status", "GET")
	time.Sleep(2 * time.Second)
	second := status("07-status-again", "GET")
	if second.IdleExpiresAt != first.IdleExpiresAt {
		t.Fatalf("reading the session status moved its idle expiry from %d to %d", first.IdleExpiresAt, second.IdleExpiresAt)
	}
	run("08-extended", chromedp.Click("#extend", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#status').textContent.startsWith('Session extended')`, nil, chromedp.WithPollingTimeout(10*time.Second)))
	if third := status("09-status-after-extend", "GET"); third.IdleExpiresAt <= first.IdleExpiresAt {
		t.Fatalf("Stay signed in left the idle expiry at %d (was %d)", third.IdleExpiresAt, first.IdleExpiresAt)
	}

	// 4. Realtime through the BFF: the feed and the WebSocket report the
	// subject of the token the API received.
	run("10-sse-feed", chromedp.Poll(`document.querySelector('#feed').textContent.includes(`+strconv.Quote("sub "+sub)+`)`, nil, chromedp.WithPollingTimeout(20*time.Second)))
	run("11-websocket", chromedp.Click("#open-ws", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#ws-result').textContent === `+strconv.Quote("WebSocket: sub "+sub), nil, chromedp.WithPollingTimeout(20*time.Second)))

	// 5. Another origin of the same site: the browser sends the cookie, and
	// envoy-bff refuses the realtime handshakes before any session lookup
	// (T76); CORS keeps the API and /bff/user unreadable.
	refused := `envoy_bff_checks_total{answer="origin_not_allowed",frontend="default",policy="user"}`
	before := metricSum(t, s, refused)
	t.Logf("the page shows: %q, %q, feed %q, %q", text("#status"), text("#session-info"), text("#feed"), text("#ws-result"))
	got := probe(t, run, "12-foreign-origin", foreign.URL)
	t.Logf("a page on %s (same site, not allowed) saw %v", foreign.URL, got)
	for k, want := range map[string]string{"ws": "error", "sse": "error", "api": "error", "user": "error"} {
		if got[k] != want {
			t.Errorf("a page on %s: %s answered %q, want %q", foreign.URL, k, got[k], want)
		}
	}
	if n := metricSum(t, s, refused) - before; n < 2 {
		t.Errorf("envoy-bff refused %v realtime requests as origin_not_allowed, want the WebSocket's and the EventSource's", n)
	}

	// 6. The allowed origin (an SPA served from elsewhere) opens both and
	// reads the API and /bff/user with credentials.
	got = probe(t, run, "13-allowed-origin", allowed.URL)
	t.Logf("a page on %s (allowed) saw %v", allowed.URL, got)
	for k, want := range map[string]string{"ws": "message", "sse": "message", "api": "200", "user": "200"} {
		if !strings.HasPrefix(got[k], want) || !strings.Contains(got[k], sub) {
			t.Errorf("a page on the allowed origin %s: %s answered %q, want %s with the user's sub", allowed.URL, k, got[k], want)
		}
	}

	// The SPA on the allowed origin logs in through the BFF and comes back
	// to itself (its exact origin is listed); another origin is refused.
	run("13b-login-back-to-allowed-origin",
		chromedp.Navigate(appURL+"/bff/login?prompt=none&returnUrl="+url.QueryEscape(allowed.URL+"/after?x=1")),
		chromedp.Poll(`location.href === `+strconv.Quote(allowed.URL+"/after?x=1"), nil, chromedp.WithPollingTimeout(20*time.Second)))
	var refusedBody string
	run("13c-login-back-to-foreign-origin",
		chromedp.Navigate(appURL+"/bff/login?returnUrl="+url.QueryEscape(foreign.URL+"/")),
		chromedp.Text("body", &refusedBody, chromedp.ByQuery))
	if !strings.Contains(refusedBody, "invalid_return_url") {
		t.Errorf("a login returning to %s answered %q, want invalid_return_url", foreign.URL, refusedBody)
	}

	// 7. The BFF's cookie is gone (a new BFF session is needed); Keycloak's
	// session is not: a reload logs in silently, without a form.
	run("14-cookie-gone", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
		chromedp.Evaluate(`sessionStorage.clear()`, nil),
		chromedp.ActionFunc(func(ctx context.Context) error {
			return network.DeleteCookies(sampleapi.DefaultSessionCookieName).WithURL(appURL + "/").Do(ctx)
		}))
	docs.reset()
	run("15-silent-login-sso", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#signed-in", chromedp.ByQuery))
	if docs.visits() == 0 || len(docs.forms()) != 0 {
		t.Fatalf("the silent login went to Keycloak %d times and saw pages %v; want single sign-on without a page", docs.visits(), docs.forms())
	}
	if name := text("#user-name"); name != "Alice Liddell" {
		t.Fatalf("after the silent login the page shows %q", name)
	}
}

// section is the config document's top-level section name, added when absent.
func section(doc map[string]any, name string) map[string]any {
	m, ok := doc[name].(map[string]any)
	if !ok {
		m = map[string]any{}
		doc[name] = m
	}
	return m
}

// sessionStatus is GET /bff/session's answer.
type sessionStatus struct {
	IdleExpiresAt        int64 `json:"idleExpiresAt"`
	AbsoluteExpiresAt    int64 `json:"absoluteExpiresAt"`
	AccessTokenExpiresAt int64 `json:"accessTokenExpiresAt"`
	Now                  int64 `json:"now"`
}

// probe opens the probe page on origin and returns what each of its calls
// to the app gave: "message …" or "error" for the WebSocket and the
// EventSource, "<status> <body>" or "error" for the fetches.
func probe(t *testing.T, run func(string, ...chromedp.Action), step, origin string) map[string]string {
	t.Helper()
	var out string
	run(step, chromedp.Navigate(origin+"/"),
		chromedp.Poll(`document.title === 'done'`, nil, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.Text("#out", &out, chromedp.ByQuery))
	got := map[string]string{}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%s: the probe page wrote %q: %v", step, out, err)
	}
	return got
}

// originProbe serves a page that, from its own origin, opens the app's
// WebSocket and EventSource and fetches its API and /bff/user with
// credentials and the anti-forgery header, then writes the outcomes as
// JSON into #out and sets the title to "done".
func originProbe(appURL string) http.Handler {
	page := fmt.Sprintf(`<!doctype html><html><head><title>probe</title></head><body><pre id="out"></pre><script>
var app = %q, out = {}, left = 4;
function fin(k, v) {
  if (k in out) { return; }
  out[k] = v;
  if (--left === 0) { document.getElementById('out').textContent = JSON.stringify(out); document.title = 'done'; }
}
try {
  var ws = new WebSocket(app.replace('http', 'ws') + '/api/ws');
  ws.onmessage = function (e) { fin('ws', 'message ' + e.data); ws.close(); };
  ws.onerror = function () { fin('ws', 'error'); };
  ws.onclose = function () { fin('ws', 'error'); };
} catch (e) { fin('ws', 'error'); }
var es = new EventSource(app + '/api/events', { withCredentials: true });
var got = function (e) { fin('sse', 'message ' + e.data); es.close(); };
es.addEventListener('hello', got);
es.onmessage = got;
es.onerror = function () { es.close(); fin('sse', 'error'); };
['api/whoami', 'bff/user'].forEach(function (p) {
  var k = p === 'api/whoami' ? 'api' : 'user';
  fetch(app + '/' + p, { credentials: 'include', headers: { 'X-CSRF': '1' } })
    .then(function (r) { return r.text().then(function (b) { fin(k, r.status + ' ' + b); }); }, function () { fin(k, 'error'); });
});
</script></body></html>`, appURL)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(page))
	})
}
