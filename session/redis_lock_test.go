package session_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// replicas are stores over one Redis with one prefix and their own
// connections, as separate envoy-bff processes are.
func replicas(t *testing.T, n int, lockTTL, poll time.Duration) (addr string, stores []*session.RedisStore) {
	t.Helper()
	addr = sessiontest.StartRedis(t)
	cfg := sessiontest.Config()
	cfg.LockTTL, cfg.LockPollInterval = lockTTL, poll
	for range n {
		st := session.NewRedisStore(redis.NewClient(&redis.Options{Addr: addr}), cfg, sessiontest.KeyRing(t), nil)
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	return addr, stores
}

func TestRedisLockAcrossReplicas(t *testing.T) {
	t.Parallel()

	t.Run("a lock taken on one replica holds on the others and its release wakes them", func(t *testing.T) {
		t.Parallel()
		// Polling every 20 s and a 5 s deadline: only the published release can end the waits.
		_, st := replicas(t, 3, 30*time.Second, 20*time.Second)
		key := session.SessionLock(sessiontest.ID(t, 1))
		lease, err := st[0].TryLock(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range st[1:] {
			if _, err := s.TryLock(t.Context(), key); !errors.Is(err, session.ErrLocked) {
				t.Fatalf("replica %d: %v, want ErrLocked", i+2, err)
			}
		}
		done := make(chan error, 2)
		for _, s := range st[1:] {
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				done <- s.WaitUnlock(ctx, key)
			}()
		}
		time.Sleep(200 * time.Millisecond) // both are waiting
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := <-done; err != nil {
				t.Fatalf("a waiting replica was not woken: %v", err)
			}
		}
	})

	t.Run("the lock shares the session's hash tag and expires by itself", func(t *testing.T) {
		t.Parallel()
		addr, st := replicas(t, 1, 10*time.Second, time.Second)
		id := sessiontest.ID(t, 7)
		if _, err := st[0].TryLock(t.Context(), session.SessionLock(id)); err != nil {
			t.Fatal(err)
		}
		raw := redis.NewClient(&redis.Options{Addr: addr})
		defer raw.Close()
		keys, err := raw.Keys(t.Context(), "*:lk").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("lock keys %v %v", keys, err)
		}
		sessKey := st[0].SessionKey(id)
		tag := sessKey[strings.Index(sessKey, "{") : strings.Index(sessKey, "}")+1]
		if !strings.Contains(keys[0], tag) || strings.Contains(keys[0], id.String()) {
			t.Fatalf("lock key %q does not share the session's hash tag %q, or names the cookie value", keys[0], tag)
		}
		if ttl, err := raw.PTTL(t.Context(), keys[0]).Result(); err != nil || ttl <= 0 || ttl > 10*time.Second {
			t.Fatalf("lock TTL %v %v", ttl, err)
		}
	})

	t.Run("a lease whose key is deleted behind its back is lost", func(t *testing.T) {
		t.Parallel()
		addr, st := replicas(t, 1, 300*time.Millisecond, 50*time.Millisecond)
		lease, err := st[0].TryLock(t.Context(), session.ClientTokenLock("default"))
		if err != nil {
			t.Fatal(err)
		}
		raw := redis.NewClient(&redis.Options{Addr: addr})
		defer raw.Close()
		if err := raw.Del(t.Context(), "bff:{cc:default}:lk").Err(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lease.Lost():
		case <-time.After(5 * time.Second):
			t.Fatal("lease not marked lost after its key was deleted")
		}
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

}

// TestRedisLockNoLeaks is not parallel: it counts the process's goroutines.
func TestRedisLockNoLeaks(t *testing.T) {
	addr := sessiontest.StartRedis(t)
	before := runtime.NumGoroutine()
	cfg := sessiontest.Config()
	for range 5 {
		st := session.NewRedisStore(redis.NewClient(&redis.Options{Addr: addr}), cfg, sessiontest.KeyRing(t), nil)
		key := session.SessionLock(sessiontest.ID(t, 1))
		lease, err := st.TryLock(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		_ = st.WaitUnlock(ctx, key) // starts the release subscription
		cancel()
		if err := lease.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after", before, runtime.NumGoroutine())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
