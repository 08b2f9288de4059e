package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/envoy-bff/envoy-bff/test/bench/measure"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// row is one configuration under load and its rounds.
type row struct {
	name string
	// about says what is measured and how the peer is set up (the doc's
	// paragraph for the row).
	about string
	// floor is the row this one is compared with (nil for the floors).
	floor *row
	// server, envoy and redis are the pids in the row's path (0: not in it).
	server, envoy, redis int
	// serverName names the server column's process.
	serverName string
	// client sends one request from worker w; nil when it was the allowed
	// answer (status and the token handed on checked).
	client func(ctx context.Context, w int) error
	// setup prepares conc workers' connections and is undone by teardown.
	setup    func(conc int) error
	teardown func()

	results []measure.Result
	// rss are peak RSS in MiB of server and Envoy, read at the end.
	rss [2]float64
}

// pids are the row's processes, in measure.Result.CPU's order: server,
// Envoy, Redis (the absent ones left out).
func (r *row) pids() []int {
	var out []int
	for _, p := range []int{r.server, r.envoy, r.redis} {
		if p != 0 {
			out = append(out, p)
		}
	}
	return out
}

// cpu is a result's CPU per request of server, Envoy and Redis (0 for those
// not in the path).
func (r *row) cpu(res measure.Result) (server, envoy, redis time.Duration) {
	i := 0
	next := func(pid int) time.Duration {
		if pid == 0 {
			return 0
		}
		d := res.CPU[i]
		i++
		return d
	}
	server = next(r.server)
	envoy = next(r.envoy)
	redis = next(r.redis)
	return
}

// total is a result's CPU per request summed over the row's processes.
func (r *row) total(res measure.Result) time.Duration {
	s, e, d := r.cpu(res)
	return s + e + d
}

// median is the row's median round by total CPU.
func (r *row) median() measure.Result { return measure.Median(r.results, r.total) }

// errors is the row's errors over all rounds.
func (r *row) errors() int {
	n := 0
	for _, res := range r.results {
		n += res.Errors
	}
	return n
}

// measure warms conc connections up (each must be allowed) and runs one
// round of load.
func (r *row) measure(ctx context.Context, conc int, d time.Duration) error {
	if err := r.setup(conc); err != nil {
		return err
	}
	defer r.teardown()
	for w := range conc {
		if err := r.client(ctx, w); err != nil {
			return fmt.Errorf("warm-up request not allowed: %w", err)
		}
	}
	res, err := measure.Run(ctx, measure.Load{Concurrency: conc, Duration: d, Do: r.client, Pids: r.pids()})
	if err != nil {
		return err
	}
	r.results = append(r.results, res)
	return nil
}

// closeRows releases what the rows' setups hold.
func closeRows(rows []*row) {
	for _, r := range rows {
		if r.teardown != nil {
			r.teardown()
		}
	}
}

