package session_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// redisEnv is one redis-server and client shared by a top-level test; each
// store gets its own key prefix, so stores never see each other's keys.
type redisEnv struct {
	addr   string
	client redis.UniversalClient
	n      atomic.Int64
}

func newRedisEnv(t *testing.T) *redisEnv {
	t.Helper()
	addr := sessiontest.StartRedis(t)
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = client.Close() })
	return &redisEnv{addr: addr, client: client}
}

func (e *redisEnv) store(t *testing.T, now func() time.Time) *session.RedisStore {
	t.Helper()
	cfg := sessiontest.Config()
	cfg.KeyPrefix = fmt.Sprintf("t%d:", e.n.Add(1))
	return session.NewRedisStore(e.client, cfg, sessiontest.KeyRing(t), now)
}

func TestRedisStoreContract(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	sessiontest.RunStoreTests(t, func(t *testing.T, now func() time.Time) session.Store {
		return env.store(t, now)
	})
}

func TestRedisStoreFrontends(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	sessiontest.RunFrontendTests(t, func(t *testing.T, now func() time.Time) session.Backend {
		return env.store(t, now)
	})
}

// commandLog records the commands a client sends.
type commandLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, cmd.Name())
		l.mu.Unlock()
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook logs a pipeline, one round trip, as one entry:
// its commands in brackets.
func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		l.mu.Lock()
		l.cmds = append(l.cmds, "["+strings.Join(names, " ")+"]")
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (l *commandLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cmds
	l.cmds = nil
	return c
}

