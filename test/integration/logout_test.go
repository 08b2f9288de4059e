package integration

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestLogoutEverywhere is issue 4's proof through real Envoy, three
// replicas and one Redis: whichever way a session ends — the provider's
// back-channel logout, the user's logout, an administrator — every replica
// denies it on its next request and its refresh token is revoked at the
// provider; a bad logout token changes nothing.
func TestLogoutEverywhere(t *testing.T) {
	t.Parallel()
	testLogoutEverywhere(t, harness.Options{Replicas: 3, Redis: true})
}

// TestLogoutEverywhereWithSessionCache is issue 6's proof that the
// in-process session cache is safe: the same suite, with every replica
// serving sessions from its cache for far longer than the test runs, so
// only the change messages can make a replica deny an ended session; and
// the caches did serve.
func TestLogoutEverywhereWithSessionCache(t *testing.T) {
	t.Parallel()
	s := testLogoutEverywhere(t, harness.Options{Replicas: 3, Redis: true, BFFConfig: func(doc map[string]any) {
		doc["session"].(map[string]any)["cache"] = map[string]any{"ttl": "30s"}
	}})
	for i, b := range s.BFFs {
		hits, err := b.Metric(`envoy_bff_session_cache_hits_total{frontend="default"}`)
		if err != nil || hits == 0 {
			t.Errorf("replica %d served %v reads from its cache (%v), want some", i+1, hits, err)
		}
		if n, err := b.Metric(`envoy_bff_session_cache_ack_timeouts_total{frontend="default"}`); err != nil || n != 0 {
			t.Errorf("replica %d: %v ack timeouts (%v), want 0", i+1, n, err)
		}
	}
}

