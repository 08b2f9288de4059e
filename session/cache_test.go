package session_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// replica is one envoy-bff replica's view of a shared Redis: its own
// client (connections), store and cache, as in separate processes.
type replica struct {
	store *session.RedisStore
	cache *session.Cache
	log   *commandLog
}

// newReplicas starts n caches over one redis-server and one key prefix,
// each on its own client, and waits until every cache serves.
func newReplicas(t *testing.T, addr string, n int) []*replica {
	t.Helper()
	cfg := sessiontest.Config()
	cfg.KeyPrefix = "cache:"
	cfg.Backend = session.BackendRedis
	cfg.Cache = session.CacheConfig{TTL: time.Minute, MaxEntries: 1000}
	var out []*replica
	for range n {
		client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
		log := &commandLog{}
		client.AddHook(log)
		t.Cleanup(func() { _ = client.Close() })
		store := session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)
		cache, err := session.NewCache(store, cfg.Cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		sessiontest.RunCache(t, cache)
		out = append(out, &replica{store: store, cache: cache, log: log})
	}
	return out
}

// waitFor polls cond every 10 ms for at most 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for: %s", what)
}

func newSession(t *testing.T, s session.Store, sub string) session.ID {
	t.Helper()
	id := randomID(t)
	rec := &sessionpb.Session{SchemaVersion: 1, Issuer: "https://idp", Subject: sub, Sid: "sid-" + sub, AccessToken: "at-" + sub, RefreshToken: "rt-" + sub}
	if err := s.Create(t.Context(), id, rec); err != nil {
		t.Fatal(err)
	}
	return id
}

func randomID(t *testing.T) session.ID {
	t.Helper()
	id, err := session.NewID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCacheServesRepeatedReadsWithoutRedis(t *testing.T) {
	t.Parallel()
	r := newReplicas(t, sessiontest.StartRedis(t), 1)[0]
	id := newSession(t, r.store, "alice")
	r.log.take()
	for range 5 {
		s, err := r.cache.Get(t.Context(), id)
		if err != nil || s.GetAccessToken() != "at-alice" {
			t.Fatalf("Get = %v, %v", s, err)
		}
	}
	if got := r.log.take(); !slices.Equal(got, []string{"getex"}) {
		t.Fatalf("Redis commands for 5 reads = %v, want one getex", got)
	}
	st := r.cache.Stats()
	if st.Hits != 4 || st.Misses != 1 || st.Entries != 1 {
		t.Fatalf("stats = %+v, want 4 hits, 1 miss, 1 entry", st)
	}
	// Unknown sessions are never cached: each read asks Redis.
	unknown := randomID(t)
	for range 2 {
		if _, err := r.cache.Get(t.Context(), unknown); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("unknown Get err = %v, want ErrNotFound", err)
		}
	}
	if got := r.log.take(); len(got) != 2 {
		t.Fatalf("Redis commands for 2 unknown reads = %v, want 2", got)
	}
}

// TestCacheChangesReachEveryReplica is the revocation guarantee: once a
// logout, back-channel logout, admin revoke or refresh returns on one
// replica, the very next read on every replica sees it, while other reads
// hammer the caches (the race between a miss and an invalidation).
func TestCacheChangesReachEveryReplica(t *testing.T) {
	t.Parallel()
	reps := newReplicas(t, sessiontest.StartRedis(t), 3)
	ctx := t.Context()

	var stop atomic.Bool
	var hammer sync.WaitGroup
	var current atomic.Pointer[session.ID]
	for _, r := range reps {
		hammer.Go(func() {
			for deadline := time.Now().Add(time.Minute); !stop.Load() && time.Now().Before(deadline); {
				if id := current.Load(); id != nil {
					_, _ = r.cache.Get(ctx, *id)
				}
				time.Sleep(50 * time.Microsecond) // leave the machine's cores to the replicas' subscriptions
			}
		})
	}
	defer func() { stop.Store(true); hammer.Wait() }()

	ends := []struct {
		name string
		end  func(r *replica, id session.ID, sub string) error
	}{
		{"logout", func(r *replica, id session.ID, _ string) error { return r.store.Delete(ctx, id) }},
		{"backchannel_or_admin_by_ref", func(r *replica, _ session.ID, sub string) error {
			refs, err := r.store.FindSessions(ctx, "https://idp", sub, "sid-"+sub)
			if err != nil {
				return err
			}
			if len(refs) != 1 {
				return fmt.Errorf("found %d sessions by sid, want 1", len(refs))
			}
			return r.store.DeleteByRef(ctx, refs[0])
		}},
		{"authz_delete", func(r *replica, id session.ID, _ string) error { return r.cache.Delete(ctx, id) }},
	}
	for round := range 30 {
		e := ends[round%len(ends)]
		by := reps[round%3]
		sub := fmt.Sprintf("user-%d", round)
		id := newSession(t, by.store, sub)
		current.Store(&id)
		for _, r := range reps {
			if _, err := r.cache.Get(ctx, id); err != nil {
				t.Fatalf("round %d: warm: %v", round, err)
			}
		}

		// A refresh on one replica: the others pass the new token next.
		cur, err := by.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cur.AccessToken = fmt.Sprintf("at-refreshed-%d", round)
		if err := by.store.Update(ctx, id, cur, cur.GetGeneration()); err != nil {
			t.Fatalf("round %d: update: %v", round, err)
		}
		for i, r := range reps {
			// A refresh needs no acknowledgement (the old token is still
			// valid), so the other replicas hear of it within a bounded wait.
			waitFor(t, fmt.Sprintf("replica %d sees the refresh", i), func() bool {
				s, err := r.cache.Get(ctx, id)
				return err == nil && s.GetAccessToken() == cur.AccessToken
			})
		}

		if err := e.end(reps[(round+1)%3], id, sub); err != nil {
			t.Fatalf("round %d %s: %v", round, e.name, err)
		}
		for i, r := range reps {
			if s, err := r.cache.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
				t.Fatalf("round %d %s: replica %d read %v, %v right after the session ended; want ErrNotFound", round, e.name, i, s.GetSubject(), err)
			}
		}
	}
	for i, r := range reps {
		if st := r.cache.Stats(); st.AckTimeouts != 0 || st.Hits == 0 {
			t.Fatalf("replica %d stats %+v: want hits and no ack timeouts", i, st)
		}
	}
}

