package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// The realm file's client and user.
const (
	clientID     = "envoy-bff"
	clientSecret = "envoy-bff-e2e-secret"
	userName     = "alice"
	userPassword = "alice-e2e-password"
	// accessTokenLifespan is the realm's accessTokenLifespan.
	accessTokenLifespan = 20 * time.Second
)

// TestKeycloakChromium walks what a person does, in headless Chromium,
// against real Keycloak, Envoy, Redis and two envoy-bff replicas: log in on
// Keycloak's form, see the name, call the API, outlive the access token,
// log out (Keycloak's session ends too), log in again, and be logged out by
// an administrator at Keycloak (back-channel logout). Screenshots of each
// step go to test/out/e2e.
func TestKeycloakChromium(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	shots := screenshots(t)
	// Keycloak's realm names the app's URL, so its port is held from now on.
	listen, err := harness.ReservePort()
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Release()
	appURL := "http://127.0.0.1:" + strconv.Itoa(listen.Port)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	// The browser and Keycloak's back-channel both reach the app at appURL here.
	kc := startRealms(t, ctx, dir, []string{"${APP_URL}", appURL, "${BACKCHANNEL_URL}", appURL}, "realm.json")
	s, err := harness.Start(ctx, harness.Options{
		Dir: dir, Replicas: 2, Redis: true, Listen: listen,
		Issuer: kc.Issuer(), ClientID: clientID, ClientSecret: clientSecret,
		BFFConfig: func(doc map[string]any) {
			doc["oidc"].(map[string]any)["scopes"] = []string{"openid", "profile", "email"}
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
	bodies := recordBodies(browser, appURL)
	run := steps(t, browser, shots, "", 60*time.Second)
	login := func(step string) {
		t.Helper()
		run(step+"-keycloak-form", chromedp.Click("#login", chromedp.ByQuery), chromedp.WaitVisible("#username", chromedp.ByQuery))
		var name string
		run(step+"-signed-in",
			chromedp.SendKeys("#username", userName, chromedp.ByQuery),
			chromedp.SendKeys("#password", userPassword, chromedp.ByQuery),
			chromedp.Click("#kc-login", chromedp.ByQuery),
			chromedp.WaitVisible("#signed-in", chromedp.ByQuery),
			chromedp.Text("#user-name", &name, chromedp.ByQuery))
		if name != "Alice Liddell" {
			t.Fatalf("%s: the page shows %q, want the user's name", step, name)
		}
	}
	callAPI := func(step string) string {
		t.Helper()
		var status string
		run(step, chromedp.Click("#call-api", chromedp.ByQuery),
			chromedp.Poll(`document.querySelector('#status').textContent.startsWith('API answered')`, nil, chromedp.WithPollingTimeout(20*time.Second)),
			chromedp.Text("#status", &status, chromedp.ByQuery))
		return status
	}

	run("01-anonymous", chromedp.Navigate(appURL+"/"), chromedp.WaitVisible("#login", chromedp.ByQuery))
	login("02")
	if got := callAPI("03-api"); !strings.HasPrefix(got, "API answered 200") {
		t.Fatalf("API call after login: %q", got)
	}
	cookie := sessionCookie(t, browser)

	// Outlive the access token: the next call needs a refresh.
	refreshed := refreshes(t, s)
	time.Sleep(accessTokenLifespan + 2*time.Second)
	if got := callAPI("04-api-after-token-expiry"); !strings.HasPrefix(got, "API answered 200") {
		t.Fatalf("API call after the access token expired: %q", got)
	}
	if n := refreshes(t, s); n <= refreshed {
		t.Fatalf("no refresh happened (refreshed %v → %v)", refreshed, n)
	}

	// Nothing the browser holds or received carries a token (T11).
	rec, err := s.ReadSession(ctx, cookie.Value)
	if err != nil {
		t.Fatalf("read the stored session: %v", err)
	}
	var page string
	run("05-page", chromedp.Evaluate(`document.documentElement.outerHTML + JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie`, &page))
	for name, tok := range map[string]string{"access": rec.GetAccessToken(), "refresh": rec.GetRefreshToken(), "id": rec.GetIdToken()} {
		if tok == "" {
			t.Fatalf("the session holds no %s token", name)
		}
		if strings.Contains(page, tok) || strings.Contains(bodies.all(), tok) {
			t.Errorf("the %s token reached the browser", name)
		}
	}
	checkCookie(t, cookie)

	// Log out: the session ends here and at Keycloak.
	run("06-logged-out", chromedp.Click("#logout", chromedp.ByQuery), chromedp.WaitVisible("#login", chromedp.ByQuery))
	if n, err := kc.UserSessions(ctx, userName); err != nil || n != 0 {
		t.Fatalf("Keycloak sessions after logout: %d %v", n, err)
	}
	if code := apiWithCookie(t, appURL, cookie.Value); code != http.StatusUnauthorized {
		t.Fatalf("API with the old cookie after logout: %d", code)
	}

	// Log in again, then an administrator ends the session at Keycloak:
	// its back-channel logout reaches envoy-bff and the next call is a 401.
	login("07")
	if got := callAPI("08-api"); !strings.HasPrefix(got, "API answered 200") {
		t.Fatalf("API call after the second login: %q", got)
	}
	second := sessionCookie(t, browser)
	if err := kc.LogoutUser(ctx, userName); err != nil {
		t.Fatal(err)
	}
	if code := apiWithCookie(t, appURL, second.Value); code != http.StatusUnauthorized {
		t.Fatalf("API after Keycloak's back-channel logout: %d", code)
	}
	// The page's own call gets the 401 and shows the signed-out view.
	var status string
	run("09-api-after-admin-logout", chromedp.Click("#call-api", chromedp.ByQuery),
		chromedp.WaitVisible("#login", chromedp.ByQuery), chromedp.Text("#status", &status, chromedp.ByQuery))
	if !strings.HasPrefix(status, "401") {
		t.Fatalf("the page's API call after the admin logout: %q", status)
	}
}

// realms reads the realm files names, with each placeholder of vars
// (placeholder, value pairs such as "${APP_URL}", url) replaced.
func realms(t *testing.T, vars []string, names ...string) [][]byte {
	t.Helper()
	r := strings.NewReplacer(vars...)
	out := make([][]byte, 0, len(names))
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, []byte(r.Replace(string(raw))))
	}
	return out
}

// startRealms starts Keycloak with realms(t, vars, names...) and stops it
// when the test ends.
func startRealms(t *testing.T, ctx context.Context, dir string, vars []string, names ...string) *harness.Keycloak {
	t.Helper()
	kc, err := harness.StartKeycloak(ctx, dir, realms(t, vars, names...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Stop(20 * time.Second) })
	return kc
}

// steps is a test's browser step runner: each step's actions run for at
// most timeout and are followed by a screenshot prefix+step; an error
// fails the test after a screenshot prefix+"failed-"+step.
func steps(t *testing.T, browser context.Context, shots shotDir, prefix string, timeout time.Duration) func(step string, actions ...chromedp.Action) {
	return func(step string, actions ...chromedp.Action) {
		t.Helper()
		sctx, cancel := context.WithTimeout(browser, timeout)
		defer cancel()
		if err := chromedp.Run(sctx, actions...); err != nil {
			shots.take(browser, prefix+"failed-"+step)
			t.Fatalf("%s: %v", step, err)
		}
		shots.take(browser, prefix+step)
	}
}

// chromiumPath is the browser every end-to-end test drives; a missing one
// fails the test at once, before Keycloak starts.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath(envOr("CHROMIUM_BIN", "chromium"))
	if err != nil {
		t.Fatalf("chromium not found (run `make bootstrap`): %v", err)
	}
	return p
}

