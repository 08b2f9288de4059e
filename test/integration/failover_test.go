package integration

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// Failover load: a few workers, each pacing its calls, so two cores shared
// with other suites keep up; bounded in count as well as in time.
const (
	failoverCheckWorkers = 3
	failoverStoreWorkers = 2
	failoverUsers        = 4
	failoverPace         = 5 * time.Millisecond
	failoverMaxCalls     = 20000 // per worker
	failoverBaseline     = time.Second
	// failoverSettle is how long after every Sentinel has announced the new
	// master the clients may still fail: go-redis hears the announcement on
	// its subscription to one Sentinel and drops its connections to the old
	// master, but a pool whose dials kept failing (a killed master) stops
	// dialling and re-probes only once a second, so a busy replica answers
	// 503 for up to about a second more.
	failoverSettle = 3 * time.Second
	// failoverVerify is how long the load runs after the settle time; every
	// call in it must succeed.
	failoverVerify = 2 * time.Second
	// failoverAnnounceLimit bounds the wait for every Sentinel's +switch-master.
	failoverAnnounceLimit = 30 * time.Second
)

// call is one load call's outcome: ok, unavailable (503), conflict (an
// Update lost the compare-and-set), notFound (401 or ErrNotFound: a session
// ended), or other.
type call struct {
	start, end   time.Time
	kind, worker string // kind: check or store
	outcome      string
	detail       string
}

// callLog collects the load's calls from every worker.
type callLog struct {
	mu    sync.Mutex
	calls []call
	// lost counts acknowledged Updates a later Get no longer saw: written to
	// the old master and not replicated before the switch.
	lost atomic.Int64
}

func (l *callLog) add(c call) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *callLog) all() []call {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]call(nil), l.calls...)
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// TestRedisFailover is T55 on a real Sentinel deployment (master, replica,
// three Sentinels) under a real envoy-bff replica: while Checks (session
// reads through the replica's gRPC ext_authz) and direct store Gets and
// compare-and-set Updates run, the master fails over, either by
// SENTINEL FAILOVER or by being killed. Errors are 503s confined to the
// failover window — every call started once every Sentinel had announced
// the new master, plus failoverSettle, succeeds, with nothing restarted —
// no call ever
// answers "not found" for a live session, and every session is readable
// afterwards.
func TestRedisFailover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		trigger func(t *testing.T, s *harness.RedisSentinel)
		// demoted: the old master lives on, and the load runs until the
		// Sentinels have made it a replica of the new one, so a client still
		// writing to it would see READONLY.
		demoted bool
	}{
		{
			name:    "T55_sentinel_failover_command",
			demoted: true,
			trigger: func(t *testing.T, s *harness.RedisSentinel) {
				if err := s.Failover(t.Context()); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "T55_master_killed",
			trigger: func(t *testing.T, s *harness.RedisSentinel) {
				_ = s.Master.Signal(syscall.SIGKILL) // as a crash: the Sentinels notice within down-after-milliseconds
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sent, tp := startSentinel(t, harness.SentinelOptions{Sentinels: 3})
			stack := startStack(t, harness.Options{
				RedisURL: sent.URL(),
				BFFConfig: func(doc map[string]any) {
					doc["log"] = map[string]any{"level": "info", "format": "json"}
				},
			})
			runFailover(t, sent, tp, stack, tc.trigger, tc.demoted)
		})
	}
}

