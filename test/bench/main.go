// Command bench is `make bench`: it measures what one authorization Check
// costs envoy-bff, against floors measured in the same run on the same
// machine, and prints a table of ratios (these machines are noisy; only
// same-run ratios mean anything).
//
// Every configuration is a separate server process loaded by the same gRPC
// load generator (fixed concurrency and duration), calling Check directly
// with a valid session; the configurations are interleaved and repeated, and
// the table shows each one's median round:
//
//	floor-noio    a minimal ext_authz server answering OK
//	floor-redis   the same plus one Redis GET per Check
//	bff-redis     envoy-bff with Redis sessions
//	bff-memory    envoy-bff with in-memory sessions
//	bff-redis-cache  envoy-bff with Redis sessions and the session cache on,
//	              compared with the no-I/O floor it aims to approach
//	bff-memory-100fe  bff-memory with 100 frontends configured (each its own
//	              host and client), compared with bff-memory: what picking
//	              the frontend costs (issue 13's budget: +3% CPU)
//	bff-redis-exchange  the bff-redis process, checks on a route naming an
//	              exchange profile (bff.token) whose token is cached: the
//	              first check exchanges, the measured ones read the session
//	              and the derived token in one round trip; compared with
//	              bff-redis (issue 14's budget: +10% CPU)
//	bff-redis-ext  the bff-redis process, checks carrying one more context
//	              extension that nothing reads, as long as the requirement
//	              below: what Envoy's request costs to decode with it
//	bff-redis-require  the bff-redis process, checks on a route requiring a
//	              claim the user has (bff.require.<claim>), compared with
//	              bff-redis-ext: the requirement check itself (issue 14's
//	              budget: +2% CPU)
//	bff-redis-dpop  bff-redis for a frontend with oidc.dpop and dpop_alg
//	              ES256: each Check also signs a fresh DPoP proof; compared
//	              with bff-redis (issue 16's budget: under 1.5×)
//	bff-redis-dpop-eddsa  the same with EdDSA, the algorithm envoy-bff
//	              chooses when the provider lists it; also measured through
//	              Envoy
//
// The bff-redis rows are one process measured with different requests, one
// after the other in each round: the fairest comparison, and no more stacks
// to start.
//
// Through Envoy, browser-like requests on four routes of bff-redis's Envoy:
// the API without ext_authz (the floor), the API checked by the no-op floor
// server (what the ext_authz round trip costs Envoy), /api/ checked by
// envoy-bff, and /api/ of the DPoP stack. A last table holds each of issue
// 18's budgets against its measured ratio.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/oidcflow/oidctest"
	"github.com/envoy-bff/envoy-bff/test/bench/measure"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "load per configuration per round")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; the configurations are interleaved within each")
	flag.IntVar(&o.concurrency, "concurrency", 50, "checks in flight")
	flag.StringVar(&o.floorBin, "floor", "bin/envoy-bff-floor", "the floor server binary")
	scale := flag.Bool("scale", true, "also measure with 10k and 1M sessions stored (slow)")
	only := flag.String("only", "", "measure only the rows whose names match this regular expression (the floors a ratio needs too)")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "Usage: bench [flags]\n\nMeasures envoy-bff's Check against no-I/O and one-Redis-GET floors in one run.\n\nFlags:")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *scale {
		o.scaleSizes = []int{10_000, 1_000_000}
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: --only:", err)
			os.Exit(2)
		}
		o.only = re
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are one run's settings.
type options struct {
	duration            time.Duration
	rounds, concurrency int
	floorBin            string
	// scaleSizes are the session counts of the scale table, ascending; none
	// leaves it out.
	scaleSizes []int
	// only, when set, picks the rows to measure by name.
	only *regexp.Regexp
}

// measured says whether o measures the row called name.
func (o options) measured(name string) bool { return o.only == nil || o.only.MatchString(name) }

// report is everything a run measured, for the tables and for the test
// that runs the benchmark once.
type report struct {
	targets []*target
	grpc    map[string][]result
	routes  []httpRoute
	http    map[string][]httpResult
	scale   []scaleRow
}

// target is one configuration under load.
type target struct {
	name   string
	floor  string // the configuration this one is compared with ("" for floors)
	pid    int
	addr   string
	cookie string
	host   string // the checks' :authority ("" for the default)
	// ext are the checks' context extensions besides bff.policy: user (the
	// route: a token profile, a requirement).
	ext map[string]string
}

