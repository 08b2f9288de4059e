package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/envoy-bff/envoy-bff/test/harness"
	"github.com/envoy-bff/envoy-bff/test/sampleapi"
)

// The realm of TestKeycloakTokensAndStepUp (tokens-realm.json).
const (
	tokensRealm = "envoy-bff-tokens"
	// tokensLifespan is the realm's accessTokenLifespan: the session's
	// tokens and the exchanged ones live this long.
	tokensLifespan = 15 * time.Second
)

// TestKeycloakTokensAndStepUp proves token profiles and step-up against
// real Keycloak 26.5, Envoy, Redis and three envoy-bff replicas, in
// headless Chromium (T74, T75). Screenshots go to test/out/e2e (tk-*.jpg).
//
// The realm (tokens-realm.json): envoy-bff's client has standard token
// exchange (V2) enabled, an audience mapper adding itself to its access
// tokens (a subject token must name the requester in aud), and two optional
// client scopes, orders and reports, each with an audience mapper for the
// client orders-api or reports-api (bearer-only). A login asks for neither,
// so the session's token is for envoy-bff only; envoy-bff's profiles
// exchange it with audience=orders-api&scope=orders (reports likewise), and
// Keycloak issues a token whose aud is that API alone (without the scope
// Keycloak answers "Requested audience not available"). Its browser flow
// has levels of assurance (acr.loa.map silver=1, gold=2): the SSO cookie,
// else level 1 (password) and level 2 (a TOTP code, the user's OTP
// credential imported with a secret this test makes up); the client's
// default ACR is silver, so a plain login asks the password only.
//
// 1. Token exchange: log in, call the SPA's API, then from the page
// /orders/whoami and /reports/whoami: each sample API verifies its own aud
// and sees azp envoy-bff; each rejects the other's token (and the
// session's). For two token lifetimes the page keeps calling both APIs
// through the three replicas: no call fails, and each API saw exactly as
// many tokens as Keycloak recorded exchanges for its audience (its
// TOKEN_EXCHANGE events) — one exchange per expiry per profile, none
// duplicated across replicas — and as envoy-bff counted.
//
// 2. Step-up: /gold/ requires acr gold (a path rule). The silver session
// gets 401 step_up_required with RFC 9470's WWW-Authenticate and a
// loginUrl; the page follows it (with returnUrl), Keycloak asks only for
// the code, and afterwards /gold/ passes, /bff/user shows acr gold, and the
// session cookie holds a new session ID (the old one is gone).
func TestKeycloakTokensAndStepUp(t *testing.T) {
	chromium := chromiumPath(t)
	start := time.Now()
	dir := t.TempDir()
	shots := screenshots(t)
	listen, err := harness.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	appURL := "http://127.0.0.1:" + strconv.Itoa(listen.Port)
	var seed [20]byte
	if _, err := rand.Read(seed[:]); err != nil {
		t.Fatal(err)
	}
	totpSecret := hex.EncodeToString(seed[:]) // Keycloak keys HMAC with the value's bytes
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	kc := startRealms(t, ctx, dir, []string{"${APP_URL}", appURL, "${TOTP_SECRET}", totpSecret}, "tokens-realm.json")
	kcStarted := time.Now()

	s, err := harness.Start(ctx, harness.Options{
		Dir: dir, Replicas: 3, Redis: true, Listen: listen,
		Issuer: kc.Issuer(), ClientID: clientID, ClientSecret: clientSecret,
		APIs:         map[string]string{"orders": "orders-api", "reports": "reports-api", "gold": ""},
		PathRuleAPIs: []string{"gold"},
		BFFConfig: func(doc map[string]any) {
			doc["oidc"].(map[string]any)["scopes"] = []string{"openid", "profile", "email"}
			doc["tokens"] = map[string]any{
				"orders":  map[string]any{"type": "exchange", "audience": "orders-api", "scopes": []string{"orders"}},
				"reports": map[string]any{"type": "exchange", "audience": "reports-api", "scopes": []string{"reports"}},
			}
			doc["authz"] = map[string]any{"path_rules": []any{
				map[string]any{"prefix": "/gold/", "policy": "user", "require": map[string]any{"acr": []string{"gold"}}},
			}}
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
	aliceID, err := kc.UserID(ctx, userName)
	if err != nil {
		t.Fatal(err)
	}
	stackStarted := time.Now()

	browser := startChromium(t, ctx, chromium)
	docs := recordDocuments(browser, kc.URL)
	run := steps(t, browser, shots, "tk-", 30*time.Second)
	// fetchAll has the page fetch paths at once, as the SPA does (its
	// cookie, X-CSRF), shows the answers and returns them.
	fetchAll := func(step string, paths ...string) []pageAnswer {
		t.Helper()
		var out []pageAnswer
		run(step, evalAsync(fmt.Sprintf(`(async () => {
			const answers = await Promise.all(%s.map(fetchAnswer));
			document.getElementById('api-result').textContent = JSON.stringify(answers, null, 1);
			document.getElementById('status').textContent = answers.map(a => a.path + ' ' + a.status).join(', ');
			return answers;
		})()`, jsonString(t, paths)), &out))
		return out
	}

	// 1. Log in (password only: silver), call the SPA's API.
	run("01-anonymous", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#login", chromedp.ByQuery),
		chromedp.Evaluate(fetchAnswerJS, nil))
	docs.reset()
	run("02-keycloak-password", chromedp.Click("#login", chromedp.ByQuery), chromedp.WaitVisible("#password", chromedp.ByQuery))
	var name string
	run("03-signed-in",
		chromedp.SendKeys("#username", userName, chromedp.ByQuery),
		chromedp.SendKeys("#password", userPassword, chromedp.ByQuery),
		chromedp.Click("#kc-login", chromedp.ByQuery),
		chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
		chromedp.Text("#user-name", &name, chromedp.ByQuery),
		chromedp.Evaluate(fetchAnswerJS, nil))
	if name != aliceName {
		t.Fatalf("the page shows %q, want %q", name, aliceName)
	}
	if forms := docs.forms(); len(forms) != 1 {
		t.Fatalf("Keycloak served %v for the first login, want its one password form", forms)
	}
	var status string
	run("04-api", chromedp.Click("#call-api", chromedp.ByQuery),
		chromedp.Poll(`document.querySelector('#status').textContent.startsWith('API answered')`, nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.Text("#status", &status, chromedp.ByQuery))
	if !strings.HasPrefix(status, "API answered 200") {
		t.Fatalf("the SPA's API call: %q", status)
	}
	firstCookie := sessionCookie(t, browser).Value
	user := fetchAll("05-user-silver", "/bff/user")[0]
	if user.Status != 200 || user.Body["acr"] != "silver" {
		t.Fatalf("/bff/user after the password login: %d acr %v, want 200 silver", user.Status, user.Body["acr"])
	}

	// 2. Each API its own token: aud that API alone, azp envoy-bff.
	tokensSeen := map[string]map[string]bool{"orders": {}, "reports": {}}
	calls := 0
	wantOwn := func(step string, answers []pageAnswer) {
		t.Helper()
		for _, a := range answers {
			calls++
			api := strings.Split(a.Path, "/")[1]
			var w sampleapi.Whoami
			if b, err := json.Marshal(a.Body); err != nil || json.Unmarshal(b, &w) != nil {
				t.Fatalf("%s: %s answered %d %v", step, a.Path, a.Status, a.Body)
			}
			if a.Status != 200 || w.Sub != aliceID || w.AuthorizedParty != clientID || !slices.Equal(w.Aud, []string{api + "-api"}) || w.APIAudience != api+"-api" {
				t.Fatalf("%s: %s answered %d sub %q azp %q aud %v (API for %q, token error %q), want 200 for %s with aud [%s-api] azp %s",
					step, a.Path, a.Status, w.Sub, w.AuthorizedParty, w.Aud, w.APIAudience, w.TokenError, aliceID, api, clientID)
			}
			tokensSeen[api][w.TokenExpiresAt] = true
		}
	}
	wantOwn("06-orders-and-reports", fetchAll("06-orders-and-reports", "/orders/whoami", "/reports/whoami"))

	// Each API rejects the other's token, and the session's own (T74).
	cached := map[string]string{}
	for _, profile := range []string{"orders", "reports"} {
		tok, err := s.ReadDerivedToken(ctx, firstCookie, profile)
		if err != nil {
			t.Fatalf("read the cached %s token: %v", profile, err)
		}
		cached[profile] = tok.GetAccessToken()
	}
	rec, err := s.ReadSession(ctx, firstCookie)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		api, token, what string
		want             int
	}{
		{"orders", cached["orders"], "its own token", 200},
		{"reports", cached["reports"], "its own token", 200},
		{"orders", cached["reports"], "reports' token", 401},
		{"reports", cached["orders"], "orders' token", 401},
		{"orders", rec.GetAccessToken(), "the session's token", 401},
		{"reports", rec.GetAccessToken(), "the session's token", 401},
	} {
		code, w := callAPIDirect(t, s.APIs[c.api], c.token)
		if code != c.want {
			t.Errorf("the %s API with %s: %d (aud %v, %s), want %d", c.api, c.what, code, w.Aud, w.TokenError, c.want)
		}
		if c.want == 401 && len(w.Aud) == 0 {
			t.Errorf("the %s API refused %s without reading its aud: %s", c.api, c.what, w.TokenError)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// 3. Outlive the tokens: two lifetimes of calls to both APIs, four at
	// a time, through the three replicas.
	sessionRefreshes := refreshes(t, s)
	window := 2*tokensLifespan + 3*time.Second
	var loop loopResult
	runLong := steps(t, browser, shots, "tk-", window+30*time.Second)
	runLong("07-two-token-lifetimes", evalAsync(fmt.Sprintf(`(async () => {
		const until = Date.now() + %d, answers = [];
		while (Date.now() < until) {
			answers.push(...await Promise.all(['/orders/whoami', '/reports/whoami', '/orders/whoami', '/reports/whoami'].map(fetchAnswer)));
			await new Promise(r => setTimeout(r, 250));
		}
		const failed = answers.filter(a => a.status !== 200);
		document.getElementById('status').textContent = answers.length + ' calls, ' + failed.length + ' failed';
		document.getElementById('api-result').textContent = JSON.stringify(answers.slice(-2), null, 1);
		return {answers: answers.map(a => ({path: a.path, status: a.status, body: a.body})), failed: failed.length};
	})()`, window.Milliseconds()), &loop))
	if loop.Failed != 0 {
		t.Fatalf("%d of %d calls failed", loop.Failed, len(loop.Answers))
	}
	wantOwn("07-two-token-lifetimes", loop.Answers)
	exchanged := metricSum(t, s, `envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome="refreshed"}`)
	events, err := kc.Events(ctx, "TOKEN_EXCHANGE", "TOKEN_EXCHANGE_ERROR")
	if err != nil {
		t.Fatal(err)
	}
	atKeycloak := map[string]int{}
	for _, e := range events {
		if e.Type != "TOKEN_EXCHANGE" || e.ClientID != clientID || e.UserID != aliceID {
			t.Errorf("Keycloak recorded %s by %s for %s: %v %v", e.Type, e.ClientID, e.UserID, e.Error, e.Details)
			continue
		}
		atKeycloak[e.Details["audience"]]++
	}
	perReplica := make([]string, len(s.BFFs))
	for i, b := range s.BFFs {
		ex, err := b.Metric(`envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome="refreshed"}`)
		if err != nil {
			t.Fatal(err)
		}
		ok, err := b.Metric(`envoy_bff_checks_total{answer="ok",frontend="default",policy="user"}`)
		if err != nil {
			t.Fatal(err)
		}
		if ok == 0 {
			t.Errorf("%s answered no check", b.Name)
		}
		perReplica[i] = fmt.Sprintf("%s: %v checks ok, %v exchanges", b.Name, ok, ex)
	}
	lifetimes := int(window/tokensLifespan) + 1
	for _, api := range []string{"orders", "reports"} {
		seen, recorded := len(tokensSeen[api]), atKeycloak[api+"-api"]
		// Renewed at half their lifetime (the refresh lead is capped
		// there), so a lifetime spans at most two tokens, plus the first.
		if seen != recorded || recorded < lifetimes || recorded > 2*lifetimes+1 {
			t.Errorf("%s: the API saw %d tokens, Keycloak recorded %d exchanges for %s-api; want equal, between %d and %d", api, seen, recorded, api, lifetimes, 2*lifetimes+1)
		}
	}
	if total := atKeycloak["orders-api"] + atKeycloak["reports-api"]; float64(total) != exchanged || len(events) != total {
		t.Errorf("envoy-bff counted %v exchanges, Keycloak recorded %d (%d events)", exchanged, total, len(events))
	}
	for _, outcome := range []string{"rejected", "provider_unavailable", "client_rejected", "store_error", "timeout"} {
		if n := metricSum(t, s, fmt.Sprintf(`envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome=%q}`, outcome)); n != 0 {
			t.Errorf("%v exchanges ended %s", n, outcome)
		}
	}
	// Renewals another replica had already done, or was doing.
	var others []string
	for _, outcome := range []string{"already_fresh", "lock_busy"} {
		n := metricSum(t, s, fmt.Sprintf(`envoy_bff_token_refreshes_total{frontend="default",kind="exchange",outcome=%q}`, outcome))
		others = append(others, fmt.Sprintf("%s %v", outcome, n))
	}
	if n := refreshes(t, s); n <= sessionRefreshes {
		t.Errorf("the session's own token was never refreshed in %v (%v → %v)", window, sessionRefreshes, n)
	}
	t.Logf("%d calls to orders and reports over %v: 0 failed; tokens seen: orders %d, reports %d; Keycloak exchanges %v; envoy-bff %v (%s; %s); session refreshes %v → %v",
		calls, window, len(tokensSeen["orders"]), len(tokensSeen["reports"]), atKeycloak, exchanged, strings.Join(perReplica, "; "),
		strings.Join(others, ", "), sessionRefreshes, refreshes(t, s))
	if t.Failed() {
		t.FailNow()
	}

	// 4. Step-up: /gold/ needs acr gold; the silver session gets 401
	// step_up_required and a loginUrl.
	gold := fetchAll("08-gold-step-up-required", "/gold/whoami")[0]
	loginURL, _ := gold.Body["loginUrl"].(string)
	if gold.Status != 401 || gold.Body["error"] != "step_up_required" || loginURL != "/bff/login?acr_values=gold" ||
		!strings.Contains(gold.WWWAuthenticate, `error="insufficient_user_authentication"`) || !strings.Contains(gold.WWWAuthenticate, `acr_values="gold"`) {
		t.Fatalf("/gold/ with a silver session: %d %v, WWW-Authenticate %q", gold.Status, gold.Body, gold.WWWAuthenticate)
	}
	if n := s.APIs["gold"].Stats().Served; n != 0 {
		t.Fatalf("the gold API served %d calls before the step-up", n)
	}
	// The page follows loginUrl back to itself; Keycloak's SSO session
	// has level 1, so it asks for the code only.
	docs.reset()
	var at string
	var passwordFields int
	run("09-keycloak-otp",
		chromedp.Evaluate(fmt.Sprintf(`location.assign(%s + '&returnUrl=' + encodeURIComponent('/'))`, jsonString(t, loginURL)), nil),
		chromedp.WaitVisible("#otp", chromedp.ByQuery), chromedp.Location(&at),
		chromedp.Evaluate(`document.querySelectorAll('#password, #username').length`, &passwordFields))
	if !strings.HasPrefix(at, kc.Issuer()+"/") {
		t.Fatalf("the step-up form is at %s, want realm %s", at, tokensRealm)
	}
	if passwordFields != 0 {
		t.Fatalf("Keycloak asked for the password again at the step-up")
	}
	run("10-stepped-up",
		chromedp.SendKeys("#otp", totpCode(totpSecret, time.Now()), chromedp.ByQuery),
		chromedp.Click("#kc-login", chromedp.ByQuery),
		chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
		chromedp.Evaluate(fetchAnswerJS, nil))
	if forms := docs.forms(); len(forms) != 1 {
		t.Fatalf("Keycloak served %v for the step-up, want its one code form", forms)
	}
	after := fetchAll("11-gold-passes", "/gold/whoami", "/bff/user", "/orders/whoami", "/reports/whoami")
	if after[0].Status != 200 || after[0].Body["sub"] != aliceID {
		t.Fatalf("/gold/ after the step-up: %d %v", after[0].Status, after[0].Body)
	}
	if after[1].Status != 200 || after[1].Body["acr"] != "gold" {
		t.Fatalf("/bff/user after the step-up: %d acr %v, want gold", after[1].Status, after[1].Body["acr"])
	}
	wantOwn("11-gold-passes", after[2:])
	newCookie := sessionCookie(t, browser)
	if newCookie.Value == firstCookie {
		t.Fatal("the step-up login kept the session ID")
	}
	checkCookie(t, newCookie)
	if code := apiWithCookie(t, appURL, firstCookie); code != http.StatusUnauthorized {
		t.Fatalf("the API with the pre-step-up cookie: %d, want 401 (that session is over)", code)
	}
	if _, err := s.ReadDerivedToken(ctx, firstCookie, "orders"); err == nil {
		t.Error("the old session's exchanged token outlived it")
	}
	if n := kc.Tail(1 << 20); strings.Contains(n, "ERROR") {
		t.Logf("Keycloak logged errors:\n%s", grepLines(n, "ERROR"))
	}
	t.Logf("timings: Keycloak start %v, stack start %v, browser steps %v, total %v",
		kcStarted.Sub(start).Round(time.Second), stackStarted.Sub(kcStarted).Round(time.Second),
		time.Since(stackStarted).Round(time.Second), time.Since(start).Round(time.Second))
}

// fetchAnswerJS defines fetchAnswer(path) in the page: the SPA's own way
// to call (same-origin cookie, X-CSRF), answering status, WWW-Authenticate
// and the JSON body.
const fetchAnswerJS = `window.fetchAnswer = async (path) => {
	const res = await fetch(path, {method: 'GET', headers: {'X-CSRF': '1', 'Accept': 'application/json'}, credentials: 'same-origin', cache: 'no-store'});
	let body = null;
	try { body = await res.json(); } catch (e) { /* not JSON */ }
	return {path, status: res.status, www: res.headers.get('WWW-Authenticate') || '', body};
}; true`

// pageAnswer is one fetchAnswer result.
type pageAnswer struct {
	Path            string         `json:"path"`
	Status          int            `json:"status"`
	WWWAuthenticate string         `json:"www"`
	Body            map[string]any `json:"body"`
}

// loopResult is the page's calls over the token lifetimes.
type loopResult struct {
	Answers []pageAnswer `json:"answers"`
	Failed  int          `json:"failed"`
}

// evalAsync evaluates a promise-valued expression and stores its result.
func evalAsync(expr string, out any) chromedp.Action {
	return chromedp.Evaluate(expr, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// callAPIDirect calls a sample API's handler in this process with a bearer token.
func callAPIDirect(t *testing.T, api *sampleapi.API, token string) (int, sampleapi.Whoami) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rr := httptest.NewRecorder()
	api.Handler().ServeHTTP(rr, req)
	var w sampleapi.Whoami
	if err := json.Unmarshal(rr.Body.Bytes(), &w); err != nil {
		t.Fatalf("the API answered %d %q", rr.Code, rr.Body.String())
	}
	return rr.Code, w
}

// totpCode is RFC 6238's code (HMAC-SHA1, 30 s, 6 digits) for secret's
// bytes at now, as Keycloak's OTP form checks it.
func totpCode(secret string, now time.Time) string {
	m := hmac.New(sha1.New, []byte(secret))
	var counter [8]byte
	binary.BigEndian.PutUint64(counter[:], uint64(now.Unix()/30))
	m.Write(counter[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:off+4])&0x7fffffff)%1_000_000)
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