// TestCacheEmptiesWhenItMayHaveMissedAChange: a change whose message never
// arrived (here a raw DEL, as while the subscription was down) cannot
// survive the cache's resubscription, and while down it serves nothing.
func TestCacheEmptiesWhenItMayHaveMissedAChange(t *testing.T) {
	t.Parallel()
	addr := sessiontest.StartRedis(t)
	r := newReplicas(t, addr, 1)[0]
	ctx := t.Context()
	id := newSession(t, r.store, "bob")
	if _, err := r.cache.Get(ctx, id); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.Del(ctx, r.store.SessionKey(id)).Err(); err != nil {
		t.Fatal(err)
	}
	// The cache did not hear of that DEL, so it still serves the session...
	if _, err := r.cache.Get(ctx, id); err != nil {
		t.Fatalf("before the reconnect: %v (the cache should still hold it)", err)
	}
	resets := r.cache.Stats().Resets
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// ...until its subscription drops, which empties it.
	waitFor(t, "cache resubscribed", func() bool {
		st := r.cache.Stats()
		return st.Resets >= resets+2 && st.Live
	})
	if _, err := r.cache.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after the reconnect: err = %v, want ErrNotFound", err)
	}
}

func TestCacheNeedsRedis(t *testing.T) {
	t.Parallel()
	cfg := sessiontest.Config()
	mem := session.NewMemoryStore(cfg, sessiontest.KeyRing(t), nil)
	if _, err := session.NewCache(mem, session.CacheConfig{TTL: time.Second, MaxEntries: 10}, nil); err == nil {
		t.Fatal("NewCache over a memory store: want an error")
	}
}

func TestCacheHoldsAtMostMaxEntries(t *testing.T) {
	t.Parallel()
	store, cache := newCache(t, sessiontest.KeyRing(t), 3)
	ctx := t.Context()
	for i := range 10 {
		id := newSession(t, store, fmt.Sprintf("u%d", i))
		if _, err := cache.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
		if n := cache.Stats().Entries; n > 3 {
			t.Fatalf("after %d sessions the cache holds %d, want at most 3", i+1, n)
		}
	}
	if n := cache.Stats().Entries; n != 3 {
		t.Fatalf("cache holds %d, want 3", n)
	}
}