// envoyTarget is a stack loaded through Envoy: its processes and a
// logged-in session (cookie, and the access token behind it).
type envoyTarget struct {
	url              string
	envoyPid, bffPid int
	cookie, bearer   string
}

// result is one round of one target.
type result struct {
	checks, errors int
	perSec         float64
	p50, p99       time.Duration
	cpuPerCheck    time.Duration
	redisCPU       time.Duration // per check, when load was given Redis's pid
}

func run(ctx context.Context, o options, w io.Writer) (*report, error) {
	d, rounds, conc, floorBin := o.duration, o.rounds, o.concurrency, o.floorBin
	dir, err := os.MkdirTemp("", "envoy-bff-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(os.Stderr, "==> starting Redis, envoy-bff (memory, Redis, Redis with the session cache, 100 frontends) and the floors\n")
	redisProc, redisAddr, err := harness.StartRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer redisProc.Stop(5 * time.Second)

	// The no-op floor's port, known before bff-redis's Envoy starts: its
	// /bench-noop-authz/ route calls it.
	noopPort, err := harness.FreePort()
	if err != nil {
		return nil, err
	}

	// envoy-bff first: the floors are then sized like its real exchange.
	var bffs []*target
	var viaEnvoy *envoyTarget
	var viaEnvoyDPoP *envoyTarget   // bff-redis-dpop's stack: DPoP through Envoy
	var provider *oidctest.Provider // bff-redis's, for its exchange count
	for _, b := range []struct {
		name, floor  string
		redis, cache bool
		frontends    int
		dpop         string // oidc.dpop_alg, "" without DPoP
	}{{"bff-redis", "floor-redis", true, false, 0, ""}, {"bff-memory", "floor-noio", false, false, 0, ""}, {"bff-redis-cache", "floor-noio", true, true, 0, ""},
		{"bff-memory-100fe", "bff-memory", false, false, 100, ""},
		{"bff-redis-dpop", "bff-redis", true, false, 0, "ES256"}, {"bff-redis-dpop-eddsa", "bff-redis", true, false, 0, "EdDSA"}} {
		sdir := filepath.Join(dir, b.name)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return nil, err
		}
		o := harness.Options{Dir: sdir, Replicas: 1, BenchFloorRoute: true}
		if b.redis {
			o.RedisURL = "redis://" + redisAddr + "/0"
		}
		if b.cache {
			o.BFFConfig = func(doc map[string]any) {
				doc["session"].(map[string]any)["cache"] = map[string]any{"ttl": "5s"}
			}
		}
		if b.dpop != "" {
			o.BFFConfig = func(doc map[string]any) {
				doc["oidc"].(map[string]any)["dpop"] = true
				doc["oidc"].(map[string]any)["dpop_alg"] = b.dpop
			}
		}
		plain := b.redis && !b.cache && b.frontends == 0 && b.dpop == ""
		if plain {
			o.BenchNoopAuthzPort = noopPort
			// bff-redis also serves the exchange-profile route: a profile
			// of the provider's one exchange audience.
			o.Provider = func(c *oidctest.ProviderConfig) {
				c.Audiences = map[string][]string{benchAudience: nil}
				for i := range c.Clients {
					c.Clients[i].TokenExchange = true
				}
			}
			o.BFFConfig = func(doc map[string]any) {
				doc["tokens"] = map[string]any{benchProfile: map[string]any{"type": "exchange", "audience": benchAudience}}
			}
		}
		host := ""
		if b.frontends > 0 {
			// Every frontend on its own host; the measured one, in the
			// middle, on 127.0.0.1 so the login can walk through Envoy.
			host = "127.0.0.1"
			for i := range b.frontends {
				h := fmt.Sprintf("app-%d.example", i)
				if i == b.frontends/2 {
					h = host
				}
				o.Frontends = append(o.Frontends, harness.Frontend{Name: fmt.Sprintf("app-%d", i), Host: h, Cookie: "__Host-bff"})
			}
		}
		s, err := harness.Start(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.name, err)
		}
		defer s.Close()
		cookie, err := login(s.URL)
		if err != nil {
			return nil, fmt.Errorf("%s: log in: %w", b.name, err)
		}
		t := &target{name: b.name, floor: b.floor, pid: s.BFFs[0].Pid(), addr: s.BFFs[0].GRPCAddr, cookie: cookie, host: host}
		bffs = append(bffs, t)
		if b.dpop == "EdDSA" {
			viaEnvoyDPoP = &envoyTarget{url: s.URL, envoyPid: s.Envoy.Pid(), bffPid: s.BFFs[0].Pid(), cookie: cookie}
		}
		if plain {
			// The same process on other routes, measured right after it.
			ex, extra, req := *t, *t, *t
			ex.name, ex.floor, ex.ext = "bff-redis-exchange", t.name, map[string]string{"bff.token": benchProfile}
			extra.name, extra.floor, extra.ext = "bff-redis-ext", t.name, map[string]string{"bff.unread." + benchClaim: benchClaimValue}
			req.name, req.floor, req.ext = "bff-redis-require", extra.name, map[string]string{"bff.require." + benchClaim: benchClaimValue}
			bffs = append(bffs, &ex, &extra, &req)
			rec, err := s.ReadSession(ctx, strings.TrimPrefix(cookie, "__Host-bff="))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.name, err)
			}
			viaEnvoy = &envoyTarget{url: s.URL, envoyPid: s.Envoy.Pid(), bffPid: s.BFFs[0].Pid(), cookie: cookie, bearer: rec.GetAccessToken()}
			if err := exchangeRoute(ctx, &ex, rec.GetAccessToken()); err != nil {
				return nil, fmt.Errorf("%s: %w", ex.name, err)
			}
			provider = s.Provider
		}
	}
	sealed, err := sealedRecordLen(ctx, redisAddr)
	if err != nil {
		return nil, err
	}

	// The floors get the same request (cookie and all), answer with a bearer
	// token as long as the real one, and GET a value as long as the sealed
	// record: the same bytes on the wire, none of the work.
	bearerFile := filepath.Join(dir, "bearer")
	if err := os.WriteFile(bearerFile, []byte(viaEnvoy.bearer), 0o600); err != nil {
		return nil, err
	}
	var targets []*target
	var noopPid int
	for _, f := range []struct{ name, redis string }{{"floor-noio", ""}, {"floor-redis", redisAddr}} {
		port := noopPort
		if f.redis != "" {
			if port, err = harness.FreePort(); err != nil {
				return nil, err
			}
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args := []string{"--listen", addr, "--bearer-file", bearerFile, "--value-len", strconv.Itoa(sealed)}
		if f.redis != "" {
			args = append(args, "--redis", f.redis)
		}
		p, err := harness.StartProcess(f.name, dir, floorBin, args, nil)
		if err != nil {
			return nil, err
		}
		defer p.Stop(5 * time.Second)
		if err := waitDial(ctx, addr); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if f.redis == "" {
			noopPid = p.Pid()
		}
		targets = append(targets, &target{name: f.name, pid: p.Pid(), addr: addr, cookie: viaEnvoy.cookie})
	}
	targets = append(targets, bffs...)

	csrf := map[string]string{"Cookie": viaEnvoy.cookie, "X-CSRF": "1"}
	routes := []httpRoute{
		{name: "no ext_authz (/bench-floor/)", url: viaEnvoy.url, path: "/bench-floor/whoami", headers: map[string]string{"Authorization": "Bearer " + viaEnvoy.bearer}, envoyPid: viaEnvoy.envoyPid},
		{name: "Envoy + no-op ext_authz", url: viaEnvoy.url, path: "/bench-noop-authz/whoami", headers: csrf, envoyPid: viaEnvoy.envoyPid, authzPid: noopPid},
		{name: "/api/ (envoy-bff, Redis)", url: viaEnvoy.url, path: "/api/whoami", headers: csrf, envoyPid: viaEnvoy.envoyPid, authzPid: viaEnvoy.bffPid},
		{name: "/api/ (envoy-bff, Redis, DPoP EdDSA)", url: viaEnvoyDPoP.url, path: "/api/whoami", headers: map[string]string{"Cookie": viaEnvoyDPoP.cookie, "X-CSRF": "1"},
			envoyPid: viaEnvoyDPoP.envoyPid, authzPid: viaEnvoyDPoP.bffPid},
	}
	rep := &report{targets: targets, grpc: map[string][]result{}, routes: routes, http: map[string][]httpResult{}}
	for r := range rounds {
		// Each round starts one row later, so no row always follows the
		// same one (the order shows in same-process rows otherwise).
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			if !o.measured(t.name) {
				continue
			}
			fmt.Fprintf(os.Stderr, "==> round %d/%d: %s, %d in flight for %s\n", r+1, rounds, t.name, conc, d)
			res, err := load(ctx, t, conc, d, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", t.name, err)
			}
			rep.grpc[t.name] = append(rep.grpc[t.name], res)
		}
		for _, route := range routes {
			if !o.measured(route.name) {
				continue
			}
			fmt.Fprintf(os.Stderr, "==> round %d/%d: through Envoy, %s, %d in flight for %s\n", r+1, rounds, route.name, conc, d)
			res, err := loadHTTP(ctx, route, conc, d)
			if err != nil {
				return nil, fmt.Errorf("through Envoy, %s: %w", route.name, err)
			}
			rep.http[route.name] = append(rep.http[route.name], res)
		}
	}
	printTable(w, targets, rep.grpc, rounds, conc, d)
	fmt.Fprintf(w, "\nbff-redis-exchange: %d token exchange(s) at the provider in all its rounds; every other check sent the cached token\n",
		provider.Stats().TokenExchanges)
	printHTTPTable(w, routes, rep.http, conc)

	if len(o.scaleSizes) == 0 {
		printTargets(w, rep)
		return rep, nil
	}
	// Scale: the same Check with 10k and 1M sessions stored.
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	record, indexes, err := recordSizes(ctx, rdb)
	if err != nil {
		return nil, fmt.Errorf("record sizes: %w", err)
	}
	memStored, memRead, err := memoryPerSession()
	if err != nil {
		return nil, fmt.Errorf("memory per session: %w", err)
	}
	var bffRedis, floorRedis *target
	for _, t := range targets {
		switch t.name {
		case "bff-redis":
			bffRedis = t
		case "floor-redis":
			floorRedis = t
		}
	}
	value := make([]byte, record)
	// Each size measured as it is reached, then the smallest again after
	// the filler is removed: a change that stays is the run's history
	// (time, memory), not the number of sessions.
	stored := 0
	sizes := append(slices.Clone(o.scaleSizes), o.scaleSizes[0])
	for i, n := range sizes {
		label := strconv.Itoa(n)
		switch {
		case n > stored:
			fmt.Fprintf(os.Stderr, "==> storing %d sessions in Redis\n", n)
			if err := fill(ctx, rdb, stored, n-1, value); err != nil { // the logged-in session is one
				return nil, fmt.Errorf("fill Redis: %w", err)
			}
		case i == len(sizes)-1:
			fmt.Fprintf(os.Stderr, "==> removing sessions back to %d\n", n)
			if err := unfill(ctx, rdb, n-1, stored); err != nil {
				return nil, fmt.Errorf("empty Redis: %w", err)
			}
			label += ", again after removing the rest"
		}
		stored = max(n-1, 0)
		// The same interleaved rounds as above, envoy-bff and its floor
		// against the same keyspace, and Redis's own CPU per request:
		// what changes with the count shows up in the floor too unless it
		// is envoy-bff's.
		row := scaleRow{sessions: n, label: label}
		for r := range rounds {
			for _, t := range []*target{floorRedis, bffRedis} {
				fmt.Fprintf(os.Stderr, "==> %s sessions, round %d/%d: %s, %d in flight for %s\n", label, r+1, rounds, t.name, conc, d)
				res, err := load(ctx, t, conc, d, redisProc.Pid())
				if err != nil {
					return nil, err
				}
				if t == bffRedis {
					row.bff = append(row.bff, res)
				} else {
					row.floor = append(row.floor, res)
				}
			}
		}
		rep.scale = append(rep.scale, row)
	}
	printScale(w, record, indexes, memStored, memRead, rep.scale)
	printTargets(w, rep)
	return rep, nil
}