// startChromium runs headless Chromium (the flags the project uses) until
// the test ends and returns the browser's context.
func startChromium(t *testing.T, ctx context.Context, path string, opts ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Flag("headless", true), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.Flag("disable-background-networking", true),
		chromedp.WindowSize(1200, 900)), opts...)...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	// The first Run starts the browser and binds it to the context it gets:
	// that must be this long-lived one, not a step's.
	if err := chromedp.Run(browser, network.Enable()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return browser
}

// trustCerts makes Chromium accept these test certificates (by their
// public keys) and no other untrusted one.
func trustCerts(certs ...harness.Cert) chromedp.ExecAllocatorOption {
	hashes := make([]string, len(certs))
	for i, c := range certs {
		hashes[i] = c.SPKIHash()
	}
	return chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(hashes, ","))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// shotDir saves screenshots under test/out/e2e (not committed).
type shotDir string

func screenshots(t *testing.T) shotDir {
	t.Helper()
	dir := filepath.Join("..", "out", "e2e")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return shotDir(dir)
}

func (d shotDir) take(ctx context.Context, step string) {
	var png []byte
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, chromedp.FullScreenshot(&png, 80)); err == nil {
		_ = os.WriteFile(filepath.Join(string(d), step+".jpg"), png, 0o644)
	}
}