func TestRedisStoreRoundTripsAndTTLs(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	log := &commandLog{}
	client := redis.NewClient(&redis.Options{Addr: env.addr})
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(log)
	clock := sessiontest.NewClock(sessiontest.Epoch)
	cfg := sessiontest.Config()
	s := session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), clock.Now)
	ttl := func(key string) time.Duration {
		t.Helper()
		d, err := env.client.PTTL(t.Context(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := client.Ping(t.Context()).Err(); err != nil { // settle the connection
		t.Fatal(err)
	}
	log.take()

	tests := []struct {
		name     string
		run      func(t *testing.T, id session.ID)
		wantCmds string
		wantTTL  time.Duration // 0: no check
	}{
		{
			name:     "create_sets_idle_ttl",
			run:      func(t *testing.T, id session.ID) { mustCreate(t, s, id, sessiontest.Record(clock.Now())) },
			wantCmds: "evalsha evalsha set", // the user and sid index entries first, then the record
			wantTTL:  cfg.IdleTimeout,
		},
		{
			name: "create_ttl_cut_by_absolute",
			run: func(t *testing.T, id session.ID) {
				rec := sessiontest.Record(clock.Now())
				rec.AbsoluteExpiresAtUnixMs = clock.Now().Add(5 * time.Minute).UnixMilli()
				mustCreate(t, s, id, rec)
			},
			wantCmds: "evalsha evalsha set", // the user and sid index entries first, then the record
			wantTTL:  5 * time.Minute,
		},
		{
			name: "get_is_one_getex",
			run: func(t *testing.T, id session.ID) {
				mustCreate(t, s, id, sessiontest.Record(clock.Now()))
				if err := env.client.PExpire(t.Context(), s.SessionKey(id), time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
				log.take()
				if _, err := s.Get(t.Context(), id); err != nil {
					t.Fatal(err)
				}
			},
			wantCmds: "getex",
			wantTTL:  cfg.IdleTimeout,
		},
		{
			name: "inspect_is_one_round_trip_and_keeps_the_ttl",
			run: func(t *testing.T, id session.ID) {
				mustCreate(t, s, id, sessiontest.Record(clock.Now()))
				if err := env.client.PExpire(t.Context(), s.SessionKey(id), time.Minute).Err(); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.Inspect(t.Context(), id); err != nil { // the client's first MULTI may dial
					t.Fatal(err)
				}
				log.take()
				_, at, err := s.Inspect(t.Context(), id)
				if err != nil {
					t.Fatal(err)
				}
				if left := at.Sub(clock.Now()); left > time.Minute || left < time.Minute-5*time.Second {
					t.Errorf("Inspect says %v left, want about the key's 1m TTL", left)
				}
			},
			wantCmds: "[multi get pttl exec]",
			wantTTL:  time.Minute,
		},
		{
			name: "update_is_one_script",
			run: func(t *testing.T, id session.ID) {
				rec := sessiontest.Record(clock.Now())
				mustCreate(t, s, id, rec)
				if err := s.Update(t.Context(), id, rec, 1); err != nil { // loads the script
					t.Fatal(err)
				}
				log.take()
				if err := s.Update(t.Context(), id, rec, 2); err != nil {
					t.Fatal(err)
				}
			},
			wantCmds: "evalsha",
			wantTTL:  cfg.IdleTimeout,
		},
	}
	mustCreate(t, s, sessiontest.ID(t, 200), sessiontest.Record(clock.Now())) // loads the index script
	for i, tc := range tests {                                                // sequential: they share one command log
		t.Run(tc.name, func(t *testing.T) {
			id := sessiontest.ID(t, byte(i+1))
			log.take()
			tc.run(t, id)
			if got := strings.Join(log.take(), " "); got != tc.wantCmds {
				t.Errorf("commands %q, want %q", got, tc.wantCmds)
			}
			if tc.wantTTL != 0 {
				if got := ttl(s.SessionKey(id)); got > tc.wantTTL || got < tc.wantTTL-5*time.Second {
					t.Errorf("TTL %v, want about %v", got, tc.wantTTL)
				}
			}
		})
	}
}

func TestRedisStoreKeyLayout(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	s := env.store(t, nil)
	ring := sessiontest.KeyRing(t)
	id := sessiontest.ID(t, 1)
	mustCreate(t, s, id, sessiontest.Record(time.Now()))
	if err := s.PutLoginState(t.Context(), "st", "b", loginStateForTest()); err != nil {
		t.Fatal(err)
	}
	keys, err := env.client.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Fatalf("keys %q, want the session, the login state and two indexes", keys)
	}
	want := "{" + ring.HashID(id) + "}:s"
	var sawSession, sawLogin bool
	for _, k := range keys {
		sawSession = sawSession || strings.HasSuffix(k, want) && strings.HasPrefix(k, "t1:")
		sawLogin = sawLogin || strings.HasPrefix(k, "t1:{") && strings.HasSuffix(k, "}:l")
		rec := sessiontest.Record(time.Now())
		if strings.Contains(k, id.String()) || strings.Contains(k, "st}") || strings.Contains(k, rec.Subject) || strings.Contains(k, rec.Sid) {
			t.Errorf("key %q holds a secret in clear", k)
		}
	}
	for _, k := range keys {
		// Every key expires by itself: nothing, indexes included, grows without bound.
		if ttl, err := env.client.PTTL(t.Context(), k).Result(); err != nil || ttl <= 0 || ttl > sessiontest.Config().AbsoluteLifetime {
			t.Errorf("key %q has TTL %v (%v)", k, ttl, err)
		}
	}
	if !sawSession || !sawLogin {
		t.Errorf("keys %q, want t1:%s and t1:{…}:l", keys, want)
	}
}

// TestRedisStoreRejectsMovedRecords: a record copied under another key, or
// with its clear generation edited, no longer opens (it is bound by GCM's
// additional data).
func TestRedisStoreRejectsMovedRecords(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	tests := []struct {
		name   string
		tamper func(t *testing.T, s *session.RedisStore, victim, attacker session.ID)
	}{
		{
			name: "copied_to_another_session",
			tamper: func(t *testing.T, s *session.RedisStore, victim, attacker session.ID) {
				v := env.client.Get(t.Context(), s.SessionKey(victim)).Val()
				env.client.Set(t.Context(), s.SessionKey(attacker), v, time.Hour)
			},
		},
		{
			name: "generation_edited",
			tamper: func(t *testing.T, s *session.RedisStore, _, attacker session.ID) {
				env.client.SetRange(t.Context(), s.SessionKey(attacker), 8, "\x07")
			},
		},
		{
			name: "ciphertext_edited",
			tamper: func(t *testing.T, s *session.RedisStore, _, attacker session.ID) {
				v := []byte(env.client.Get(t.Context(), s.SessionKey(attacker)).Val())
				v[len(v)-1] ^= 1
				env.client.Set(t.Context(), s.SessionKey(attacker), v, time.Hour)
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := env.store(t, nil)
			victim, attacker := sessiontest.ID(t, 1), sessiontest.ID(t, 2)
			mustCreate(t, s, victim, sessiontest.Record(time.Now()))
			mustCreate(t, s, attacker, sessiontest.Record(time.Now()))
			tc.tamper(t, s, victim, attacker)
			_, err := s.Get(t.Context(), attacker)
			if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) {
				t.Fatalf("Get = %v, want ErrNotFound and ErrUnreadable", err)
			}
		})
	}
}

// TestRedisStoreUnavailable: only redis.Nil is "not found"; everything else
// is ErrUnavailable, so a Redis outage never ends a session.
func TestRedisStoreUnavailable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	env := newRedisEnv(t)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name string
		addr string
		ctx  context.Context
	}{
		{name: "connection_refused", addr: dead, ctx: t.Context()},
		{name: "context_canceled", addr: env.addr, ctx: canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := redis.NewClient(&redis.Options{Addr: tc.addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1})
			t.Cleanup(func() { _ = client.Close() })
			s := session.NewRedisStore(client, sessiontest.Config(), sessiontest.KeyRing(t), nil)
			id := sessiontest.ID(t, 1)
			_, getErr := s.Get(tc.ctx, id)
			_, takeErr := s.TakeLoginState(tc.ctx, "st", "b")
			_, getDerivedErr := s.GetDerivedToken(tc.ctx, id, "orders")
			_, _, withDerivedErr := s.GetWithDerived(tc.ctx, id, "orders")
			tok := &sessionpb.ClientToken{AccessToken: "t", ExpiresAtUnixMs: time.Now().Add(time.Hour).UnixMilli()}
			for name, err := range map[string]error{
				"get_derived":      getDerivedErr,
				"get_with_derived": withDerivedErr,
				"put_derived":      s.PutDerivedToken(tc.ctx, id, "orders", tok),
				"get":              getErr,
				"take":             takeErr,
				"create":           s.Create(tc.ctx, id, sessiontest.Record(time.Now())),
				"update":           s.Update(tc.ctx, id, sessiontest.Record(time.Now()), 1),
				"delete":           s.Delete(tc.ctx, id),
				"put":              s.PutLoginState(tc.ctx, "st", "b", loginStateForTest()),
				"ping":             s.Ping(tc.ctx),
			} {
				if !errors.Is(err, session.ErrUnavailable) || errors.Is(err, session.ErrNotFound) {
					t.Errorf("%s = %v, want ErrUnavailable only", name, err)
				}
			}
		})
	}
}

