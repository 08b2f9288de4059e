package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestHelp: --help prints the usage, naming both apps, and exits 0.
func TestHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exited %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"Usage: envoy-bff-demo", "http://localhost:10000", "http://127.0.0.1:10000", "-port", "-redis-url"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr.String())
		}
	}
	if code := run([]string{"--no-such-flag"}, &stdout, &stderr); code != 2 {
		t.Errorf("an unknown flag exited %d, want 2", code)
	}
}

// TestDemo runs the stack `make run` starts (real Envoy, envoy-bff and the
// local provider) and walks what the banner tells a newcomer to try: the two
// apps are two frontends of one envoy-bff, and a login to one is not a login
// to the other.
func TestDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	s, err := harness.Start(ctx, options(t.TempDir(), 0, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	shop, admin := s.Frontends[0], s.Frontends[1]
	if shop.Name != "shop" || admin.Name != "admin" || shop.Host == admin.Host {
		t.Fatalf("frontends %+v", s.Frontends)
	}
	out := banner(s, "", "/tmp/x")
	for _, want := range []string{"shop   " + shop.URL(s) + "\n", "admin  " + admin.URL(s) + "\n", "Log in to shop", "silent login", s.IssuerURL} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q:\n%s", want, out)
		}
	}

	b := &browser{t: t, cookies: map[string]map[string]string{}, client: &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	user := func(f harness.Frontend) (int, map[string]any) {
		t.Helper()
		code, body := b.get(f.URL(s)+"/bff/user", true)
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("%s /bff/user: %d %q is not JSON", f.Name, code, body)
		}
		return code, m
	}

	for _, f := range s.Frontends {
		if code, body := b.get(f.URL(s)+"/", false); code != http.StatusOK || !strings.Contains(body, `<h1 id="app-name">`+f.Name+`</h1>`) {
			t.Errorf("%s's page: %d, without its name", f.Name, code)
		}
		if code, m := user(f); code != http.StatusUnauthorized || m["error"] != "unauthenticated" {
			t.Errorf("%s /bff/user anonymous: %d %v", f.Name, code, m)
		}
	}

	// The page's first silent login: no session at the provider yet, so
	// back to the page with the marker.
	if code, final := b.follow(shop.URL(s) + "/bff/login?prompt=none&returnUrl=/"); code != http.StatusOK || final != shop.URL(s)+"/?bff_login=required" {
		t.Fatalf("shop's silent login before any login ended at %s with %d", final, code)
	}

	// Log in to shop: admin is still anonymous, its session is its own.
	if code, final := b.follow(shop.URL(s) + "/bff/login?returnUrl=/"); code != http.StatusOK || final != shop.URL(s)+"/" {
		t.Fatalf("shop login ended at %s with %d", final, code)
	}
	shopCookie := b.cookies[shop.Host][shop.CookieName()]
	if shopCookie == "" {
		t.Fatalf("no %s cookie after the login: %v", shop.CookieName(), b.cookies)
	}
	if code, m := user(shop); code != http.StatusOK || m["name"] != "Demo User" {
		t.Fatalf("shop /bff/user after login: %d %v", code, m)
	}
	if code, body := b.get(shop.URL(s)+"/api/whoami", true); code != http.StatusOK || !strings.Contains(body, `"saw_session_cookie":false`) {
		t.Errorf("shop /api/whoami: %d %s", code, body)
	}
	if code, m := user(admin); code != http.StatusUnauthorized {
		t.Errorf("admin /bff/user after the shop login: %d %v", code, m)
	}
	// The page's live feed: an EventSource through the BFF (no X-CSRF, the
	// browser's same-origin marker instead) gets the user's first event.
	if first := firstEvent(t, shop.URL(s)+"/api/events", shop.CookieName()+"="+shopCookie); !strings.HasPrefix(first, "event: hello\n") || !strings.Contains(first, `"sub"`) {
		t.Errorf("shop's /api/events began with %q, want the user's hello", first)
	}
	// Even shop's session ID under admin's cookie name is no session there.
	if b.cookies[admin.Host] == nil {
		b.cookies[admin.Host] = map[string]string{}
	}
	b.cookies[admin.Host][admin.CookieName()] = shopCookie
	if code, m := user(admin); code != http.StatusUnauthorized {
		t.Errorf("admin /bff/user with shop's session ID: %d %v", code, m)
	}
	delete(b.cookies[admin.Host], admin.CookieName()) // the provider's, on the same host, stays

	// Admin's silent login: single sign-on at the provider. Then log out
	// of shop: the provider's session ends, and with it admin's.
	if code, final := b.follow(admin.URL(s) + "/bff/login?prompt=none&returnUrl=/"); code != http.StatusOK || final != admin.URL(s)+"/" {
		t.Fatalf("admin's silent login ended at %s with %d", final, code)
	}
	if code, m := user(admin); code != http.StatusOK || m["name"] != "Demo User" {
		t.Fatalf("admin /bff/user after its login: %d %v", code, m)
	}
	_, m := user(shop)
	logout, _ := m["logoutUrl"].(string)
	if !strings.HasPrefix(logout, "/bff/logout?") {
		t.Fatalf("shop's logoutUrl %q", logout)
	}
	if code, final := b.follow(shop.URL(s) + logout); code != http.StatusOK || final != shop.URL(s)+"/" {
		t.Fatalf("shop logout ended at %s with %d", final, code)
	}
	if code, m := user(shop); code != http.StatusUnauthorized {
		t.Errorf("shop /bff/user after its logout: %d %v", code, m)
	}
	if code, m := user(admin); code != http.StatusUnauthorized {
		t.Errorf("admin /bff/user after shop's logout (single logout): %d %v", code, m)
	}
	if code, final := b.follow(admin.URL(s) + "/bff/login?prompt=none&returnUrl=/"); code != http.StatusOK || final != admin.URL(s)+"/?bff_login=required" {
		t.Errorf("admin's silent login after the logout ended at %s with %d", final, code)
	}
}

