package integration

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// statusIdle is the idle timeout of TestSessionStatusThroughEnvoy's stacks:
// short, so the session's end is observed in real time.
const statusIdle = 4 * time.Second

// TestSessionStatusThroughEnvoy: through real Envoy, a page polling GET
// /bff/session does not keep an unused session alive (it ends at the
// idleExpiresAt it was told), POST /bff/session extends it, and API calls
// (ext_authz Check) slide it.
func TestSessionStatusThroughEnvoy(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, harness.Options{Redis: backend == "redis", BFFConfig: func(doc map[string]any) {
				sess := doc["session"].(map[string]any)
				sess["idle_timeout"] = statusIdle.String()
			}})

			t.Run("polling_does_not_keep_it_alive", func(t *testing.T) {
				t.Parallel()
				b := statusLoggedIn(t, s.URL)
				first := sessionStatus(t, b.api("/bff/session"))
				if first["idleTimeout"] != int64(statusIdle/time.Second) {
					t.Fatalf("idleTimeout %d, want %d", first["idleTimeout"], int64(statusIdle/time.Second))
				}
				if d := first["idleExpiresAt"] - first["now"]; d < int64(statusIdle/time.Second)-1 || d > int64(statusIdle/time.Second) {
					t.Fatalf("idleExpiresAt is %ds after now, want about %s", d, statusIdle)
				}
				end := time.Unix(first["idleExpiresAt"], 0)
				polls := 0
				for time.Until(end) > 700*time.Millisecond && polls < 100 { // polled to within the last second
					time.Sleep(250 * time.Millisecond)
					st := sessionStatus(t, b.api("/bff/session"))
					if st["idleExpiresAt"] < first["idleExpiresAt"]-1 || st["idleExpiresAt"] > first["idleExpiresAt"]+1 {
						t.Fatalf("poll %d: idleExpiresAt moved from %d to %d", polls, first["idleExpiresAt"], st["idleExpiresAt"])
					}
					polls++
				}
				time.Sleep(time.Until(end.Add(1500 * time.Millisecond)))
				if r := b.api("/bff/session"); r.Status != http.StatusUnauthorized || r.json(t)["error"] != "unauthenticated" {
					t.Fatalf("after %d polls and idleExpiresAt: %d %s, want 401 unauthenticated", polls, r.Status, r.Body)
				}
				if r := b.api("/api/whoami"); r.Status != http.StatusUnauthorized {
					t.Fatalf("API after the idle expiry: %d %s, want 401", r.Status, r.Body)
				}
			})

			t.Run("post_extends", func(t *testing.T) {
				t.Parallel()
				b := statusLoggedIn(t, s.URL)
				first := sessionStatus(t, b.api("/bff/session"))
				time.Sleep(statusIdle / 2)
				if r := b.do(http.MethodPost, "/bff/session", nil); r.Status != http.StatusForbidden {
					t.Fatalf("POST without X-CSRF: %d %s, want 403", r.Status, r.Body)
				}
				ext := sessionStatus(t, b.do(http.MethodPost, "/bff/session", map[string]string{"X-CSRF": "1"}))
				if ext["idleExpiresAt"] <= first["idleExpiresAt"] {
					t.Fatalf("POST left idleExpiresAt at %d (was %d)", ext["idleExpiresAt"], first["idleExpiresAt"])
				}
				// Past the first idle expiry, inside the extension.
				time.Sleep(time.Until(time.Unix(first["idleExpiresAt"], 0).Add(time.Second)))
				if st := sessionStatus(t, b.api("/bff/session")); statusDiff(st["idleExpiresAt"], ext["idleExpiresAt"]) > 1 {
					t.Fatalf("after POST: idleExpiresAt %d, want %d", st["idleExpiresAt"], ext["idleExpiresAt"])
				}
				if r := b.api("/api/whoami"); r.Status != http.StatusOK {
					t.Fatalf("API inside the extension: %d %s", r.Status, r.Body)
				}
			})

			t.Run("api_calls_slide_it", func(t *testing.T) {
				t.Parallel()
				b := statusLoggedIn(t, s.URL)
				first := sessionStatus(t, b.api("/bff/session"))
				for i := range 3 { // 3 × idle/2 + the waits: well past the first idle expiry
					time.Sleep(statusIdle / 2)
					if r := b.api("/api/whoami"); r.Status != http.StatusOK {
						t.Fatalf("API call %d: %d %s", i, r.Status, r.Body)
					}
					st := sessionStatus(t, b.api("/bff/session"))
					if d := st["idleExpiresAt"] - st["now"]; d < int64(statusIdle/time.Second)-1 {
						t.Fatalf("after API call %d: idleExpiresAt %ds after now, want about %s", i, d, statusIdle)
					}
				}
				if last := sessionStatus(t, b.api("/bff/session")); last["now"] <= first["idleExpiresAt"] {
					t.Fatalf("the test ended at %d, before the first idle expiry %d: it proved nothing", last["now"], first["idleExpiresAt"])
				}
			})
		})
	}
}

// statusLoggedIn is a browser that has logged in at origin.
func statusLoggedIn(t *testing.T, origin string) *browser {
	t.Helper()
	b := newBrowser(t, origin)
	if r, hops := b.login("/"); r.Status != http.StatusOK {
		t.Fatalf("login failed at %v: %d %s", hops, r.Status, r.Body)
	}
	return b
}

// sessionStatus decodes a 200 /bff/session answer into its integer members.
func sessionStatus(t *testing.T, r response) map[string]int64 {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("/bff/session: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Vary") != "Cookie" {
		t.Errorf("/bff/session headers: Cache-Control %q, Vary %q", r.Header.Get("Cache-Control"), r.Header.Get("Vary"))
	}
	out := map[string]int64{}
	for k, v := range r.json(t) {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) {
			t.Fatalf("/bff/session member %s = %v, want an integer", k, v)
		}
		out[k] = int64(f)
	}
	return out
}

func statusDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}
