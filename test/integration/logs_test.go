package integration

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestNoSecretInAnyLog runs a whole life through real Envoy, two replicas
// and Redis — logins, API calls, a refresh, a user logout, a provider
// back-channel logout, an administrator's logout — with the replicas at
// debug level, then reads every process log whole: no token the provider
// issued, no authorization code or state, no session cookie value appears
// in any (T49 and the rule that no secret reaches a log line). It also
// checks the run was logged and counted: every line about a request names
// it, and the login and logout metrics add up.
func TestNoSecretInAnyLog(t *testing.T) {
	t.Parallel()
	s := startStack(t, harness.Options{Replicas: 2, Redis: true, AccessTokenTTL: 2 * time.Second})
	secrets := map[string][]string{}
	login := func() *scaleUser {
		t.Helper()
		b := newBrowser(t, s.URL)
		r, hops := b.login("/")
		if r.Status != 200 {
			t.Fatalf("login ended at %v with %d", hops, r.Status)
		}
		for _, h := range hops {
			if u, err := url.Parse(h); err == nil && u.Path == "/bff/callback" {
				secrets["authorization code"] = append(secrets["authorization code"], u.Query().Get("code"))
				secrets["login state"] = append(secrets["login state"], u.Query().Get("state"))
			}
		}
		info := b.api("/bff/user")
		if info.Status != 200 {
			t.Fatalf("/bff/user: %d", info.Status)
		}
		lu, err := url.Parse(info.json(t)["logoutUrl"].(string))
		if err != nil {
			t.Fatal(err)
		}
		secrets["session cookie"] = append(secrets["session cookie"], b.cookies["__Host-bff"])
		return &scaleUser{browser: b, cookie: "__Host-bff=" + b.cookies["__Host-bff"], sid: lu.Query().Get("sid")}
	}
	sum := func(series string) float64 {
		var n float64
		for _, b := range s.BFFs {
			n += metric(t, b, series)
		}
		return n
	}
	hc := &http.Client{Timeout: 10 * time.Second}

	// Login, API calls until a replica has refreshed the 2s access token.
	u := login()
	for n := 0; sum(`envoy_bff_token_refreshes_total{frontend="default",kind="session",outcome="refreshed"}`) == 0; n++ {
		if n == 100 {
			t.Fatal("no refresh after 100 API calls over 10s")
		}
		if msg := callAPI(hc, s.URL, u.cookie); msg != "" {
			t.Fatalf("API call %d: %s", n, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The user logs out.
	if r, hops := u.browser.follow("/bff/logout?sid=" + url.QueryEscape(u.sid)); r.Status >= 400 {
		t.Fatalf("logout ended at %v with %d", hops, r.Status)
	}
	if st := apiStatus(hc, s.URL, u.cookie); st != 401 {
		t.Fatalf("after logout: %d", st)
	}

	// The provider ends another session by back-channel logout.
	v := login()
	if msg := callAPI(hc, s.URL, v.cookie); msg != "" {
		t.Fatal(msg)
	}
	if !s.Provider.EndSession(t.Context(), v.sid) {
		t.Fatal("the provider did not know the session")
	}
	if st := apiStatus(hc, s.URL, v.cookie); st != 401 {
		t.Fatalf("after back-channel logout: %d", st)
	}

	// An administrator ends a third.
	w := login()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, "http://"+s.BFFs[1].AdminAddr+"/admin/sessions?sub=demo-user", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "admin-req-0001")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || apiStatus(hc, s.URL, w.cookie) != 401 {
		t.Fatalf("admin logout: %d, then the API answers %d", resp.StatusCode, apiStatus(hc, s.URL, w.cookie))
	}

	for _, m := range []struct {
		series string
		want   float64
	}{
		{`envoy_bff_logins_total{frontend="default",outcome="ok"}`, 3},
		{`envoy_bff_logouts_total{frontend="default",kind="user"}`, 1},
		{`envoy_bff_logouts_total{frontend="default",kind="backchannel"}`, 1},
		{`envoy_bff_logouts_total{frontend="default",kind="admin"}`, 1},
	} {
		if got := sum(m.series); got != m.want {
			t.Errorf("%s summed over the replicas = %v, want %v", m.series, got, m.want)
		}
	}

	logs, err := s.LogText()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"msg":"oidcflow: login"`, `"msg":"oidcflow: logout"`, `"msg":"oidcflow: back-channel logout"`,
		`"msg":"admin: sessions ended"`, `"request_id":"admin-req-0001"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s line in the logs: the run was not logged as it should be", want)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"oidcflow: login"`) && !strings.Contains(line, `"request_id":"`) {
			t.Errorf("a login line names no request: %s", line)
		}
	}
	if len(s.Provider.IssuedTokens()) < 7 { // 3 logins × 3 tokens, and a refresh's
		t.Fatalf("only %d tokens issued: the run did not happen", len(s.Provider.IssuedTokens()))
	}
	leaks, err := s.LogLeaks(secrets)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaks {
		t.Errorf("in a log: %s", l)
	}
}
