package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/test/harness"
)

// TestRedisFaults covers SECURITY-TESTS T52–T54 and T56–T58 with real
// redis-server processes behind real Envoy and envoy-bff. Every fault is
// real: a refused port, latency on the wire, a read-only replica,
// maxmemory, a dataset loading, a restart, a lost write. Only absence
// (redis.Nil) may end a session; every other fault is envoy-bff's own 503
// with Retry-After, the cookie kept, and the same cookie working again once
// the fault is gone, without a restart.
func TestRedisFaults(t *testing.T) {
	t.Parallel()

	t.Run("T52_refused_503_cookie_kept_recovers_without_restart", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{})
		b := e.login(t)
		pid := e.stack.BFFs[0].Pid()

		e.proxy.Refuse() // the kernel now refuses envoy-bff's dials
		expectStoreFault(t, "API while Redis refuses", b, b.api("/api/whoami"))
		// A navigation gets the same answer: a fault is never a trip to login.
		expectStoreFault(t, "navigation while Redis refuses", b,
			b.do(http.MethodGet, "/api/whoami", map[string]string{"X-CSRF": "1", "Accept": "text/html", "Sec-Fetch-Mode": "navigate"}))
		// No in-memory fallback: a login cannot start without the store.
		if r := b.get("/bff/login?returnUrl=/"); r.Status != 503 || errCode(r) != "session_store_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("login while Redis refuses: %d %s (want 503 session_store_unavailable with Retry-After)", r.Status, r.Body)
		}
		if st := adminStatus(t, e.stack.BFFs[0], "/readyz"); st != 503 {
			t.Fatalf("/readyz while Redis refuses: %d, want 503", st)
		}
		e.expectLogged(t, "connection refused")

		if err := e.proxy.Accept(); err != nil {
			t.Fatal(err)
		}
		e.expectWorks(t, b)
		if exited, _ := e.stack.BFFs[0].Exited(); exited || e.stack.BFFs[0].Pid() != pid {
			t.Fatal("envoy-bff was restarted; recovery must not need one")
		}
		if st := adminStatus(t, e.stack.BFFs[0], "/readyz"); st != 200 {
			t.Fatalf("/readyz after Redis is back: %d", st)
		}
	})

	t.Run("T53_latency_503_before_envoy_goroutines_back_to_baseline", func(t *testing.T) {
		t.Parallel()
		// Default settings: a reply later than read_timeout (500ms) ends the
		// command; check_timeout (3s) bounds the whole Check; both are well
		// inside Envoy's 5s, whose expiry would be a bare 503 without a body.
		e := startFaultEnv(t, faultOptions{})
		b := e.login(t)
		bff := e.stack.BFFs[0]
		metric(t, bff, "go_goroutines") // the scrape's own connection is part of the baseline
		baseGoroutines := metric(t, bff, "go_goroutines")
		baseConns := e.proxy.Conns()

		e.proxy.SetLatency(100*time.Millisecond, 600*time.Millisecond)
		results := concurrentAPI(e.stack.URL, "__Host-bff="+b.cookies["__Host-bff"], 8)
		for i, r := range results {
			if r.err != "" || r.status != 503 || r.code != "session_store_unavailable" || r.retryAfter == "" || r.setsCookie {
				t.Fatalf("caller %d under 700ms latency: %+v; want envoy-bff's 503 session_store_unavailable with Retry-After "+
					"and no Set-Cookie (a bare 503 is Envoy's own timeout)", i, r)
			}
		}
		e.expectLogged(t, "i/o timeout", "context deadline exceeded")
		e.proxy.SetLatency(0, 0)
		expectBaseline(t, e, baseGoroutines, baseConns, len(results))
		e.expectWorks(t, b)
	})

	t.Run("T53_slow_refresh_own_deadline_503_before_envoy", func(t *testing.T) {
		t.Parallel()
		// Each round trip takes 1.6s, well inside a 2.5s read_timeout, so
		// go-redis never gives up by itself; a Check whose access token has
		// expired needs at least four of them (read, lock, re-read, write):
		// 6.4s, past Envoy's 5s. Only envoy-bff's own deadline (check_timeout
		// 4s, or 50ms before the deadline Envoy sends) can answer in time.
		// Access tokens live 4s (not less: a JWT's exp has whole seconds, and
		// the refresh lead must stay longer than that rounding).
		e := startFaultEnv(t, faultOptions{accessTokenTTL: 4 * time.Second, bff: func(doc map[string]any) {
			// One command: 200ms + 300ms + 500ms + 2.5s = 3.5s, inside check_timeout.
			doc["session"].(map[string]any)["redis"].(map[string]any)["read_timeout"] = "2500ms"
			doc["session"].(map[string]any)["redis"].(map[string]any)["dial_timeout"] = "300ms"
			doc["session"].(map[string]any)["redis"].(map[string]any)["pool_timeout"] = "200ms"
			doc["authz"] = map[string]any{"check_timeout": "4s"}
		}})
		b := e.login(t)
		bff := e.stack.BFFs[0]
		rec, err := e.stack.ReadSession(t.Context(), b.cookies["__Host-bff"])
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the access token to expire", func() bool {
			return time.Now().UnixMilli() > rec.GetAccessTokenExpiresAtUnixMs()+100
		})
		metric(t, bff, "go_goroutines")
		baseGoroutines := metric(t, bff, "go_goroutines")
		baseConns := e.proxy.Conns()

		e.proxy.SetLatency(600*time.Millisecond, time.Second)
		// One caller, on a pooled connection: the read lands (1.6s), and the
		// deadline ends its wait for the refresh.
		if r := rawAPI(e.stack.URL, "__Host-bff="+b.cookies["__Host-bff"]); r.err != "" || r.status != 503 ||
			r.code != "token_refresh_unavailable" || r.retryAfter == "" || r.setsCookie {
			t.Fatalf("expired token under 1.6s round trips: %+v; want envoy-bff's 503 token_refresh_unavailable "+
				"with Retry-After and no Set-Cookie (a bare 503 is Envoy's own timeout)", r)
		}
		// Callers that need new connections (whose handshake is slow too)
		// may be cut while still reading: either way envoy-bff answers.
		results := concurrentAPI(e.stack.URL, "__Host-bff="+b.cookies["__Host-bff"], 4)
		for i, r := range results {
			if r.err != "" || r.status != 503 || (r.code != "token_refresh_unavailable" && r.code != "session_store_unavailable") ||
				r.retryAfter == "" || r.setsCookie {
				t.Fatalf("caller %d with an expired token under 1.6s round trips: %+v; want envoy-bff's own 503", i, r)
			}
		}
		e.expectLogged(t, "refresh session", "context deadline exceeded")
		e.proxy.SetLatency(0, 0)
		expectBaseline(t, e, baseGoroutines, baseConns, len(results))
		e.expectWorks(t, b)
	})

	t.Run("T54_readonly_replica_503_session_kept", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{})
		b := e.login(t)
		keys := e.sessionKeys(t, e.rdb)

		_, replicaAddr := startRedis(t, harness.RedisOptions{Dir: t.TempDir(), ReplicaOf: e.addr})
		replica := redisClient(t, "redis://"+replicaAddr+"/0")
		waitFor(t, 20*time.Second, "the replica to sync the session", func() bool {
			info, _ := replica.Info(t.Context(), "replication").Result()
			n, _ := replica.Exists(t.Context(), keys...).Result()
			return strings.Contains(info, "master_link_status:up") && n == int64(len(keys))
		})
		// A failover gone wrong: envoy-bff now talks to a read-only replica,
		// which refuses GETEX (it renews the idle timeout, so it writes).
		e.proxy.SetTarget(replicaAddr)
		e.proxy.DropConnections()
		expectStoreFault(t, "API against a read-only replica", b, b.api("/api/whoami"))
		e.expectLogged(t, "READONLY")

		e.proxy.SetTarget(e.addr)
		e.proxy.DropConnections()
		e.expectKept(t, keys)
		e.expectWorks(t, b)

		// The contrast: only absence (redis.Nil) ends the session.
		if err := e.rdb.Del(t.Context(), keys...).Err(); err != nil {
			t.Fatal(err)
		}
		expectSessionGone(t, "API after the record was deleted", b, b.api("/api/whoami"))
	})

	t.Run("T54_oom_reads_pass_refresh_503_session_kept", func(t *testing.T) {
		t.Parallel()
		// Access tokens live 4s, so the refresh that OOM blocks comes soon.
		e := startFaultEnv(t, faultOptions{accessTokenTTL: 4 * time.Second})
		b := e.login(t)
		keys := e.sessionKeys(t, e.rdb)

		e.setOOM(t, true)
		// GETEX is not a denyoom command: Redis serves reads (and their
		// idle-timeout renewal) while it refuses writes, so a session with a
		// valid access token keeps working under OOM.
		if r := b.api("/api/whoami"); r.Status != 200 {
			t.Fatalf("API under OOM with a valid access token: %d %s (GETEX is allowed under OOM)", r.Status, r.Body)
		}
		// Once the token expires, the refresh needs a write (the lock, the
		// record): refused with OOM, it is a 503, and the session stays.
		var r response
		waitFor(t, 30*time.Second, "the access token to expire under OOM", func() bool {
			r = b.api("/api/whoami")
			return r.Status != 200
		})
		expectStoreFault(t, "API needing a refresh under OOM", b, r)
		e.expectLogged(t, "OOM command not allowed")

		e.setOOM(t, false)
		e.expectKept(t, keys)
		e.expectWorks(t, b)
	})

	t.Run("T54_loading_503_session_kept", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{})
		b := e.login(t)
		keys := e.sessionKeys(t, e.rdb)

		// A restart that must read back a real dataset: 20,000 keys beside
		// the session, loaded slowly (key-load-delay, µs per key) while the
		// server answers every command with -LOADING.
		pipe := e.rdb.Pipeline()
		for i := range 20000 {
			pipe.Set(t.Context(), fmt.Sprintf("filler:%d", i), "x", 0)
		}
		if _, err := pipe.Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := e.rdb.Save(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		_, loadingAddr := startRedis(t, harness.RedisOptions{Dir: e.dir, AcceptLoading: true,
			Args: []string{"--key-load-delay", "500", "--loading-process-events-interval-bytes", "1024"}})
		loading := redisClient(t, "redis://"+loadingAddr+"/0")
		if err := loading.Ping(t.Context()).Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING") {
			t.Fatalf("the restarted server should be loading its dataset, PING answered %v", err)
		}
		e.proxy.SetTarget(loadingAddr)
		e.proxy.DropConnections()
		expectStoreFault(t, "API while Redis loads its dataset", b, b.api("/api/whoami"))
		e.expectLogged(t, "LOADING")

		// CONFIG works during loading: let it finish now.
		_ = loading.ConfigSet(t.Context(), "key-load-delay", "0").Err()
		waitFor(t, 60*time.Second, "the dataset to finish loading", func() bool {
			return loading.Ping(t.Context()).Err() == nil
		})
		e.rdb = loading
		e.expectKept(t, keys)
		e.expectWorks(t, b)
	})

	t.Run("T56_restart_with_aof_sessions_survive", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{direct: true, redis: harness.RedisOptions{AppendOnly: true}})
		b := e.login(t)
		keys := e.sessionKeys(t, e.rdb)

		e.redis.Kill() // a crash: only what appendfsync always wrote survives
		expectStoreFault(t, "API while Redis is down", b, b.api("/api/whoami"))
		e.restartRedis(t, harness.RedisOptions{AppendOnly: true})
		e.expectKept(t, keys)
		e.expectWorks(t, b)
	})

	t.Run("T56_restart_empty_clean_401_relogin_works", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{direct: true})
		b := e.login(t)

		e.redis.Kill()
		e.restartRedis(t, harness.RedisOptions{}) // no persistence: empty
		var r response
		waitFor(t, 15*time.Second, "envoy-bff to reconnect to the restarted Redis", func() bool {
			r = b.api("/api/whoami")
			if r.Status >= 500 && r.Status != 503 {
				t.Fatalf("restarted empty Redis: %d %s (never a 500)", r.Status, r.Body)
			}
			return r.Status != 503
		})
		expectSessionGone(t, "API after Redis restarted empty", b, r)
		if r := b.api("/api/whoami"); r.Status != 401 {
			t.Fatalf("API after the cookie was cleared: %d %s", r.Status, r.Body)
		}
		if got := e.sessionKeys(t, e.rdb); len(got) != 0 {
			t.Fatalf("restarted Redis holds %d sessions, want none", len(got))
		}
		e.login(t) // a fresh login works at once
	})

	t.Run("T57_rotated_token_lost_in_failover_clean_401_and_metric", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{direct: true, accessTokenTTL: 4 * time.Second})
		b := e.login(t)
		keys := e.sessionKeys(t, e.rdb)
		if len(keys) != 1 {
			t.Fatalf("%d session records after one login", len(keys))
		}
		// What the replica a failover promotes still holds: the record before
		// the refresh below (with RT1), byte for byte.
		before, err := e.rdb.Dump(t.Context(), keys[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := e.stack.ReadSession(t.Context(), b.cookies["__Host-bff"])
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the access token to expire", func() bool {
			return time.Now().UnixMilli() > rec.GetAccessTokenExpiresAtUnixMs()+100
		})
		e.expectWorks(t, b) // refreshes: RT1 rotated to RT2, RT2 written
		if f := familyOf(t, e.stack.Provider, rec.GetSid()); len(f.RefreshGrants) != 1 {
			t.Fatalf("provider granted %d refreshes, want 1", len(f.RefreshGrants))
		}
		// The failover: the write of RT2 is lost.
		if err := e.rdb.RestoreReplace(t.Context(), keys[0], time.Hour, before).Err(); err != nil {
			t.Fatal(err)
		}
		const rejected = `envoy_bff_token_refreshes_total{frontend="default",kind="session",outcome="rejected"}`
		was := metric(t, e.stack.BFFs[0], rejected)
		r := b.api("/api/whoami")
		if r.Status != 401 || errCode(r) != "session_expired" {
			t.Fatalf("API with the lost refresh token: %d %s, want 401 session_expired", r.Status, r.Body)
		}
		if _, ok := b.cookies["__Host-bff"]; ok {
			t.Fatal("the session cookie was not cleared")
		}
		if got := metric(t, e.stack.BFFs[0], rejected); got != was+1 {
			t.Fatalf("%s went from %v to %v, want +1", rejected, was, got)
		}
		if got := e.sessionKeys(t, e.rdb); len(got) != 0 {
			t.Fatalf("the rejected session is still stored (%d records)", len(got))
		}
		e.login(t) // and signing in again works
	})

	t.Run("T58_oom_during_callback_503_no_half_written_session", func(t *testing.T) {
		t.Parallel()
		e := startFaultEnv(t, faultOptions{direct: true})
		b := newBrowser(t, e.stack.URL)
		callback := b.untilCallback(t, "/bff/login?returnUrl=/")

		e.setOOM(t, true)
		r := b.get(callback)
		if r.Status != 503 || errCode(r) != "session_store_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("callback under OOM: %d %s, want 503 session_store_unavailable with Retry-After", r.Status, r.Body)
		}
		for _, sc := range r.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "__Host-bff=") && !strings.Contains(sc, "Max-Age=0") {
				t.Fatal("callback under OOM set a session cookie")
			}
		}
		if _, ok := b.cookies["__Host-bff"]; ok {
			t.Fatal("the browser holds a session cookie after a failed callback")
		}
		e.expectLogged(t, "OOM command not allowed")
		// Nothing half-written: no session record, no index entry (the
		// indexes are written first and their first write is refused), and
		// the login state was consumed, so the code cannot be replayed.
		for _, pattern := range []string{"bff:{*}:s", "bff:{*}:ix", "bff:{*}:l"} {
			if got := scanKeys(t, e.rdb, pattern); len(got) != 0 {
				t.Fatalf("after a callback refused with OOM, Redis holds %d keys matching %s", len(got), pattern)
			}
		}
		e.setOOM(t, false)
		if r := b.get(callback); r.Status != 400 {
			t.Fatalf("replayed callback after OOM: %d %s, want 400 (state consumed)", r.Status, r.Body)
		}
		b2 := e.login(t)
		if n := len(e.sessionKeys(t, e.rdb)); n != 1 {
			t.Fatalf("after a fresh login Redis holds %d sessions, want 1", n)
		}
		e.expectWorks(t, b2)
	})
}

