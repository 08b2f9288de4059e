package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestProbeCases covers T69–T71 through real Envoy, envoy-bff and the local
// provider on one stack (memory store). The subtests run in order: the
// upstream request counter T69 and T70 read is only theirs when nothing
// else on the stack is calling the API meanwhile.
func TestProbeCases(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{})

	loggedIn := func(t *testing.T) string {
		t.Helper()
		b := newBrowser(t, s.URL)
		if r, hops := b.login("/"); r.Status != 200 {
			t.Fatalf("login failed at %v: %d %s", hops, r.Status, r.Body)
		}
		id := b.cookies["__Host-bff"]
		if id == "" {
			t.Fatal("login set no __Host-bff cookie")
		}
		return id
	}
	// apiRequests is what Envoy sent the API so far: the proof that an
	// answer came from Check and not from the API.
	apiRequests := func(t *testing.T) int {
		t.Helper()
		return envoyCounter(t, s.Envoy, "cluster.api.upstream_rq_total")
	}

	t.Run("T70_preflight_with_session_answered_by_envoy_bff", func(t *testing.T) {
		id := loggedIn(t)
		for _, origin := range []string{s.URL, "https://evil.example"} {
			preflights := metric(t, s.BFFs[0], `envoy_bff_checks_total{answer="preflight",frontend="default",policy="user"}`)
			upstream := apiRequests(t)
			// A browser's preflight: credentials are not sent on one, but a
			// cookie that does arrive must change nothing; no X-CSRF.
			r := rawRequest(t, s.URL, "OPTIONS", "/api/whoami", [][2]string{
				{"Origin", origin},
				{"Access-Control-Request-Method", "GET"},
				{"Access-Control-Request-Headers", "x-csrf"},
				{"Cookie", "__Host-bff=" + id},
			})
			if r.Status != http.StatusNoContent || r.Body != "" {
				t.Errorf("Origin %s: %d %q, want 204 without a body", origin, r.Status, r.Body)
			}
			if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Origin %s: cache-control %q, want no-store", origin, cc)
			}
			for k := range r.Header {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("Origin %s: answered %s: %q; a preflight must grant no origin anything", origin, k, r.Header.Values(k))
				}
			}
			if n := apiRequests(t) - upstream; n != 0 {
				t.Errorf("Origin %s: the API received %d request(s) for the preflight", origin, n)
			}
			if n := metric(t, s.BFFs[0], `envoy_bff_checks_total{answer="preflight",frontend="default",policy="user"}`) - preflights; n != 1 {
				t.Errorf("Origin %s: envoy-bff counted %v preflight answers, want 1", origin, n)
			}
		}
		// The counter does count what reaches the API: an ordinary call adds one.
		upstream := apiRequests(t)
		if r := rawRequest(t, s.URL, http.MethodGet, "/api/whoami", [][2]string{{"X-CSRF", "1"}, {"Cookie", "__Host-bff=" + id}}); r.Status != 200 {
			t.Fatalf("ordinary API call: %d %s", r.Status, r.Body)
		}
		if n := apiRequests(t) - upstream; n != 1 {
			t.Fatalf("an ordinary API call moved cluster.api.upstream_rq_total by %d, want 1", n)
		}
	})

	t.Run("T69_every_session_cookie_pair_counts_whatever_the_separator", func(t *testing.T) {
		a, b := loggedIn(t), loggedIn(t)
		tests := []struct {
			name    string
			cookies []string // one Cookie header line each
			want    int      // 401 unauthenticated, or 200 with a verified token
		}{
			{"two lines, A with a trailing ';' then B", []string{"__Host-bff=" + a + ";", "__Host-bff=" + b}, 401},
			{"two lines, A then B", []string{"__Host-bff=" + a, "__Host-bff=" + b}, 401},
			{"two lines, A twice", []string{"__Host-bff=" + a, "__Host-bff=" + a}, 401},
			{"one line, A ';,' B", []string{"__Host-bff=" + a + ";,__Host-bff=" + b}, 401},
			{"one line, A ',' B", []string{"__Host-bff=" + a + ",__Host-bff=" + b}, 401},
			{"one line, A ', ' A", []string{"__Host-bff=" + a + ", __Host-bff=" + a}, 401},
			{"two lines, another cookie then A", []string{"a=1", "__Host-bff=" + a}, 200},
			{"two lines, A then another cookie", []string{"__Host-bff=" + a, "a=1"}, 200},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				upstream := apiRequests(t)
				h := [][2]string{{"X-CSRF", "1"}}
				for _, c := range tt.cookies {
					h = append(h, [2]string{"Cookie", c})
				}
				r := rawRequest(t, s.URL, http.MethodGet, "/api/whoami", h)
				if r.Status != tt.want {
					t.Fatalf("%d %s, want %d", r.Status, r.Body, tt.want)
				}
				if tt.want == 401 {
					if got := r.json(t)["error"]; got != "unauthenticated" {
						t.Errorf("error %v, want unauthenticated", got)
					}
					if n := apiRequests(t) - upstream; n != 0 {
						t.Errorf("the API received %d request(s) for a refused check", n)
					}
					return
				}
				var who struct {
					Sub         string   `json:"sub"`
					TokenError  string   `json:"token_error"`
					CookieNames []string `json:"cookie_names"`
					SessionName bool     `json:"session_name_in_cookie_header"`
				}
				if err := json.Unmarshal([]byte(r.Body), &who); err != nil {
					t.Fatalf("%v: %s", err, r.Body)
				}
				if who.Sub != "demo-user" || who.TokenError != "" {
					t.Errorf("no verified token upstream: %s", r.Body)
				}
				if !slices.Contains(who.CookieNames, "a") {
					t.Errorf("upstream lost the other cookie: names %v", who.CookieNames)
				}
				if who.SessionName {
					t.Errorf("upstream's Cookie header names __Host-bff (names %v)", who.CookieNames)
				}
			})
		}
	})

	t.Run("T71_foreign_callback_leaves_the_state_to_its_owner", func(t *testing.T) {
		tests := []struct {
			name    string
			foreign func(t *testing.T) *browser
		}{
			{"no cookies", func(t *testing.T) *browser { return newBrowser(t, s.URL) }},
			{"another browser's pending login", func(t *testing.T) *browser {
				other := newBrowser(t, s.URL)
				if r := other.get("/bff/login"); r.Status != 302 || other.cookies["__Host-bff-login"] == "" {
					t.Fatalf("other browser's /bff/login: %d, login cookie set: %v", r.Status, other.cookies["__Host-bff-login"] != "")
				}
				return other
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				const returnURL = "/?after=login"
				owner := newBrowser(t, s.URL)
				callback := pendingCallback(t, owner, returnURL)

				if r := tt.foreign(t).get(callback); r.Status != 400 || r.json(t)["error"] != "invalid_state" {
					t.Errorf("foreign callback: %d %s, want 400 invalid_state", r.Status, r.Body)
				}
				r := owner.get(callback)
				if r.Status != 302 || r.Header.Get("Location") != returnURL {
					t.Fatalf("owner's callback after the foreign one: %d Location %q %s, want 302 to %s",
						r.Status, r.Header.Get("Location"), r.Body, returnURL)
				}
				if owner.cookies["__Host-bff"] == "" {
					t.Fatal("owner's callback set no __Host-bff cookie")
				}
				if u := owner.api("/bff/user"); u.Status != 200 {
					t.Fatalf("/bff/user after the owner's callback: %d %s", u.Status, u.Body)
				}
			})
		}
	})
}

