package integration

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// startStack starts a whole deployment for one test and stops it when the
// test ends, printing the processes' logs if it failed.
func startStack(t *testing.T, o harness.Options) *harness.Stack {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	s, err := harness.Start(ctx, o)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("process logs:\n%s", s.Logs(3000))
		}
		s.Close()
	})
	return s
}

// TestVerticalSlice walks the path through real Envoy, for each
// session backend: login → /bff/user → API with a verified bearer and no
// session cookie → 403 without the header → 401 without a session →
// wrong-sid logout refused → logout → 401.
func TestVerticalSlice(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, harness.Options{Redis: backend == "redis"})
			b := newBrowser(t, s.URL)

			// Anonymous: the API says 401, the user endpoint too.
			if r := b.api("/api/whoami"); r.Status != 401 || r.json(t)["error"] != "unauthenticated" {
				t.Fatalf("anonymous API: %d %s", r.Status, r.Body)
			}

			final, hops := b.login("/app/orders?x=1")
			if final.Status != 200 || !strings.HasSuffix(hops[len(hops)-1], "/app/orders?x=1") {
				t.Fatalf("login ended at %v with %d", hops, final.Status)
			}
			if _, ok := b.cookies["__Host-bff"]; !ok {
				t.Fatalf("no session cookie after login; cookies: %v", keys(b.cookies))
			}

			u := b.api("/bff/user")
			if u.Status != 200 {
				t.Fatalf("/bff/user: %d %s", u.Status, u.Body)
			}
			user := u.json(t)
			if user["sub"] != "demo-user" || user["name"] != "Demo User" {
				t.Fatalf("/bff/user claims: %v", user)
			}
			logoutURL, _ := user["logoutUrl"].(string)
			if !strings.HasPrefix(logoutURL, "/bff/logout?sid=") {
				t.Fatalf("logoutUrl = %q", logoutURL)
			}

			w := b.api("/api/whoami")
			if w.Status != 200 {
				t.Fatalf("API with session: %d %s", w.Status, w.Body)
			}
			who := w.json(t)
			if who["sub"] != "demo-user" || who["saw_authorization"] != true || who["saw_session_cookie"] != false || who["session_name_in_cookie_header"] != false {
				t.Fatalf("API saw %v; want a verified bearer for demo-user and no session cookie", who)
			}

			if r := b.get("/api/whoami"); r.Status != 403 || r.json(t)["error"] != "antiforgery_required" {
				t.Fatalf("API without X-CSRF: %d %s", r.Status, r.Body)
			}

			anon := newBrowser(t, s.URL)
			if r := anon.api("/api/whoami"); r.Status != 401 {
				t.Fatalf("API without a session: %d %s", r.Status, r.Body)
			}

			if r := b.get("/bff/logout?sid=not-the-sid"); r.Status < 400 {
				t.Fatalf("wrong-sid logout: %d (want a refusal)", r.Status)
			}
			if r := b.api("/api/whoami"); r.Status != 200 {
				t.Fatalf("session must survive a wrong-sid logout: %d %s", r.Status, r.Body)
			}

			// Tokens never reach the browser: no response it received so far
			// holds one.
			seen := b.everything()
			for _, tok := range s.Provider.IssuedTokens() {
				if strings.Contains(seen, tok) {
					t.Fatal("a token issued by the provider reached the browser")
				}
			}

			old := b.cookies["__Host-bff"]
			out := b.get(logoutURL)
			if out.Status != 302 {
				t.Fatalf("logout: %d %s", out.Status, out.Body)
			}
			loc, err := url.Parse(out.Header.Get("Location"))
			if err != nil || !strings.HasPrefix(loc.String(), s.IssuerURL) || loc.Query().Get("id_token_hint") == "" {
				t.Fatalf("logout should redirect to the provider's end_session with id_token_hint, got %q", out.Header.Get("Location"))
			}
			if _, still := b.cookies["__Host-bff"]; still {
				t.Fatal("logout did not clear the session cookie")
			}
			if r := b.api("/api/whoami"); r.Status != 401 {
				t.Fatalf("API after logout: %d %s", r.Status, r.Body)
			}
			// T8: replaying the old cookie after logout finds nothing.
			b.cookies["__Host-bff"] = old
			if r := b.api("/api/whoami"); r.Status != 401 {
				t.Fatalf("T8 replayed cookie after logout: %d %s", r.Status, r.Body)
			}

			// The end_session redirect carries the ID token as id_token_hint,
			// as OpenID Connect RP-initiated logout requires; nothing else.
			hint := loc.Query().Get("id_token_hint")
			for _, tok := range s.Provider.IssuedTokens() {
				if tok != hint && strings.Contains(b.everything(), tok) {
					t.Fatal("an access or refresh token reached the browser")
				}
			}
		})
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
