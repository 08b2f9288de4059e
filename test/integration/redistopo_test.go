package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
	"github.com/envoy-bff/envoy-bff/test/harness"
)

// topology is one running Sentinel or Cluster deployment: the
// session.redis.url a replica is configured with, and a raw client of the
// same deployment for looking behind the store's back.
type topology struct {
	url string
	raw redis.UniversalClient
	// client opens another client of the deployment, as another replica would.
	client func() redis.UniversalClient
	n      atomic.Int64
}

func startCluster(t *testing.T) (*harness.RedisCluster, *topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	c, err := harness.StartCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster logs:\n%s", c.Logs(2000))
		}
		c.Close()
	})
	client := func() redis.UniversalClient { return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs}) }
	raw := client()
	t.Cleanup(func() { _ = raw.Close() })
	return c, &topology{url: c.URL(), raw: raw, client: client}
}

func startSentinel(t *testing.T, o harness.SentinelOptions) (*harness.RedisSentinel, *topology) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 40*time.Second)
	defer cancel()
	s, err := harness.StartSentinel(ctx, t.TempDir(), o)
	if err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sentinel logs:\n%s", s.Logs(3000))
		}
		s.Close()
	})
	client := func() redis.UniversalClient {
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: s.MasterName, SentinelAddrs: s.SentinelAddrs, Password: o.Password, SentinelPassword: o.SentinelPassword,
		})
	}
	raw := client()
	t.Cleanup(func() { _ = raw.Close() })
	return s, &topology{url: s.URL(), raw: raw, client: client}
}

// config is the contract suite's config on this deployment's URL under a
// fresh key prefix. The read timeout is raised from the default so a busy
// test machine does not turn a slow reply into a failure.
func (tp *topology) config() session.Config {
	cfg := sessiontest.Config()
	cfg.Backend = session.BackendRedis
	cfg.Redis.URL = tp.url
	cfg.Redis.ReadTimeout, cfg.Redis.WriteTimeout = 2*time.Second, 2*time.Second
	cfg.KeyPrefix = fmt.Sprintf("t%d:", tp.n.Add(1))
	return cfg
}

// open is a store built as cmd builds one: session.OpenBackend on the URL.
func (tp *topology) open(t *testing.T, cfg session.Config, now func() time.Time) session.Backend {
	t.Helper()
	b, err := session.OpenBackend(cfg, now)
	if err != nil {
		t.Fatalf("open backend on %s: %v", tp.url, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// topoStore is a store opened through session.OpenBackend, with the hooks
// the contract suite needs (sessiontest.RawDumper, Elapser, Rekeyer,
// LockTimer) implemented over the deployment's raw client: the store's own
// hooks exist only in the session package's test binary.
type topoStore struct {
	session.Backend
	tp  *topology
	cfg session.Config
	now func() time.Time
}

func (tp *topology) store(t *testing.T, now func() time.Time) *topoStore {
	t.Helper()
	cfg := tp.config()
	return &topoStore{Backend: tp.open(t, cfg, now), tp: tp, cfg: cfg, now: now}
}

// eachMaster runs fn on every master: all three of a Cluster, the one of
// a Sentinel deployment.
func (tp *topology) eachMaster(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	if c, ok := tp.raw.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, fn)
	}
	return fn(ctx, tp.raw.(*redis.Client))
}

// keys lists the keys matching pattern on every master.
func (tp *topology) keys(t testing.TB, pattern string) []string {
	t.Helper()
	var (
		out []string
		mu  sync.Mutex // ForEachMaster runs fn on the masters concurrently
	)
	err := tp.eachMaster(t.Context(), func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		defer mu.Unlock()
		out = append(out, ks...)
		return err
	})
	if err != nil {
		t.Fatalf("list keys %s: %v", pattern, err)
	}
	return out
}

// RawValues implements sessiontest.RawDumper over this store's prefix.
func (s *topoStore) RawValues(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, k := range s.tp.keys(t, s.cfg.KeyPrefix+"*") {
		if strings.HasSuffix(k, "}:t") { // a session's derived tokens: a hash of sealed values
			vs, err := s.tp.raw.HVals(t.Context(), k).Result()
			if err != nil {
				t.Fatalf("read %s: %v", k, err)
			}
			for _, v := range vs {
				out = append(out, []byte(v))
			}
			continue
		}
		v, err := s.tp.raw.Get(t.Context(), k).Bytes()
		if errors.Is(err, redis.Nil) || err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE") {
			continue // gone meanwhile, or an index (a sorted set of refs)
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		out = append(out, v)
	}
	return out
}