// bodyLog keeps every response body the browser received from the app.
type bodyLog struct {
	mu     sync.Mutex
	bodies []string
}

func (b *bodyLog) all() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.bodies, "\n")
}

func recordBodies(ctx context.Context, appURL string) *bodyLog {
	log := &bodyLog{}
	var mu sync.Mutex
	fromApp := map[network.RequestID]bool{}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *network.EventResponseReceived:
			if strings.HasPrefix(e.Response.URL, appURL) {
				mu.Lock()
				fromApp[e.RequestID] = true
				mu.Unlock()
				var headers strings.Builder
				for k, v := range e.Response.Headers {
					fmt.Fprintf(&headers, "%s: %v\n", k, v)
				}
				log.mu.Lock()
				log.bodies = append(log.bodies, headers.String())
				log.mu.Unlock()
			}
		case *network.EventLoadingFinished:
			mu.Lock()
			ok := fromApp[e.RequestID]
			mu.Unlock()
			if !ok {
				return
			}
			go func() {
				c := chromedp.FromContext(ctx)
				if c == nil || c.Target == nil {
					return
				}
				body, err := network.GetResponseBody(e.RequestID).Do(cdp.WithExecutor(ctx, c.Target))
				if err == nil {
					log.mu.Lock()
					log.bodies = append(log.bodies, string(body))
					log.mu.Unlock()
				}
			}()
		}
	})
	return log
}

// sessionCookie is the session cookie as the browser stored it.
func sessionCookie(t *testing.T, ctx context.Context) *network.Cookie {
	t.Helper()
	var cookies []*network.Cookie
	if err := chromedp.Run(ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		cookies, err = network.GetCookies().Do(ctx)
		return err
	})); err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		if c.Name == "__Host-bff" {
			return c
		}
	}
	t.Fatalf("the browser stored no __Host-bff cookie; it has %d cookies", len(cookies))
	return nil
}

// checkCookie checks the attributes the browser actually stored (T10).
func checkCookie(t *testing.T, c *network.Cookie) {
	t.Helper()
	if !c.HTTPOnly || !c.Secure || c.Path != "/" || c.SameSite != network.CookieSameSiteLax || c.Domain != "127.0.0.1" || !c.Session {
		t.Errorf("session cookie as stored: httpOnly=%v secure=%v path=%q sameSite=%q domain=%q session=%v",
			c.HTTPOnly, c.Secure, c.Path, c.SameSite, c.Domain, c.Session)
	}
	if _, err := session.ParseID(c.Value); err != nil {
		t.Errorf("the cookie value is not a session ID: %v", err)
	}
}

// refreshes sums the replicas' session refreshes.
func refreshes(t *testing.T, s *harness.Stack) float64 {
	t.Helper()
	var sum float64
	for _, b := range s.BFFs {
		v, err := b.Metric(`envoy_bff_token_refreshes_total{frontend="default",kind="session",outcome="refreshed"}`)
		if err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	return sum
}

// apiWithCookie calls the API through Envoy with a session cookie value.
func apiWithCookie(t *testing.T, appURL, value string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, appURL+"/api/whoami", nil)
	req.Header.Set("Cookie", "__Host-bff="+value)
	req.Header.Set("X-CSRF", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(errors.Join(errors.New("call the API"), err))
	}
	resp.Body.Close()
	return resp.StatusCode
}