// pendingCallback starts a login in b and walks it to the provider's
// redirect back to /bff/callback without following that redirect; it
// returns the callback URL.
func pendingCallback(t *testing.T, b *browser, returnURL string) string {
	t.Helper()
	r := b.get("/bff/login?returnUrl=" + url.QueryEscape(returnURL))
	if r.Status != 302 || b.cookies["__Host-bff-login"] == "" {
		t.Fatalf("/bff/login: %d, login cookie set: %v", r.Status, b.cookies["__Host-bff-login"] != "")
	}
	cb := b.get(r.Header.Get("Location"))
	callback := cb.Header.Get("Location")
	u, err := url.Parse(callback)
	if cb.Status != 302 || err != nil || !strings.HasSuffix(u.Path, "/bff/callback") || u.Query().Get("state") == "" {
		t.Fatalf("provider answered %d Location %q, want a redirect to /bff/callback with a state", cb.Status, callback)
	}
	return callback
}

// rawRequest writes one HTTP/1.1 request to origin byte for byte, so that
// repeated headers go out as separate lines in the given order (what a
// browser or a proxy in front of Envoy may send), and reads the answer.
func rawRequest(t *testing.T, origin, method, path string, header [][2]string) response {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, u.Host)
	for _, kv := range header {
		fmt.Fprintf(&sb, "%s: %s\r\n", kv[0], kv[1])
	}
	sb.WriteString("\r\n")
	if _, err := io.WriteString(conn, sb.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(body)}
}

// envoyCounter reads one counter from Envoy's admin /stats.
func envoyCounter(t *testing.T, e *harness.Envoy, name string) int {
	t.Helper()
	resp, err := http.Get(e.AdminURL + "/stats?filter=^" + url.QueryEscape(strings.ReplaceAll(name, ".", `\.`)) + "$")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("Envoy stat %q: %v", line, err)
			}
			return n
		}
	}
	t.Fatalf("Envoy has no stat %s:\n%s", name, body)
	return 0
}