func TestOpenBackend(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	redisCfg := sessiontest.Config()
	redisCfg.Backend = session.BackendRedis
	redisCfg.Redis.URL = "redis://" + env.addr + "/3"
	noKeys := session.DefaultConfig()
	bad := session.DefaultConfig()
	bad.Backend = "carrier-pigeon"
	tests := []struct {
		name    string
		cfg     session.Config
		wantErr string
	}{
		{name: "redis", cfg: redisCfg},
		{name: "memory_ephemeral_keys", cfg: noKeys},
		{name: "invalid", cfg: bad, wantErr: "backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := session.OpenBackend(tc.cfg, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.Ping(t.Context()); err != nil {
				t.Fatal(err)
			}
			id := sessiontest.ID(t, 1)
			mustCreate(t, b, id, sessiontest.Record(time.Now()))
			if _, err := b.Get(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRedisStoreCreateRefusedLeavesNothing covers T58 at the store: under
// OOM (maxmemory far below use, noeviction) Redis lets the index script
// run, since its first write is not one that grows memory, but refuses the
// record's SET. Create must fail as unavailable and leave no key behind:
// no record, and no index entry naming a session that never existed.
func TestRedisStoreCreateRefusedLeavesNothing(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t) // its own server: OOM would disturb the other tests
	s := env.store(t, nil)
	ctx := t.Context()
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if err := env.client.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.client.Set(ctx, "probe", "x", time.Minute).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("Redis should refuse writes with OOM, SET answered %v", err)
	}
	err := s.Create(ctx, sessiontest.ID(t, 1), sessiontest.Record(time.Now()))
	if !errors.Is(err, session.ErrUnavailable) || !errors.Is(err, session.ErrNotWritten) || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("Create under OOM = %v, want ErrUnavailable and ErrNotWritten carrying the OOM reply", err)
	}
	if keys, err := env.client.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Fatalf("after a refused Create Redis holds %q (%v), want nothing", keys, err)
	}
}