// browser keeps cookies per host, as browsers do (not per port, and sending
// Secure ones to localhost and 127.0.0.1 over http, which Go's cookie jar
// will not), and follows redirects itself.
type browser struct {
	t       *testing.T
	cookies map[string]map[string]string // host → name → value
	client  *http.Client
}

// get sends a GET (with the SPA's anti-forgery header when api is true) and
// returns the status and body, keeping the cookies the answer sets.
func (b *browser) get(rawURL string, api bool) (int, string) {
	b.t.Helper()
	code, _, body := b.do(rawURL, api)
	return code, body
}

func (b *browser) do(rawURL string, api bool) (int, string, string) {
	b.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		b.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(b.t.Context(), http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	if api {
		req.Header.Set("X-CSRF", "1")
	}
	var pairs []string
	for k, v := range b.cookies[u.Hostname()] {
		pairs = append(pairs, k+"="+v)
	}
	if len(pairs) > 0 {
		req.Header.Set("Cookie", strings.Join(pairs, "; "))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Fatalf("read %s: %v", rawURL, err)
	}
	for _, c := range resp.Cookies() {
		jar := b.cookies[u.Hostname()]
		if jar == nil {
			jar = map[string]string{}
			b.cookies[u.Hostname()] = jar
		}
		if c.MaxAge < 0 || c.Value == "" {
			delete(jar, c.Name)
		} else {
			jar[c.Name] = c.Value
		}
	}
	loc := ""
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		next, err := u.Parse(resp.Header.Get("Location"))
		if err != nil {
			b.t.Fatalf("redirect from %s: %v", rawURL, err)
		}
		loc = next.String()
	}
	return resp.StatusCode, loc, string(body)
}

// follow GETs rawURL and up to 10 redirects, returning the last status and URL.
func (b *browser) follow(rawURL string) (int, string) {
	b.t.Helper()
	for range 10 {
		code, next, _ := b.do(rawURL, false)
		if next == "" {
			return code, rawURL
		}
		rawURL = next
	}
	b.t.Fatalf("more than 10 redirects, the last to %s", rawURL)
	return 0, ""
}

// firstEvent opens an EventSource-like request (Accept: text/event-stream,
// Sec-Fetch-Site: same-origin, as Chromium sends it) and returns the stream
// up to its first blank line.
func firstEvent(t *testing.T, rawURL, cookie string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("GET %s: %d %s %s", rawURL, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != "" {
		out.WriteString(sc.Text() + "\n")
	}
	return out.String()
}