// faultOptions shapes one fault environment.
type faultOptions struct {
	// redis starts the real server (Dir is filled in).
	redis harness.RedisOptions
	// direct connects envoy-bff to redis-server without the fault proxy,
	// for faults the server itself produces (restart, OOM).
	direct bool
	// accessTokenTTL is the provider's access-token lifetime (default 5m).
	accessTokenTTL time.Duration
	// bff adjusts the replica's config document.
	bff func(map[string]any)
}

// faultEnv is one stack whose only replica uses a redis-server of its own,
// through a FaultProxy unless direct.
type faultEnv struct {
	stack *harness.Stack
	proxy *harness.FaultProxy // nil when direct
	redis *harness.Process
	addr  string        // the real redis-server
	rdb   *redis.Client // straight to addr, for looking and for faults
	dir   string
}

func startFaultEnv(t *testing.T, o faultOptions) *faultEnv {
	t.Helper()
	e := &faultEnv{dir: t.TempDir()}
	o.redis.Dir = e.dir
	e.redis, e.addr = startRedis(t, o.redis)
	url := "redis://" + e.addr + "/0"
	if !o.direct {
		p, err := harness.StartFaultProxy(e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		e.proxy = p
		url = "redis://" + p.Addr() + "/0"
	}
	e.rdb = redisClient(t, "redis://"+e.addr+"/0")
	e.stack = startStack(t, harness.Options{Dir: e.dir, RedisURL: url, AccessTokenTTL: o.accessTokenTTL, BFFConfig: o.bff})
	return e
}

// startRedis starts a redis-server that the test stops (and whose log it
// prints if it failed).
func startRedis(t *testing.T, o harness.RedisOptions) (*harness.Process, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	p, addr, err := harness.StartRedisWith(ctx, o)
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("----- %s\n%s", p.Name, p.Tail(2000))
		}
		p.Stop(5 * time.Second)
	})
	return p, addr
}