// buildRows logs in everywhere and builds every row.
func buildRows(ctx context.Context, s *stacks, conc int) ([]*row, error) {
	redisPid, bffPid, bffEnvoyPid := s.redis.Pid(), s.bff.BFFs[0].Pid(), s.bff.Envoy.Pid()
	proxyPid, peersEnvoyPid := s.proxy.Pid(), s.envoy.Pid()

	// envoy-bff: the code flow through its Envoy.
	jar, err := loginOK(ctx, "envoy-bff", s.bff.URL+"/bff/login?returnUrl=%2F")
	if err != nil {
		return nil, err
	}
	bffCookie, err := only(jar, "__Host-bff")
	if err != nil {
		return nil, fmt.Errorf("envoy-bff login: %w", err)
	}
	rec, err := s.bff.ReadSession(ctx, strings.TrimPrefix(bffCookie, "__Host-bff="))
	if err != nil {
		return nil, fmt.Errorf("read envoy-bff's session: %w", err)
	}
	bearer := rec.GetAccessToken()

	// oauth2-proxy: /oauth2/start → provider → /oauth2/callback → static 200.
	if jar, err = loginOK(ctx, "oauth2-proxy", s.proxyURL+"/oauth2/start?rd=%2F"); err != nil {
		return nil, err
	}
	proxyCookie, err := only(jar, "_oauth2_proxy")
	if err != nil {
		return nil, fmt.Errorf("oauth2-proxy login: %w", err)
	}

	// Envoy's oauth2 filter: the protected URL redirects to the provider,
	// the callback sets the token cookies and redirects back, the API answers.
	if jar, err = loginOK(ctx, "Envoy's oauth2 filter", s.filterURL+"/api/whoami"); err != nil {
		return nil, err
	}
	filterCookies := cookieHeader(jar)

	check := &checkRow{addr: s.bff.BFFs[0].GRPCAddr, cookie: bffCookie}
	bffDirect := &row{
		name: "envoy-bff Check (gRPC)", serverName: "envoy-bff", server: bffPid, redis: redisPid,
		client: check.do, setup: check.setup, teardown: check.close,
		about: "ext_authz Check sent straight to envoy-bff over gRPC (no Envoy), with the session cookie and X-CSRF: 1, as `make bench` loads it. envoy-bff as the harness configures it (Redis sessions, sealed records, policy `user`); allowed means OK with an `authorization: Bearer` header for the upstream.",
	}
	proxyDirect := &row{
		name: "oauth2-proxy /oauth2/auth (HTTP)", serverName: "oauth2-proxy", server: proxyPid, redis: redisPid, floor: bffDirect,
		about: "GET /oauth2/auth sent straight to oauth2-proxy " + OAuth2ProxyVersion + " over HTTP/1.1 keep-alive with its session cookie, the request an HTTP ext_authz or nginx auth_request makes. oauth2-proxy runs the `oidc` provider against the same local provider (PKCE S256), `--session-store-type=redis` on the same redis-server (its own database), `--set-xauthrequest --pass-access-token` so the allowed answer (202) carries the access token in X-Auth-Request-Access-Token, and `--request-logging=false` (envoy-bff logs nothing for an allowed check either). Allowed means 202 with that header non-empty. Compared with the envoy-bff Check row.",
	}
	proxyDirect.client, proxyDirect.setup, proxyDirect.teardown = httpRow(s.proxyURL+"/oauth2/auth", http.Header{"Cookie": {proxyCookie}}, http.StatusAccepted, "X-Auth-Request-Access-Token")

	bffFloor := &row{
		name: "Envoy floor (envoy-bff's Envoy)", serverName: "-", envoy: bffEnvoyPid,
		about: "GET /bench-floor/whoami through the repository's Envoy config (envoy/envoy.yaml.tmpl, as the harness renders it): the same sample API with ext_authz off, the client sending the bearer itself so the API does the same work. The floor of the Envoy → envoy-bff row.",
	}
	bffFloor.client, bffFloor.setup, bffFloor.teardown = httpRow(s.bff.URL+"/bench-floor/whoami", http.Header{"Authorization": {"Bearer " + bearer}}, http.StatusOK, "")
	bffEnvoy := &row{
		name: "Envoy → envoy-bff (/api/, gRPC ext_authz)", serverName: "envoy-bff", server: bffPid, envoy: bffEnvoyPid, redis: redisPid, floor: bffFloor,
		about: "GET /api/whoami with the session cookie and X-CSRF: 1 through the repository's Envoy config: gRPC ext_authz to envoy-bff, which answers with the bearer; the sample API verifies it.",
	}
	bffEnvoy.client, bffEnvoy.setup, bffEnvoy.teardown = httpRow(s.bff.URL+"/api/whoami", http.Header{"Cookie": {bffCookie}, "X-Csrf": {"1"}}, http.StatusOK, "")

	peersFloor := &row{
		name: "Envoy floor (peers' Envoy)", serverName: "-", envoy: peersEnvoyPid,
		about: "GET /bench-floor/whoami through the peers' Envoy (test/bench/peers/envoy.yaml.tmpl: the same connection-manager settings and Envoy concurrency as the repository's), ext_authz off, the client sending the bearer. The floor of the two rows below.",
	}
	peersFloor.client, peersFloor.setup, peersFloor.teardown = httpRow(s.extAuthzURL+"/bench-floor/whoami", http.Header{"Authorization": {"Bearer " + bearer}}, http.StatusOK, "")
	proxyEnvoy := &row{
		name: "Envoy → oauth2-proxy (/api/, HTTP ext_authz)", serverName: "oauth2-proxy", server: proxyPid, envoy: peersEnvoyPid, redis: redisPid, floor: peersFloor,
		about: "GET /api/whoami with oauth2-proxy's cookie through Envoy's HTTP ext_authz (`http_service`, the cookie the only extra header sent) calling oauth2-proxy. Envoy's HTTP ext_authz takes only a 200 as allowed (and /oauth2/auth answers 202), so the check lands on oauth2-proxy's proxy handler with `--upstream=static://200` (the way Istio's envoyExtAuthzHttp provider runs it), which authenticates the session exactly as /oauth2/auth does; Envoy copies X-Auth-Request-Access-Token to the upstream request and the route turns it into `authorization: Bearer`; the sample API verifies it.",
	}
	proxyEnvoy.client, proxyEnvoy.setup, proxyEnvoy.teardown = httpRow(s.extAuthzURL+"/api/whoami", http.Header{"Cookie": {proxyCookie}, "X-Csrf": {"1"}}, http.StatusOK, "")
	filter := &row{
		name: "Envoy oauth2 filter (/api/, HMAC cookies)", serverName: "-", envoy: peersEnvoyPid, floor: peersFloor,
		about: "GET /api/whoami behind Envoy's built-in `envoy.filters.http.oauth2` (the \"do it inside Envoy\" alternative, a reference, not a BFF: no server-side session, no revocation, no refresh lock): the tokens live in the browser's cookies (BearerToken, IdToken, RefreshToken, with OauthHMAC and OauthExpires), checked by HMAC on every request; `forward_bearer_token: true`, `auth_type: BASIC_AUTH`, `use_refresh_token: false`, secrets as static SDS generic secrets. No Redis and no other process: all its cost is Envoy's.",
	}
	filter.client, filter.setup, filter.teardown = httpRow(s.filterURL+"/api/whoami", http.Header{"Cookie": {filterCookies}, "X-Csrf": {"1"}}, http.StatusOK, "")

	return []*row{bffDirect, proxyDirect, bffFloor, bffEnvoy, peersFloor, proxyEnvoy, filter}, nil
}