func runFailover(t *testing.T, sent *harness.RedisSentinel, tp *topology, stack *harness.Stack, trigger func(*testing.T, *harness.RedisSentinel), demoted bool) {
	checks := dialAll(t, stack)
	var cookies []string
	for range failoverUsers {
		cookies = append(cookies, loginUser(t, stack).cookie)
	}
	// Sessions the store workers own, one each, written through OpenBackend
	// on the Sentinel URL as a replica writes them.
	cfg := tp.config()
	cfg.Redis.ReadTimeout, cfg.Redis.WriteTimeout = session.DefaultConfig().Redis.ReadTimeout, session.DefaultConfig().Redis.WriteTimeout
	store := tp.open(t, cfg, nil)
	ids := make([]session.ID, failoverStoreWorkers)
	for i := range ids {
		ids[i] = sessiontest.ID(t, byte(i+1))
		if err := store.Create(t.Context(), ids[i], sessiontest.Record(time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	// Two stores as two replicas, for lock releases across the failover:
	// their release subscriptions start now, on the old master.
	lockCfg := tp.config()
	lockCfg.LockTTL, lockCfg.LockPollInterval = 30*time.Second, 20*time.Second
	var lockers [2]*session.RedisStore
	for i := range lockers {
		lockers[i] = session.NewRedisStore(tp.client(), lockCfg, keyRing(lockCfg), nil)
		t.Cleanup(func() { _ = lockers[i].Close() })
	}
	if err := wakeRound(t, lockers, sessiontest.ID(t, 100)); err != nil {
		t.Fatalf("before the failover: %v", err)
	}
	// Every session reached the replica before the failover: what T55 is
	// about is the failover, not asynchronous replication's last writes (T57).
	if err := sent.WaitReplicated(t.Context()); err != nil {
		t.Fatal(err)
	}

	announced := watchSwitch(t, sent)
	log := &callLog{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range failoverCheckWorkers {
		wg.Go(func() { checkWorker(t, log, fmt.Sprintf("check-%d", w+1), checks[0], cookies, stop) })
	}
	for w := range failoverStoreWorkers {
		wg.Go(func() { storeWorker(t, log, fmt.Sprintf("store-%d", w+1), store, ids[w], stop) })
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	time.Sleep(failoverBaseline)
	oldMaster := sent.MasterAddr
	triggered := time.Now()
	trigger(t, sent)
	// The leader announces first; the others follow once its hello
	// messages (every 2 s) reach them. A client listens to any one of them.
	var firstAnnounced, announcedAt time.Time
	var newMaster string
	limit := time.After(failoverAnnounceLimit)
	for i := range sent.SentinelAddrs {
		select {
		case a := <-announced:
			if i == 0 {
				firstAnnounced, newMaster = a.at, a.addr
			} else if a.addr != newMaster {
				t.Errorf("Sentinels announced two new masters: %s and %s", newMaster, a.addr)
			}
			announcedAt = a.at
		case <-limit:
			stopLoad()
			t.Fatalf("%d of %d Sentinels announced a new master within %s of the failover", i, len(sent.SentinelAddrs), failoverAnnounceLimit)
		}
	}
	healthyFrom := announcedAt.Add(failoverSettle)
	time.Sleep(time.Until(healthyFrom))
	var demotedAt time.Time
	if demoted {
		demotedAt = waitReplicaOf(t, sent.MasterAddr, newMaster)
	}
	time.Sleep(time.Until(maxTime(healthyFrom, demotedAt).Add(failoverVerify)))
	stopLoad()

	if newMaster == oldMaster || newMaster != sent.ReplicaAddr {
		t.Fatalf("Sentinels announced master %s; want the replica %s in place of %s", newMaster, sent.ReplicaAddr, oldMaster)
	}
	calls := log.all()
	var (
		byOutcome            = map[string]int{}
		firstErr, lastErr    time.Time
		baselineOK, verifyOK int
		slowestErr           time.Duration
		failures             []string
	)
	for _, c := range calls {
		byOutcome[c.kind+" "+c.outcome]++
		if c.outcome != "ok" && c.outcome != "conflict" {
			slowestErr = max(slowestErr, c.end.Sub(c.start))
			if firstErr.IsZero() {
				firstErr = c.start
			}
			lastErr = maxTime(lastErr, c.end)
		}
		switch {
		case c.outcome == "notFound":
			failures = append(failures, fmt.Sprintf("%s at +%s: a live session answered not found: %s", c.worker, c.start.Sub(triggered), c.detail))
		case c.outcome == "other":
			failures = append(failures, fmt.Sprintf("%s at +%s: neither ok nor 503: %s", c.worker, c.start.Sub(triggered), c.detail))
		case c.end.Before(triggered):
			if c.outcome != "ok" { // a conflict too: each worker alone writes its session
				failures = append(failures, fmt.Sprintf("%s before the failover: %s", c.worker, c.detail))
			}
			baselineOK++
		case !c.start.Before(healthyFrom):
			if c.outcome != "ok" {
				failures = append(failures, fmt.Sprintf("%s at +%s, %s after the announcement: %s", c.worker,
					c.start.Sub(triggered), c.start.Sub(announcedAt), c.detail))
			}
			verifyOK++
		}
	}
	window := time.Duration(0)
	if !firstErr.IsZero() {
		window = lastErr.Sub(firstErr)
	}
	demotion := "-"
	if demoted {
		demotion = fmt.Sprintf("%d ms", demotedAt.Sub(triggered).Milliseconds())
	}
	t.Logf("failover: new master announced %d ms (first Sentinel) to %d ms (every Sentinel) after the trigger, old master a replica after %s; %d calls %v; error window %d ms (first error +%d ms, last error +%d ms after the trigger, slowest failed call %d ms); %d acknowledged updates lost",
		firstAnnounced.Sub(triggered).Milliseconds(), announcedAt.Sub(triggered).Milliseconds(), demotion, len(calls), byOutcome, window.Milliseconds(),
		msSince(firstErr, triggered), msSince(lastErr, triggered), slowestErr.Milliseconds(), log.lost.Load())
	if len(failures) > 0 {
		if len(failures) > 10 {
			failures = append(failures[:10], fmt.Sprintf("… and %d more", len(failures)-10))
		}
		t.Errorf("%d calls broke T55:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	// Proof that the load ran on both sides of the failover.
	if baselineOK < 20 || verifyOK < 20 {
		t.Errorf("%d successful calls before the failover and %d after it settled; the load did not run", baselineOK, verifyOK)
	}

	// No session was deleted: every one is readable, through the replica
	// and from the store, on the new master, without restarting anything.
	for i, c := range cookies {
		if r := mustCheck(t, checks[0], c); r.Status != 200 {
			t.Errorf("user %d after the failover: %d %s", i, r.Status, r.Body)
		}
	}
	for i, id := range ids {
		if _, err := store.Get(t.Context(), id); err != nil {
			t.Errorf("store session %d after the failover: %v", i, err)
		}
	}
	if got, err := sent.CurrentMaster(t.Context()); err != nil || got != newMaster {
		t.Errorf("Sentinel's master now %s (%v), want %s", got, err, newMaster)
	}
	// Lock releases still reach the other replica's waiters, through
	// subscriptions made before the failover.
	if err := wakeRound(t, lockers, sessiontest.ID(t, 101)); err != nil {
		t.Errorf("after the failover: %v", err)
	}
}

// wakeRound takes a session lock on one store and releases it while the
// other waits: with a 20 s poll interval and a 5 s deadline, only the
// published release ends the wait in time.
func wakeRound(t *testing.T, st [2]*session.RedisStore, id session.ID) error {
	t.Helper()
	key := session.SessionLock(id)
	lease, err := st[0].TryLock(t.Context(), key)
	if err != nil {
		return fmt.Errorf("take the lock: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		done <- st[1].WaitUnlock(ctx, key)
	}()
	time.Sleep(200 * time.Millisecond) // the waiter is waiting
	if err := lease.Release(t.Context()); err != nil {
		return fmt.Errorf("release the lock: %w", err)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("the other store's waiter was not woken by the release: %w", err)
	}
	return nil
}

func msSince(at, since time.Time) int64 {
	if at.IsZero() {
		return 0
	}
	return at.Sub(since).Milliseconds()
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// waitReplicaOf waits (bounded) until the server at addr reports itself a
// replica of master with its link up, and says when.
func waitReplicaOf(t *testing.T, addr, master string) time.Time {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	host, port, _ := strings.Cut(master, ":")
	var last string
	for range 300 { // 300 × 100 ms: the Sentinels reconfigure it within about 20 s
		info, err := c.Info(t.Context(), "replication").Result()
		if err == nil && strings.Contains(info, "role:slave") && strings.Contains(info, "master_host:"+host+"\r") &&
			strings.Contains(info, "master_port:"+port+"\r") && strings.Contains(info, "master_link_status:up") {
			return time.Now()
		}
		last = fmt.Sprint(info, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("old master %s never became a replica of %s; last INFO:\n%s", addr, master, last)
	return time.Time{}
}

// announcement is a Sentinel's +switch-master: when it was heard and the
// new master's address.
type announcement struct {
	at   time.Time
	addr string
}

// watchSwitch subscribes to every Sentinel's +switch-master before the
// failover and delivers the first announcement: the leader announces the
// new master first, the others once they hear of it.
func watchSwitch(t *testing.T, sent *harness.RedisSentinel) <-chan announcement {
	t.Helper()
	out := make(chan announcement, len(sent.SentinelAddrs))
	for _, addr := range sent.SentinelAddrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { _ = c.Close() })
		sub := c.Subscribe(t.Context(), "+switch-master")
		if _, err := sub.Receive(t.Context()); err != nil {
			t.Fatalf("subscribe to +switch-master at %s: %v", addr, err)
		}
		t.Cleanup(func() { _ = sub.Close() })
		go func() {
			for m := range sub.Channel() {
				// <name> <old ip> <old port> <new ip> <new port>
				if f := strings.Fields(m.Payload); len(f) == 5 && f[0] == sent.MasterName {
					out <- announcement{at: time.Now(), addr: f[3] + ":" + f[4]}
					return
				}
			}
		}()
	}
	return out
}

// checkWorker sends Checks for the users' sessions, round robin, to one
// replica until stop: 200, or 503 session_store_unavailable with
// retry-after and no cookie-clearing set-cookie; a 401 would mean the
// failover ended a live session.
func checkWorker(t *testing.T, log *callLog, name string, c *harness.CheckClient, cookies []string, stop <-chan struct{}) {
	for i := range failoverMaxCalls {
		select {
		case <-stop:
			return
		case <-time.After(failoverPace):
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r, err := c.API(ctx, "/api/whoami", cookies[i%len(cookies)])
		cancel()
		cl := call{start: start, end: time.Now(), kind: "check", worker: name}
		switch {
		case err != nil:
			cl.outcome, cl.detail = "other", err.Error()
		case r.Status == 200:
			cl.outcome = "ok"
		case r.Status == 503 && strings.Contains(r.Body, "session_store_unavailable") &&
			len(r.Header["retry-after"]) == 1 && len(r.Header["set-cookie"]) == 0:
			// The session's cookie is kept: only "not found" ends a session.
			cl.outcome, cl.detail = "unavailable", r.Body
		case r.Status == 401:
			cl.outcome, cl.detail = "notFound", r.Body
		default:
			cl.outcome, cl.detail = "other", fmt.Sprintf("%d %s %v", r.Status, r.Body, r.Header)
		}
		log.add(cl)
	}
}

// storeWorker reads and updates its own session (Get, then a
// compare-and-set Update on the generation read) until stop. Within the
// failover window a conflict is an answer, not a failure (the read came
// from one master and the write went to the other); the next round reads
// again. Outside it nobody else writes the session, so none may occur.
func storeWorker(t *testing.T, log *callLog, name string, store session.Store, id session.ID, stop <-chan struct{}) {
	var acked uint64 // the generation of this worker's last acknowledged Update
	for range failoverMaxCalls {
		select {
		case <-stop:
			return
		case <-time.After(failoverPace):
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		read, written, err := getUpdate(ctx, store, id)
		cancel()
		if read != 0 && read < acked {
			log.lost.Add(int64(acked - read))
		}
		if err == nil {
			acked = written
		}
		cl := call{start: start, end: time.Now(), kind: "store", worker: name, outcome: "ok"}
		switch {
		case err == nil:
		case errors.Is(err, session.ErrConflict):
			cl.outcome, cl.detail = "conflict", err.Error()
		case errors.Is(err, session.ErrNotFound):
			cl.outcome, cl.detail = "notFound", err.Error()
		case errors.Is(err, session.ErrUnavailable):
			cl.outcome, cl.detail = "unavailable", err.Error()
		default:
			cl.outcome, cl.detail = "other", err.Error()
		}
		log.add(cl)
	}
}

// getUpdate reads the session and writes it back with a compare-and-set on
// the generation read; it returns both generations (0 when not reached).
func getUpdate(ctx context.Context, store session.Store, id session.ID) (read, written uint64, err error) {
	s, err := store.Get(ctx, id)
	if err != nil {
		return 0, 0, err
	}
	read = s.GetGeneration()
	s.AccessTokenExpiresAtUnixMs = time.Now().Add(time.Minute).UnixMilli() // Get's record is the caller's own
	if err := store.Update(ctx, id, s, read); err != nil {
		return read, 0, err
	}
	return read, s.GetGeneration(), nil
}