// restartRedis starts the server again on its port and directory, after
// it stopped, as a process supervisor would.
func (e *faultEnv) restartRedis(t *testing.T, o harness.RedisOptions) {
	t.Helper()
	_, port, _ := strings.Cut(e.addr, ":")
	if _, err := fmt.Sscan(port, &o.Port); err != nil {
		t.Fatal(err)
	}
	o.Dir = e.dir
	e.redis, _ = startRedis(t, o)
}

// login walks the code flow and checks the session works.
func (e *faultEnv) login(t *testing.T) *browser {
	t.Helper()
	b := newBrowser(t, e.stack.URL)
	if r, hops := b.login("/"); r.Status != 200 {
		t.Fatalf("login ended at %v with %d %s", hops, r.Status, r.Body)
	}
	e.expectWorks(t, b)
	return b
}

// expectWorks: the browser's session cookie passes, with a token the
// sample API verified, within a bounded wait for a reconnect.
func (e *faultEnv) expectWorks(t *testing.T, b *browser) {
	t.Helper()
	cookie := b.cookies["__Host-bff"]
	if cookie == "" {
		t.Fatal("the browser has no session cookie")
	}
	var r response
	waitFor(t, 15*time.Second, "the session to work", func() bool {
		r = b.api("/api/whoami")
		if r.Status != 200 && r.Status != 503 {
			t.Fatalf("session after the fault: %d %s (only a 503 may precede recovery)", r.Status, r.Body)
		}
		return r.Status == 200
	})
	var who struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal([]byte(r.Body), &who); err != nil || who.Sub != "demo-user" {
		t.Fatalf("API answered %s, want the demo user's verified token", r.Body)
	}
	if b.cookies["__Host-bff"] != cookie {
		t.Fatal("the session cookie changed; the same cookie must work")
	}
}