// elapseScript shortens a key's TTL by ARGV[1] ms, deleting it if that runs out.
var elapseScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return 0 end
local left = ttl - tonumber(ARGV[1])
if left <= 0 then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], left) end
return 1
`)

// Elapse implements sessiontest.Elapser: d passes for this store's TTLs.
func (s *topoStore) Elapse(t testing.TB, d time.Duration) {
	t.Helper()
	for _, k := range s.tp.keys(t, s.cfg.KeyPrefix+"*") {
		if err := elapseScript.Run(t.Context(), s.tp.raw, []string{k}, d.Milliseconds()).Err(); err != nil {
			t.Fatalf("elapse %s: %v", k, err)
		}
	}
}

// CopySealedDerived implements sessiontest.DerivedCopier with HGET and
// HSET through the raw client. The contract suite copies within this
// store's own (default) keyspace only.
func (s *topoStore) CopySealedDerived(t testing.TB, _, _ session.Store, fromID, toID session.ID, fromProfile, toProfile string) {
	t.Helper()
	ring := keyRing(s.cfg)
	src := s.cfg.KeyPrefix + "{" + ring.HashID(fromID) + "}:t"
	dst := s.cfg.KeyPrefix + "{" + ring.HashID(toID) + "}:t"
	v, err := s.tp.raw.HGet(t.Context(), src, fromProfile).Result()
	if err != nil {
		t.Fatalf("hget %s %s: %v", src, fromProfile, err)
	}
	if err := s.tp.raw.HSet(t.Context(), dst, toProfile, v).Err(); err != nil {
		t.Fatalf("hset %s: %v", dst, err)
	}
	if err := s.tp.raw.Expire(t.Context(), dst, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// WithKeyRing implements sessiontest.Rekeyer: the same keys through the
// raw client, sealed with ring.
func (s *topoStore) WithKeyRing(ring *session.KeyRing) session.Store {
	return session.NewRedisStore(s.tp.raw, s.cfg, ring, s.now)
}

// WithLockTiming implements sessiontest.LockTimer: the same keys through
// the raw client, with its own release subscription. (Config validation
// would refuse the suite's poll intervals longer than the lock TTL, so this
// store is built directly rather than through OpenBackend.)
func (s *topoStore) WithLockTiming(ttl, poll time.Duration) session.Store {
	cfg := s.cfg
	cfg.LockTTL, cfg.LockPollInterval = ttl, poll
	return session.NewRedisStore(s.tp.raw, cfg, keyRing(s.cfg), s.now)
}

func keyRing(cfg session.Config) *session.KeyRing {
	r, err := session.NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
	if err != nil {
		panic(err) // sessiontest.Config's keys are valid
	}
	return r
}

// TestRedisClusterStore runs the Store contract against a real three-node
// Redis Cluster through the Cluster URL form, and checks what only a
// Cluster can get wrong: one session's keys in one slot, and lock releases
// published on one node reaching waiters subscribed on another.
func TestRedisClusterStore(t *testing.T) {
	t.Parallel()
	cluster, tp := startCluster(t)

	t.Run("contract", func(t *testing.T) {
		sessiontest.RunStoreTests(t, func(t *testing.T, now func() time.Time) session.Store {
			return tp.store(t, now)
		})
	})

	t.Run("one session's keys share one slot; sessions spread over the nodes", func(t *testing.T) {
		s := tp.store(t, nil)
		nodes := map[string]bool{}
		for seed := byte(1); seed <= 12; seed++ {
			id := sessiontest.ID(t, seed)
			if err := s.Create(t.Context(), id, sessiontest.Record(time.Now())); err != nil {
				t.Fatal(err)
			}
			if _, err := s.TryLock(t.Context(), session.SessionLock(id)); err != nil {
				t.Fatal(err)
			}
			tag := "{" + keyRing(s.cfg).HashID(id) + "}"
			var perSession []string
			for _, k := range tp.keys(t, s.cfg.KeyPrefix+"*") {
				if strings.Contains(k, tag) {
					perSession = append(perSession, k)
				}
			}
			if len(perSession) != 2 {
				t.Fatalf("session %d: keys %q, want its record and its refresh lock", seed, perSession)
			}
			slots := map[int64]bool{}
			for _, k := range perSession {
				slot, err := tp.raw.ClusterKeySlot(t.Context(), k).Result()
				if err != nil {
					t.Fatal(err)
				}
				slots[slot] = true
			}
			if len(slots) != 1 {
				t.Fatalf("session %d: keys %q hash to slots %v, want one", seed, perSession, slots)
			}
			nodes[nodeOf(t, tp, perSession[0])] = true
		}
		// Proof that the Cluster really was exercised across nodes.
		if len(nodes) < 2 {
			t.Fatalf("12 sessions all on node(s) %v", nodes)
		}
	})

	t.Run("one seed with cluster=true reaches every node", func(t *testing.T) {
		// A configuration endpoint (one name in front of the Cluster) is one host.
		cfg := tp.config()
		cfg.Redis.URL = "redis://" + cluster.Addrs[1] + "?cluster=true"
		s := tp.open(t, cfg, nil)
		nodes := map[string]bool{}
		for seed := byte(1); seed <= 12; seed++ {
			id := sessiontest.ID(t, seed)
			if err := s.Create(t.Context(), id, sessiontest.Record(time.Now())); err != nil {
				t.Fatalf("session %d: %v", seed, err)
			}
			if _, err := s.Get(t.Context(), id); err != nil {
				t.Fatalf("session %d: %v", seed, err)
			}
			nodes[nodeOf(t, tp, cfg.KeyPrefix+"{"+keyRing(cfg).HashID(id)+"}:s")] = true
		}
		if len(nodes) < 2 {
			t.Fatalf("12 sessions all on node(s) %v", nodes)
		}
	})

	t.Run("a release published on one node wakes a waiter subscribed on another", func(t *testing.T) {
		// Two stores, as two replicas: each its own OpenBackend client. Polling
		// every 20 s and a 5 s deadline: only the published release ends a wait.
		cfg := tp.config()
		cfg.LockTTL, cfg.LockPollInterval = 30*time.Second, 20*time.Second
		var stores [2]*session.RedisStore
		for i := range stores {
			stores[i] = session.NewRedisStore(tp.client(), cfg, keyRing(cfg), nil)
			t.Cleanup(func() { _ = stores[i].Close() })
		}
		// The release subscription lives on the node owning the channel's
		// slot; pick sessions whose locks live elsewhere.
		channelNode := nodeOf(t, tp, cfg.KeyPrefix+"lock-released")
		var ids []session.ID
		for seed := byte(1); seed < 100 && len(ids) < 2; seed++ {
			id := sessiontest.ID(t, seed)
			if nodeOf(t, tp, cfg.KeyPrefix+"{"+keyRing(cfg).HashID(id)+"}:lk") != channelNode {
				ids = append(ids, id)
			}
		}
		if len(ids) < 2 {
			t.Fatal("no session whose lock is off the channel's node")
		}
		for dir, pair := range [][2]int{{0, 1}, {1, 0}} {
			holder, waiter := stores[pair[0]], stores[pair[1]]
			key := session.SessionLock(ids[dir])
			lease, err := holder.TryLock(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := waiter.TryLock(t.Context(), key); !errors.Is(err, session.ErrLocked) {
				t.Fatalf("store %d: TryLock on a lock store %d holds: %v, want ErrLocked", pair[1], pair[0], err)
			}
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				done <- waiter.WaitUnlock(ctx, key)
			}()
			time.Sleep(200 * time.Millisecond) // the waiter is waiting
			if err := lease.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("store %d was not woken by store %d's release on another node: %v", pair[1], pair[0], err)
			}
		}
	})
}

// nodeOf is the address of the master owning key's slot.
func nodeOf(t *testing.T, tp *topology, key string) string {
	t.Helper()
	c := tp.raw.(*redis.ClusterClient)
	slot, err := c.ClusterKeySlot(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	//lint:ignore SA1019 CLUSTER SLOTS gives the slot ranges this test walks; Redis 7 still serves it
	ranges, err := c.ClusterSlots(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) {
			return r.Nodes[0].Addr
		}
	}
	t.Fatalf("slot %d of %s has no owner", slot, key)
	return ""
}

// TestRedisSentinelStore runs the Store contract against a real Sentinel
// deployment (a master, its replica, three Sentinels) through the Sentinel
// URL form.
func TestRedisSentinelStore(t *testing.T) {
	t.Parallel()
	_, tp := startSentinel(t, harness.SentinelOptions{Sentinels: 3})
	sessiontest.RunStoreTests(t, func(t *testing.T, now func() time.Time) session.Store {
		return tp.store(t, now)
	})
}

// TestRedisSentinelAuth: the Sentinel URL form reaches a master with a
// password whether its Sentinels share that password, have none
// (sentinel_password= empty) or have their own (sentinel_password=…).
func TestRedisSentinelAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		sentinelPassword string
		wantParam        string // what the URL carries for the Sentinels
	}{
		{name: "sentinels_share_the_password", sentinelPassword: "data-pw", wantParam: ""},
		{name: "sentinels_without_a_password", sentinelPassword: "", wantParam: "sentinel_password=&"},
		{name: "sentinels_with_their_own", sentinelPassword: "sentinel-pw", wantParam: "sentinel_password=sentinel-pw"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, tp := startSentinel(t, harness.SentinelOptions{Sentinels: 1, Password: "data-pw", SentinelPassword: tc.sentinelPassword})
			if !strings.Contains(tp.url+"&", tc.wantParam) || tc.wantParam == "" && strings.Contains(tp.url, "sentinel_password") {
				t.Fatalf("URL %s does not carry %q", tp.url, tc.wantParam)
			}
			s := tp.open(t, tp.config(), nil)
			if err := s.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
			id := sessiontest.ID(t, 1)
			if err := s.Create(t.Context(), id, sessiontest.Record(time.Now())); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisClusterReplicas drives two real envoy-bff replicas on the
// Cluster URL through Envoy: logins whose sessions land on different nodes,
// a refresh on the other replica (lock, compare-and-set, release across
// nodes), then logout ends the session on both (T8).
func TestRedisClusterReplicas(t *testing.T) {
	t.Parallel()
	t.Run("no_cache", func(t *testing.T) { t.Parallel(); testRedisClusterReplicas(t, false) })
	// The session cache's change messages and acknowledgements cross nodes
	// through the Cluster bus: refreshes and the logout still reach both.
	t.Run("session_cache", func(t *testing.T) { t.Parallel(); testRedisClusterReplicas(t, true) })
}

func testRedisClusterReplicas(t *testing.T, cached bool) {
	cluster, tp := startCluster(t)
	s := startStack(t, harness.Options{
		Replicas:       2,
		RedisURL:       cluster.URL(),
		AccessTokenTTL: 2 * time.Second,
		BFFConfig: func(doc map[string]any) {
			doc["log"] = map[string]any{"level": "info", "format": "json"}
			doc["session"].(map[string]any)["lock_ttl"] = "3s"
			doc["oidc"].(map[string]any)["provider_timeout"] = "2s"
			if cached {
				doc["session"].(map[string]any)["cache"] = map[string]any{"ttl": "30s"}
			}
		},
	})
	checks := dialAll(t, s)
	var users []*scaleUser
	nodes := map[string]bool{}
	for range 6 {
		u := loginUser(t, s)
		users = append(users, u)
		for _, k := range tp.keys(t, "bff:{*}:s") {
			nodes[nodeOf(t, tp, k)] = true
		}
	}
	if len(nodes) < 2 {
		t.Fatalf("6 sessions all on node(s) %v", nodes)
	}
	for i, u := range users {
		old := u.lastBearer(t, checks[0])
		if fresh := untilNewBearer(t, checks[1], u.cookie, old); fresh == "" {
			t.Fatalf("user %d: no refresh through replica 2 on the Cluster", i)
		}
		if r := mustCheck(t, checks[0], u.cookie); r.Status != 200 {
			t.Fatalf("user %d on replica 1 after the refresh: %d %s", i, r.Status, r.Body)
		}
	}
	b := users[0].browser
	logout, _ := b.api("/bff/user").json(t)["logoutUrl"].(string)
	if r := b.get(logout); r.Status != 302 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	for i, c := range checks {
		if r := mustCheck(t, c, users[0].cookie); r.Status != 401 {
			t.Fatalf("T8 replica %d after logout: %d %s", i+1, r.Status, r.Body)
		}
	}
	if got, err := s.ReadSession(t.Context(), strings.TrimPrefix(users[1].cookie, "__Host-bff=")); err != nil || got.GetSubject() == "" {
		t.Fatalf("another user's session, read from the Cluster: %v %v", got, err)
	}
	if cached {
		for i, b := range s.BFFs {
			// Two reads in a row of one session: the second is served from
			// the cache (a refresh between them would make it a miss, so a
			// few pairs).
			for range 5 {
				mustCheck(t, checks[i], users[1].cookie)
				mustCheck(t, checks[i], users[1].cookie)
			}
			if hits := metric(t, b, `envoy_bff_session_cache_hits_total{frontend="default"}`); hits == 0 {
				t.Errorf("replica %d: no reads served from its cache on the Cluster", i+1)
			}
		}
	}
}