// TestRedisStoreWaitReplicas is T57's option: with redis.wait_replicas, a
// login's and a refresh's writes return only once a replica holds them, so
// a failover to that replica cannot lose a rotated refresh token; a write
// no replica acknowledges in time is kept and counted.
func TestRedisStoreWaitReplicas(t *testing.T) {
	t.Parallel()
	master, primary, replica := startReplicated(t)
	ctx := t.Context()
	replicas := func() string {
		info, _ := primary.Info(ctx, "replication").Result()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
				return v
			}
		}
		return ""
	}

	cfg := sessiontest.Config()
	// A generous wait: on a loaded machine a replica can take a while to
	// acknowledge, and a write it misses in time is (rightly) kept unwaited.
	cfg.Redis.WaitReplicas, cfg.Redis.WaitTimeout = 1, 3*time.Second
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{master}, ContextTimeoutEnabled: true, Protocol: 2, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = client.Close() })
	store := session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)

	id := sessiontest.ID(t, 57)
	rec := &sessionpb.Session{SchemaVersion: 1, Issuer: "https://idp", Subject: "u", AccessToken: "at-1", RefreshToken: "rt-1"}
	if err := store.Create(ctx, id, rec); err != nil {
		t.Fatal(err)
	}
	key := store.SessionKey(id)
	for round := 2; round <= 4; round++ {
		cur, err := store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		cur.RefreshToken = fmt.Sprintf("rt-%d", round) // a rotation
		if err := store.Update(ctx, id, cur, cur.GetGeneration()); err != nil {
			t.Fatalf("update %d: %v", round, err)
		}
		// Returned means replicated: the replica has this very write now.
		onPrimary, _ := primary.Get(ctx, key).Bytes()
		onReplica, err := replica.Get(ctx, key).Bytes()
		if err != nil || !bytes.Equal(onPrimary, onReplica) {
			t.Fatalf("update %d returned before the replica held it (%v; %d writes unreplicated in time)", round, err, store.UnreplicatedWrites())
		}
	}
	if n := store.UnreplicatedWrites(); n != 0 {
		t.Fatalf("%d writes counted unreplicated with a healthy replica", n)
	}

	// The replica leaves: writes still succeed, after wait_timeout, counted.
	if err := replica.ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the primary to see no replica", func() bool { return replicas() == "0" })
	cfg.Redis.WaitTimeout = 50 * time.Millisecond
	store = session.NewRedisStore(client, cfg, sessiontest.KeyRing(t), nil)
	cur, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Update(ctx, id, cur, cur.GetGeneration()); err != nil {
		t.Fatalf("update without a replica: %v (the write must be kept)", err)
	}
	if got, err := store.Get(ctx, id); err != nil || got.GetGeneration() != cur.GetGeneration() {
		t.Fatalf("after the unreplicated update: %v, %v", got.GetGeneration(), err)
	}
	if n := store.UnreplicatedWrites(); n != 1 {
		t.Fatalf("UnreplicatedWrites = %d, want 1", n)
	}
}

// BenchmarkRedisUpdate is a refresh's write (the compare-and-set) on a
// primary with one replica, without and with redis.wait_replicas: 1 (T57's
// WAIT 1 as an option); the difference is the replication round trip.
func BenchmarkRedisUpdate(b *testing.B) {
	master, _, _ := startReplicated(b)
	for _, wait := range []int{0, 1} {
		b.Run(fmt.Sprintf("wait_replicas=%d", wait), func(b *testing.B) {
			cfg := sessiontest.Config()
			cfg.KeyPrefix = fmt.Sprintf("w%d:", wait)
			cfg.Redis.WaitReplicas, cfg.Redis.WaitTimeout = wait, 100*time.Millisecond
			client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{master}, ContextTimeoutEnabled: true, Protocol: 2})
			b.Cleanup(func() { _ = client.Close() })
			store := session.NewRedisStore(client, cfg, sessiontest.KeyRing(b), nil)
			id := sessiontest.ID(b, byte(60+wait))
			rec := &sessionpb.Session{SchemaVersion: 1, Issuer: "https://idp", Subject: "u", AccessToken: "at", RefreshToken: "rt"}
			if err := store.Create(b.Context(), id, rec); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := store.Update(b.Context(), id, rec, rec.GetGeneration()); err != nil {
					b.Fatal(err)
				}
			}
			// Reported, not failed: on a loaded machine a replica may miss the wait.
			b.ReportMetric(float64(store.UnreplicatedWrites()), "unreplicated")
		})
	}
}

// startReplicated starts a primary and a replica of it, and returns once a
// write to the primary reaches the replica (replication flows).
func startReplicated(t testing.TB) (masterAddr string, primary, replica *redis.Client) {
	t.Helper()
	masterAddr = sessiontest.StartRedis(t, "--repl-diskless-sync-delay", "0")
	host, port, _ := net.SplitHostPort(masterAddr)
	replicaAddr := sessiontest.StartRedis(t, "--replicaof", host, port)
	primary = redis.NewClient(&redis.Options{Addr: masterAddr})
	replica = redis.NewClient(&redis.Options{Addr: replicaAddr})
	t.Cleanup(func() { _ = primary.Close(); _ = replica.Close() })
	if err := primary.Set(t.Context(), "probe", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "replication to flow", func() bool {
		v, _ := replica.Get(t.Context(), "probe").Result()
		return v == "1"
	})
	return masterAddr, primary, replica
}

// waitUntil polls cond every 10 ms for at most 10 s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