// expectKept: the session records are still in Redis.
func (e *faultEnv) expectKept(t *testing.T, keys []string) {
	t.Helper()
	n, err := e.rdb.Exists(t.Context(), keys...).Result()
	if err != nil || n != int64(len(keys)) {
		t.Fatalf("after the fault %d of %d session records are left (%v)", n, len(keys), err)
	}
}

// expectLogged: the replica's log names the fault (one of causes), so the
// test knows the answer came from the fault it injected.
func (e *faultEnv) expectLogged(t *testing.T, causes ...string) {
	t.Helper()
	log := e.stack.BFFs[0].Tail(1 << 20)
	for _, c := range causes {
		if strings.Contains(log, c) {
			return
		}
	}
	t.Fatalf("envoy-bff's log mentions none of %q", causes)
}

// sessionKeys lists the session records (one per logged-in browser).
func (e *faultEnv) sessionKeys(t *testing.T, c *redis.Client) []string {
	t.Helper()
	return scanKeys(t, c, "bff:{*}:s")
}

// setOOM makes Redis refuse every command that may grow memory (maxmemory
// far below what it uses, noeviction), or lifts that.
func (e *faultEnv) setOOM(t *testing.T, on bool) {
	t.Helper()
	ctx := t.Context()
	limit := "0"
	if on {
		limit = "1"
		if err := e.rdb.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rdb.ConfigSet(ctx, "maxmemory", limit).Err(); err != nil {
		t.Fatal(err)
	}
	err := e.rdb.Set(ctx, "probe", "x", time.Minute).Err()
	if on && (err == nil || !strings.HasPrefix(err.Error(), "OOM")) {
		t.Fatalf("Redis should refuse writes with OOM, SET answered %v", err)
	}
	if !on && err != nil {
		t.Fatalf("Redis still refuses writes: %v", err)
	}
}

func scanKeys(t *testing.T, c *redis.Client, pattern string) []string {
	t.Helper()
	var out []string
	iter := c.Scan(t.Context(), 0, pattern, 1000).Iterator()
	for iter.Next(t.Context()) {
		out = append(out, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// expectStoreFault: envoy-bff's own answer to a store fault, seen by the
// browser through Envoy: 503 session_store_unavailable with Retry-After, no
// redirect, and the session cookie neither cleared nor replaced.
func expectStoreFault(t *testing.T, what string, b *browser, r response) {
	t.Helper()
	if r.Status != 503 || errCode(r) != "session_store_unavailable" {
		t.Fatalf("%s: %d %q, want envoy-bff's 503 session_store_unavailable", what, r.Status, r.Body)
	}
	if r.Header.Get("Retry-After") == "" || r.Header.Get("Location") != "" {
		t.Fatalf("%s: Retry-After %q, Location %q; want a Retry-After and no redirect", what, r.Header.Get("Retry-After"), r.Header.Get("Location"))
	}
	for _, sc := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(sc, "__Host-bff=") {
			t.Fatalf("%s: a fault touched the session cookie: %s", what, redact(sc))
		}
	}
	if b.cookies["__Host-bff"] == "" {
		t.Fatalf("%s: the browser lost its session cookie", what)
	}
}

// expectSessionGone: the answer when the record is absent: 401
// unauthenticated and a Set-Cookie that clears the cookie.
func expectSessionGone(t *testing.T, what string, b *browser, r response) {
	t.Helper()
	if r.Status != 401 || errCode(r) != "unauthenticated" {
		t.Fatalf("%s: %d %s, want 401 unauthenticated", what, r.Status, r.Body)
	}
	cleared := false
	for _, sc := range r.Header.Values("Set-Cookie") {
		cleared = cleared || strings.HasPrefix(sc, "__Host-bff=;") && strings.Contains(sc, "Max-Age=0")
	}
	if !cleared {
		t.Fatalf("%s: no clearing Set-Cookie in %q", what, r.Header.Values("Set-Cookie"))
	}
	if _, ok := b.cookies["__Host-bff"]; ok {
		t.Fatalf("%s: the browser still holds the cookie", what)
	}
}

// errCode is the JSON error code of a denial, "" when the body is not one
// (Envoy's own 503 on an ext_authz timeout has none).
func errCode(r response) string {
	var body struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(r.Body), &body) != nil {
		return ""
	}
	return body.Error
}

// concurrentAPI makes n API calls at once with cookie and returns their answers.
func concurrentAPI(origin, cookie string, n int) []apiResult {
	results := make([]apiResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = rawAPI(origin, cookie) })
	}
	wg.Wait()
	return results
}