// A removed key ends the sessions it sealed (they read as not found); the
// cache must not keep serving them after the rotation.
func TestCacheForgetsSessionsOfARemovedKey(t *testing.T) {
	t.Parallel()
	ring := sessiontest.KeyRing(t)
	store, cache := newCache(t, ring, 10)
	ctx := t.Context()

	id := newSession(t, store, "carol")
	for range 2 {
		if _, err := cache.Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := ring.Rotate(session.KeyList{{ID: "k2", Secret: secretB}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after its key was removed: err = %v, want ErrNotFound", err)
	}
}

// newCache is one store and cache on a redis-server of its own, with its
// subscription running until the test ends.
func newCache(t *testing.T, ring *session.KeyRing, maxEntries int) (*session.RedisStore, *session.Cache) {
	t.Helper()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sessiontest.StartRedis(t)}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	store := session.NewRedisStore(client, sessiontest.Config(), ring, nil)
	cache, err := session.NewCache(store, session.CacheConfig{TTL: time.Minute, MaxEntries: maxEntries}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sessiontest.RunCache(t, cache)
	return store, cache
}

// TestCachePerFrontend: a cache on frontend A's view follows A's changes
// alone: a delete of the same session ID in frontend B, on any replica,
// leaves A's cached session, and a delete in A, made on another replica,
// drops it. Each frontend's cache registers its metrics in one registry.
func TestCachePerFrontend(t *testing.T) {
	t.Parallel()
	addr := sessiontest.StartRedis(t)
	cfg := sessiontest.Config()
	cfg.KeyPrefix = "fe:"
	cacheCfg := session.CacheConfig{TTL: time.Minute, MaxEntries: 100}
	replica := func() *session.RedisStore {
		client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = client.Close() })
		return session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)
	}
	open := func(b session.Backend, name string) session.Backend {
		v, err := b.Frontend(name, cfg.FrontendDefaults())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	reg := prometheus.NewRegistry()
	one, two := replica(), replica()
	instrumented, err := session.Instrument(one, reg)
	if err != nil {
		t.Fatal(err)
	}
	caches := map[string]*session.Cache{}
	for _, name := range []string{"shop", "admin", session.DefaultFrontend} {
		c, err := session.NewCache(open(instrumented, name), cacheCfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		unregister, err := c.Register(reg)
		if err != nil {
			t.Fatalf("registering %s's cache next to the others: %v", name, err)
		}
		if name == "shop" {
			// A reload replaces shop's cache: the old one's series go, the
			// new one registers under the same label.
			unregister()
			if _, err := c.Register(reg); err != nil {
				t.Fatalf("registering shop's cache again after unregister: %v", err)
			}
		}
		sessiontest.RunCache(t, c)
		caches[name] = c
	}
	ctx := t.Context()
	id := randomID(t)
	for _, name := range []string{"shop", "admin"} {
		rec := &sessionpb.Session{SchemaVersion: 1, Issuer: "https://idp", Subject: name}
		if err := open(two, name).Create(ctx, id, rec); err != nil {
			t.Fatal(err)
		}
		if s, err := caches[name].Get(ctx, id); err != nil || s.GetSubject() != name {
			t.Fatalf("%s's cache reads %v, %v", name, s, err)
		}
		if _, ok := caches[name].Peek(id); !ok {
			t.Fatalf("%s's cache does not hold the session it read", name)
		}
	}
	if _, err := caches[session.DefaultFrontend].Get(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the default frontend's cache reads another frontend's session: %v", err)
	}

	tests := []struct {
		name      string
		deleteVia session.Store
		wantShop  bool // whether shop's cache still serves the session
	}{
		{name: "admin_on_the_same_replica", deleteVia: open(one, "admin"), wantShop: true},
		{name: "default_on_another_replica", deleteVia: open(two, session.DefaultFrontend), wantShop: true},
		{name: "shop_on_another_replica", deleteVia: open(two, "shop"), wantShop: false},
	}
	for _, tc := range tests { // sequential: each row deletes in the same caches' Redis
		if err := tc.deleteVia.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
		if tc.wantShop {
			time.Sleep(100 * time.Millisecond) // what a wrongly heard message would need to arrive
			if s, ok := caches["shop"].Peek(id); !ok || s.GetSubject() != "shop" {
				t.Fatalf("%s: shop's cache lost its session (%v)", tc.name, ok)
			}
			continue
		}
		waitFor(t, tc.name+": shop's cache drops the session", func() bool { _, ok := caches["shop"].Peek(id); return !ok })
	}
	if _, ok := caches["admin"].Peek(id); ok {
		t.Fatal("admin's cache still serves a session deleted in admin")
	}

	byFrontend := map[string]bool{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "envoy_bff_session_cache_hits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "frontend" {
					byFrontend[l.GetValue()] = true
				}
			}
		}
	}
	if len(byFrontend) != 3 || !byFrontend["shop"] || !byFrontend["admin"] || !byFrontend[session.DefaultFrontend] {
		t.Fatalf("cache hit series by frontend: %v", byFrontend)
	}
}

// TestCacheTTLWithinViewIdle: a cache hit does not renew the idle timeout,
// so a view whose idle timeout is shorter than twice the TTL gets no cache.
func TestCacheTTLWithinViewIdle(t *testing.T) {
	t.Parallel()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}})
	t.Cleanup(func() { _ = client.Close() })
	root := session.NewRedisStore(client, sessiontest.Config(), sessiontest.KeyRing(t), nil)
	fc := sessiontest.Config().FrontendDefaults()
	fc.IdleTimeout = time.Minute
	v, err := root.Frontend("shop", fc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ttl     time.Duration
		wantErr bool
	}{
		{name: "half_of_idle", ttl: 30 * time.Second},
		{name: "over_half_of_idle", ttl: 31 * time.Second, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := session.NewCache(v, session.CacheConfig{TTL: tc.ttl, MaxEntries: 10}, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewCache(ttl %s) = %v, want error %v", tc.ttl, err, tc.wantErr)
			}
		})
	}
}