// loginOK is login that must end on a 200 (the app's page or the API).
func loginOK(ctx context.Context, who, start string) (map[string]string, error) {
	status, jar, err := login(ctx, start)
	if err != nil {
		return nil, fmt.Errorf("log in through %s: %w", who, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("log in through %s: the flow ended on status %d", who, status)
	}
	return jar, nil
}

// httpRow is a row's client over HTTP/1.1 keep-alive: GET url with header,
// allowed when the status is want and, if must is set, that response header
// is not empty.
func httpRow(url string, header http.Header, want int, must string) (client func(context.Context, int) error, setup func(int) error, teardown func()) {
	var hc *http.Client
	var tr *http.Transport
	client = func(ctx context.Context, _ int) error {
		resp, err := measure.Get(ctx, hc, url, header, want)
		if err != nil {
			return err
		}
		if must != "" && resp.Header.Get(must) == "" {
			return fmt.Errorf("allowed answer without %s", must)
		}
		return nil
	}
	setup = func(conc int) error {
		tr = &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
		hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}
		return nil
	}
	teardown = func() {
		if tr != nil {
			tr.CloseIdleConnections()
			tr = nil
		}
	}
	return client, setup, teardown
}

// checkRow is the envoy-bff Check row's client: one gRPC connection per
// worker, as test/bench does.
type checkRow struct {
	addr, cookie string
	clients      []*harness.CheckClient
}

func (c *checkRow) setup(conc int) error {
	for range conc {
		cc, err := harness.DialCheck(c.addr)
		if err != nil {
			c.close()
			return err
		}
		c.clients = append(c.clients, cc)
	}
	return nil
}

func (c *checkRow) close() {
	for _, cc := range c.clients {
		_ = cc.Close()
	}
	c.clients = nil
}

// do sends one Check; allowed means OK with a bearer for the upstream.
func (c *checkRow) do(ctx context.Context, w int) error {
	r, err := c.clients[w].API(ctx, "/api/whoami", c.cookie)
	switch {
	case err != nil:
		return err
	case r.Status != http.StatusOK:
		return &measure.StatusError{Status: r.Status}
	case r.Bearer == "":
		return errors.New("allowed check without a bearer")
	}
	return nil
}