func testLogoutEverywhere(t *testing.T, o harness.Options) *harness.Stack {
	s := startStack(t, o)
	checks := dialAll(t, s)

	var cookies []string // every session cookie value this test's users held
	defer func() {
		if t.Failed() {
			return
		}
		// Nothing secret reached any log of the whole run: no token the
		// provider issued, no session cookie value (issue 7's log check).
		values := make([]string, 0, len(cookies))
		for _, c := range cookies {
			values = append(values, strings.TrimPrefix(c, "__Host-bff="))
		}
		leaks, err := s.LogLeaks(map[string][]string{"session cookie": values})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leaks {
			t.Errorf("in a log: %s", l)
		}
	}()
	track := func(u *scaleUser) *scaleUser { cookies = append(cookies, u.cookie); return u }

	// everywhere asserts what every replica, and Envoy, answer for u.
	everywhere := func(t *testing.T, u *scaleUser, want int) {
		t.Helper()
		for i, c := range checks {
			if r := mustCheck(t, c, u.cookie); r.Status != want {
				t.Fatalf("replica %d answers %d, want %d: %s", i+1, r.Status, want, r.Body)
			}
		}
		for range 3 {
			if r := u.browser.api("/api/whoami"); r.Status != want {
				t.Fatalf("through Envoy: %d, want %d", r.Status, want)
			}
		}
	}

	t.Run("T32_T68_provider_back_channel_logout_while_three_tabs_call", func(t *testing.T) {
		u := track(loginUser(t, s))
		bystander := track(loginUser(t, s))
		everywhere(t, u, 200)
		before := s.Provider.Stats()

		// Three tabs keep calling; once the logout has been answered, every
		// call that starts afterwards must be denied.
		var after atomic.Bool
		var late, lateDenied atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		hc := &http.Client{Timeout: 10 * time.Second}
		for range 3 {
			wg.Go(func() {
				for n := 0; n < 10_000; n++ {
					select {
					case <-stop:
						return
					default:
					}
					started := after.Load()
					status := apiStatus(hc, s.URL, u.cookie)
					if started {
						late.Add(1)
						if status == 401 {
							lateDenied.Add(1)
						}
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		time.Sleep(200 * time.Millisecond)
		if !s.Provider.EndSession(t.Context(), u.sid) { // posts the logout token to envoy-bff through Envoy
			t.Fatal("the provider did not know the session")
		}
		after.Store(true)
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		if late.Load() == 0 || late.Load() != lateDenied.Load() {
			t.Fatalf("%d of %d calls after the logout were not denied", late.Load()-lateDenied.Load(), late.Load())
		}
		st := s.Provider.Stats()
		if st.BackchannelLogouts != before.BackchannelLogouts+1 || st.BackchannelLogoutErrors != before.BackchannelLogoutErrors {
			t.Fatalf("back-channel deliveries %d→%d, errors %d→%d", before.BackchannelLogouts, st.BackchannelLogouts, before.BackchannelLogoutErrors, st.BackchannelLogoutErrors)
		}
		if st.Revocations != before.Revocations+1 {
			t.Errorf("envoy-bff revoked %d refresh tokens, want 1", st.Revocations-before.Revocations)
		}
		everywhere(t, u, 401)
		everywhere(t, bystander, 200)
	})

	t.Run("T33_T35_bad_or_replayed_logout_tokens_400_nothing_deleted", func(t *testing.T) {
		u := track(loginUser(t, s))
		valid, err := s.Provider.MintLogoutToken(oidctest.LogoutToken{Sid: "some-other-session"})
		if err != nil {
			t.Fatal(err)
		}
		if r := postBackchannel(t, s.URL, valid); r != 200 {
			t.Fatalf("a valid token for another session: %d", r)
		}
		bad := map[string]string{"replayed": valid}
		for name, lt := range map[string]oidctest.LogoutToken{
			"wrong issuer": {Sid: u.sid, Issuer: "https://evil.example.com"},
			"nonce":        {Sid: u.sid, Nonce: "n"},
			"no events":    {Sid: u.sid, OmitEvents: true},
			"old":          {Sid: u.sid, IssuedAt: time.Now().Add(-10 * time.Minute), ExpiresIn: time.Hour},
		} {
			tok, err := s.Provider.MintLogoutToken(lt)
			if err != nil {
				t.Fatal(err)
			}
			bad[name] = tok
		}
		for name, tok := range bad {
			if r := postBackchannel(t, s.URL, tok); r != 400 {
				t.Errorf("%s: %d, want 400", name, r)
			}
		}
		everywhere(t, u, 200)
	})

	t.Run("T8_T9_user_logout_revokes_the_refresh_token_first", func(t *testing.T) {
		u := track(loginUser(t, s))
		before := s.Provider.Stats()
		if r, hops := u.browser.follow("/bff/logout?sid=" + url.QueryEscape(u.sid)); r.Status >= 400 {
			t.Fatalf("logout ended at %v with %d", hops, r.Status)
		}
		if st := s.Provider.Stats(); st.Revocations != before.Revocations+1 {
			t.Errorf("envoy-bff revoked %d refresh tokens at logout, want 1", st.Revocations-before.Revocations)
		}
		everywhere(t, u, 401)
	})

	t.Run("admin_CLI_lists_and_ends_a_users_sessions_everywhere", func(t *testing.T) {
		a, b, c := track(loginUser(t, s)), track(loginUser(t, s)), track(loginUser(t, s))
		admin := "http://" + s.BFFs[2].AdminAddr
		out := cli(t, "sessions", "list", "--sub", "demo-user", "--admin", admin)
		if n := strings.Count(out, "\n") - 1; n < 3 {
			t.Fatalf("sessions list shows %d sessions, want at least 3:\n%s", n, out)
		}
		if strings.Contains(out, "eyJ") || strings.Contains(out, strings.TrimPrefix(a.cookie, "__Host-bff=")) {
			t.Fatalf("sessions list shows a token or a cookie value:\n%s", out)
		}
		// One session by ref, through another replica's admin listener.
		ref := ""
		for _, line := range strings.Split(out, "\n")[1:] {
			if f := strings.Fields(line); len(f) > 1 && f[1] == a.sid {
				ref = f[0]
			}
		}
		if ref == "" {
			t.Fatalf("no row for sid %s:\n%s", a.sid, out)
		}
		before := s.Provider.Stats()
		if got := cli(t, "sessions", "revoke", "--ref", ref, "--admin", "http://"+s.BFFs[0].AdminAddr); !strings.Contains(got, "ended 1 session") {
			t.Fatalf("revoke --ref: %s", got)
		}
		everywhere(t, a, 401)
		everywhere(t, b, 200)
		if got := cli(t, "sessions", "revoke", "--sub", "demo-user", "--admin", admin); !strings.Contains(got, "ended") {
			t.Fatalf("revoke --sub: %s", got)
		}
		everywhere(t, b, 401)
		everywhere(t, c, 401)
		if st := s.Provider.Stats(); st.Revocations < before.Revocations+3 {
			t.Errorf("refresh tokens revoked: %d, want at least 3", st.Revocations-before.Revocations)
		}
	})
	return s
}

func dialAll(t *testing.T, s *harness.Stack) []*harness.CheckClient {
	t.Helper()
	var out []*harness.CheckClient
	for _, b := range s.BFFs {
		c, err := harness.DialCheck(b.GRPCAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

// apiStatus makes one SPA-style API call and returns its status (0 on a transport error).
func apiStatus(hc *http.Client, origin, cookie string) int {
	resp, _, err := spaGet(hc, origin, "/api/whoami", cookie)
	if err != nil {
		return 0
	}
	return resp.StatusCode
}

// postBackchannel posts a logout token through Envoy, as a provider does.
func postBackchannel(t *testing.T, origin, token string) int {
	t.Helper()
	resp, err := http.Post(origin+"/bff/backchannel-logout", "application/x-www-form-urlencoded",
		strings.NewReader("logout_token="+url.QueryEscape(token)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// cli runs the envoy-bff binary the replicas run, and returns its stdout.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv("ENVOY_BFF_BIN")
	if bin == "" {
		t.Fatal("ENVOY_BFF_BIN is not set (run through make test)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("envoy-bff %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}