// exchangeRoute makes sure t's route passes with a token of its own (the
// exchanged one, not the session's own token), so its row measures that.
func exchangeRoute(ctx context.Context, t *target, own string) error {
	c, err := harness.DialCheck(t.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Extensions = t.ext
	r, err := c.API(ctx, "/api/whoami", t.cookie)
	switch {
	case err != nil:
		return err
	case r.Status != 200:
		return fmt.Errorf("check: %d %s", r.Status, r.Body)
	case r.Bearer == "" || r.Bearer == own:
		return fmt.Errorf("the exchange route sent the session's own token, not an exchanged one")
	}
	return nil
}

// The exchange profile of bff-redis-exchange, its audience at the local
// provider, and the claim bff-redis-require requires (the local provider's
// user has it).
const (
	benchProfile    = "orders"
	benchAudience   = "orders-api"
	benchClaim      = "preferred_username"
	benchClaimValue = "demo"
)

// load runs conc workers calling Check for d and reads the server's CPU time.
// With redisPid set it also reads that Redis's CPU per check in the same
// window.
func load(ctx context.Context, t *target, conc int, d time.Duration, redisPid int) (result, error) {
	clients := make([]*harness.CheckClient, conc)
	for i := range clients {
		c, err := harness.DialCheck(t.addr)
		if err != nil {
			return result{}, err
		}
		defer c.Close()
		c.Host, c.Extensions = t.host, t.ext
		clients[i] = c
	}
	// Warm up connections and caches outside the measurement (the first
	// check on an exchange route obtains the token). A route that denies
	// is a broken configuration, not a result.
	for _, c := range clients {
		r, err := c.API(ctx, "/api/whoami", t.cookie)
		if err != nil {
			return result{}, err
		}
		if r.Status != 200 {
			return result{}, fmt.Errorf("warm-up check: %d %s", r.Status, r.Body)
		}
	}
	pids := []int{t.pid}
	if redisPid != 0 {
		pids = append(pids, redisPid)
	}
	r, err := measure.Run(ctx, measure.Load{Concurrency: conc, Duration: d, Pids: pids, Do: func(ctx context.Context, w int) error {
		r, err := clients[w].API(ctx, "/api/whoami", t.cookie)
		if err != nil {
			return err
		}
		if r.Status != 200 {
			return &measure.StatusError{Status: r.Status}
		}
		return nil
	}})
	if err != nil {
		return result{}, err
	}
	res := result{checks: r.Requests, errors: r.Errors, perSec: r.PerSec, p50: r.P50, p99: r.P99, cpuPerCheck: r.CPU[0]}
	if redisPid != 0 {
		res.redisCPU = r.CPU[1]
	}
	return res, nil
}

// peakRSS is a process's high-water resident set in MB (0 if unreadable).
func peakRSS(pid int) float64 {
	mb, _ := measure.PeakRSS(pid)
	return mb
}

// median is the round with the median CPU per check.
func median(rs []result) result {
	return measure.Median(rs, func(r result) time.Duration { return r.cpuPerCheck })
}

func printTable(w io.Writer, targets []*target, results map[string][]result, rounds, conc int, d time.Duration) {
	fmt.Fprintf(w, "\nCheck over gRPC, valid session, %d in flight, %s × %d interleaved rounds (median round by CPU)\n\n", conc, d, rounds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "config\tchecks/s\tp50\tp99\tCPU µs/check\tpeak RSS MB\tvs floor: CPU\tvs floor: checks/s\terrors\t")
	med := map[string]result{}
	for _, t := range targets {
		if len(results[t.name]) > 0 { // --only may leave rows out
			med[t.name] = median(results[t.name])
		}
	}
	for _, t := range targets {
		m, ok := med[t.name]
		if !ok {
			continue
		}
		cpuRatio, rateRatio := "-", "-"
		if f, ok := med[t.floor]; ok && t.floor != "" {
			cpuRatio = fmt.Sprintf("%.2f× %s", float64(m.cpuPerCheck)/float64(f.cpuPerCheck), t.floor)
			rateRatio = fmt.Sprintf("%.2f×", m.perSec/f.perSec)
		}
		errs := 0
		for _, r := range results[t.name] {
			errs += r.errors
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t%d\t\n", t.name, m.perSec, m.p50.Round(time.Microsecond),
			m.p99.Round(time.Microsecond), float64(m.cpuPerCheck.Nanoseconds())/1000, peakRSS(t.pid), cpuRatio, rateRatio, errs)
	}
	tw.Flush()
}

// waitDial waits until addr accepts connections.
func waitDial(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never accepted a connection", addr)
}

// login walks the code flow through Envoy as a browser would and returns the
// Cookie header value carrying the session.
func login(origin string) (string, error) {
	jar := map[string]string{} // by cookie name: the app's and the provider's names differ
	hc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := origin + "/bff/login?returnUrl=%2F"
	for range 10 {
		req, err := http.NewRequest(http.MethodGet, next, nil)
		if err != nil {
			return "", err
		}
		var pairs []string
		for k, v := range jar {
			pairs = append(pairs, k+"="+v)
		}
		req.Header.Set("Cookie", strings.Join(pairs, "; "))
		resp, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			jar[c.Name] = c.Value
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			break
		}
		loc, err := req.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return "", err
		}
		next = loc.String()
	}
	if v, ok := jar["__Host-bff"]; ok {
		return "__Host-bff=" + v, nil
	}
	return "", fmt.Errorf("no session cookie after the login")
}