// expectBaseline: once a fault is over, envoy-bff's goroutines return to
// their number before it, and the connections to Redis to at most the
// callers' (timed-out connections are closed, not kept), within a bounded
// wait: nothing a slow Redis started is left running.
func expectBaseline(t *testing.T, e *faultEnv, goroutines float64, conns, callers int) {
	t.Helper()
	bff := e.stack.BFFs[0]
	waitFor(t, 30*time.Second, "envoy-bff's goroutines back to their baseline", func() bool {
		return metric(t, bff, "go_goroutines") <= goroutines+5
	})
	// The pool may keep one idle connection per concurrent caller, plus the
	// lock-release subscription a refresh waiter opens once and keeps; more
	// would be a leak.
	waitFor(t, 30*time.Second, "connections to Redis back near their baseline", func() bool {
		return e.proxy.Conns() <= conns+callers+1
	})
}

// apiResult is one concurrent API call's answer.
type apiResult struct {
	status     int
	code       string
	retryAfter string
	setsCookie bool
	err        string
}

// rawAPI makes one SPA-style API call from its own goroutine (the browser
// type is not safe for concurrent use).
func rawAPI(origin, cookie string) apiResult {
	resp, body, err := spaGet(&http.Client{Timeout: 15 * time.Second}, origin, "/api/whoami", cookie)
	if err != nil {
		return apiResult{err: err.Error()}
	}
	return apiResult{
		status:     resp.StatusCode,
		code:       errCode(response{Body: string(body)}),
		retryAfter: resp.Header.Get("Retry-After"),
		setsCookie: len(resp.Header.Values("Set-Cookie")) > 0,
	}
}

// adminStatus is the status of a GET on the replica's admin listener.
func adminStatus(t *testing.T, b *harness.BFF, path string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + b.AdminAddr + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// untilCallback follows the login's redirects up to, not including, the
// provider's redirect back to /bff/callback, and returns that URL.
func (b *browser) untilCallback(t *testing.T, start string) string {
	t.Helper()
	cur, err := url.Parse(start)
	if err != nil {
		t.Fatal(err)
	}
	cur = b.origin.ResolveReference(cur)
	for range 10 {
		r := b.get(cur.String())
		if r.Status < 300 || r.Status >= 400 {
			t.Fatalf("login stopped at %s with %d %s", cur, r.Status, r.Body)
		}
		next, err := cur.Parse(r.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		if next.Host == b.origin.Host && next.Path == "/bff/callback" {
			return next.String()
		}
		cur = next
	}
	t.Fatal("no redirect to /bff/callback within 10 hops")
	return ""
}
