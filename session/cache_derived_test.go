package session_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// warmDerived makes r's cache hold id's session and token of profile
// through GetWithDerived, and checks it then serves both without Redis.
func warmDerived(t *testing.T, r *replica, id session.ID, profile, want string) {
	t.Helper()
	if s, tok, err := r.cache.GetWithDerived(t.Context(), id, profile); err != nil || s == nil || tok.GetAccessToken() != want {
		t.Fatalf("GetWithDerived = %v, %v, %v; want the session and %s", s, tok, err, want)
	}
	r.log.take()
	for range 3 {
		s, tok, ok := r.cache.PeekDerived(id, profile)
		if !ok || s == nil || tok.GetAccessToken() != want {
			t.Fatalf("PeekDerived after GetWithDerived = %v, %v, %v", s, tok, ok)
		}
		if s, tok, err := r.cache.GetWithDerived(t.Context(), id, profile); err != nil || s == nil || tok.GetAccessToken() != want {
			t.Fatalf("cached GetWithDerived = %v, %v, %v", s, tok, err)
		}
	}
	if got := r.log.take(); len(got) != 0 {
		t.Fatalf("cached reads sent %v to Redis, want nothing", got)
	}
}

// TestCacheDerivedTokens: the cache serves a session's derived token with
// the session from memory once GetWithDerived has read both, or once this
// replica stored the token; and drops it with every invalidation of the
// session: a change or deletion on another replica, a local deletion.
func TestCacheDerivedTokens(t *testing.T) {
	t.Parallel()
	reps := newReplicas(t, sessiontest.StartRedis(t), 2)
	one, two := reps[0], reps[1]
	ctx := t.Context()
	tok := func(v string) *sessionpb.ClientToken {
		return &sessionpb.ClientToken{AccessToken: v, TokenType: "Bearer", ExpiresAtUnixMs: time.Now().Add(time.Hour).UnixMilli()}
	}

	t.Run("put_by_this_replica_fills_its_entry", func(t *testing.T) {
		id := newSession(t, one.store, "put")
		if s, got, err := one.cache.GetWithDerived(ctx, id, "orders"); err != nil || s == nil || got != nil {
			t.Fatalf("GetWithDerived before any token = %v, %v, %v", s, got, err)
		}
		if _, _, ok := one.cache.PeekDerived(id, "orders"); ok {
			t.Fatal("PeekDerived serves a token the cache does not have")
		}
		mine := tok("derived-put")
		if err := one.store.PutDerivedToken(ctx, id, "orders", mine); err != nil {
			t.Fatal(err)
		}
		mine.AccessToken = "changed by the caller afterwards"
		if _, got, ok := one.cache.PeekDerived(id, "orders"); !ok || got.GetAccessToken() != "derived-put" {
			t.Fatalf("after this replica's put, PeekDerived = %v, %v", got, ok)
		}
		if _, _, ok := one.cache.PeekDerived(id, "billing"); ok {
			t.Fatal("PeekDerived serves another profile's token")
		}
		// Another replica's put is heard of only through Redis: its cache reads it.
		if err := two.store.PutDerivedToken(ctx, id, "billing", tok("derived-billing")); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := one.cache.PeekDerived(id, "billing"); ok {
			t.Fatal("a cache serves a token it never read")
		}
		warmDerived(t, one, id, "billing", "derived-billing")
		warmDerived(t, one, id, "orders", "derived-put") // kept when the entry was read again
	})

	ends := []struct {
		name string
		end  func(t *testing.T, id session.ID)
		// dropped: the caches whose entry must be gone right when end returns
		// (a deletion waits for every cache's acknowledgement); others within a bounded wait.
		atOnce bool
	}{
		{name: "refresh_on_another_replica", end: func(t *testing.T, id session.ID) {
			cur, err := two.store.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			cur.AccessToken = "at-refreshed"
			if err := two.store.Update(ctx, id, cur, cur.GetGeneration()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "logout_on_another_replica", atOnce: true, end: func(t *testing.T, id session.ID) {
			if err := two.store.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "backchannel_on_another_replica", atOnce: true, end: func(t *testing.T, id session.ID) {
			refs, err := two.store.FindSessions(ctx, "https://idp", "", "sid-backchannel_on_another_replica")
			if err != nil || len(refs) != 1 {
				t.Fatalf("FindSessions = %v, %v", refs, err)
			}
			if err := two.store.DeleteByRef(ctx, refs[0]); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "local_delete", atOnce: true, end: func(t *testing.T, id session.ID) {
			if err := one.cache.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, e := range ends {
		t.Run("dropped_on_"+e.name, func(t *testing.T) {
			id := newSession(t, one.store, e.name)
			if err := one.store.PutDerivedToken(ctx, id, "orders", tok("derived-"+e.name)); err != nil {
				t.Fatal(err)
			}
			for _, r := range reps {
				warmDerived(t, r, id, "orders", "derived-"+e.name)
			}
			e.end(t, id)
			for i, r := range reps {
				if e.atOnce {
					if s, got, ok := r.cache.PeekDerived(id, "orders"); ok {
						t.Fatalf("replica %d serves %v, %v right after %s", i, s.GetSubject(), got.GetAccessToken(), e.name)
					}
					if _, _, err := r.cache.GetWithDerived(ctx, id, "orders"); !errors.Is(err, session.ErrNotFound) {
						t.Fatalf("replica %d: GetWithDerived after %s = %v, want ErrNotFound", i, e.name, err)
					}
					continue
				}
				waitFor(t, fmt.Sprintf("replica %d drops the entry", i), func() bool {
					_, _, ok := r.cache.PeekDerived(id, "orders")
					return !ok
				})
				// The token itself is still valid: the next read fetches it with the new record.
				s, got, err := r.cache.GetWithDerived(ctx, id, "orders")
				if err != nil || s.GetAccessToken() != "at-refreshed" || got.GetAccessToken() != "derived-"+e.name {
					t.Fatalf("replica %d after the refresh: %v, %v, %v", i, s.GetAccessToken(), got, err)
				}
			}
		})
	}

	t.Run("expired_token_not_served", func(t *testing.T) {
		id := newSession(t, one.store, "expiring")
		short := tok("derived-short")
		short.ExpiresAtUnixMs = time.Now().Add(300 * time.Millisecond).UnixMilli()
		if err := one.store.PutDerivedToken(ctx, id, "orders", short); err != nil {
			t.Fatal(err)
		}
		warmDerived(t, one, id, "orders", "derived-short")
		time.Sleep(400 * time.Millisecond)
		if _, _, ok := one.cache.PeekDerived(id, "orders"); ok {
			t.Fatal("PeekDerived serves an expired token")
		}
		if s, got, err := one.cache.GetWithDerived(ctx, id, "orders"); err != nil || s == nil || got != nil {
			t.Fatalf("GetWithDerived of an expired token = %v, %v, %v; want the session alone", s, got, err)
		}
	})

	t.Run("bad_profile_refused", func(t *testing.T) {
		id := newSession(t, one.store, "bad")
		if s, got, err := one.cache.GetWithDerived(ctx, id, "Not:Valid"); err == nil || s != nil || got != nil || !strings.Contains(err.Error(), "token profile") {
			t.Fatalf("GetWithDerived with a bad profile = %v, %v, %v", s, got, err)
		}
	})
}

// TestCachePeekDerivedDoesNotAllocate: serving a session and its derived
// token from the cache costs a Check no allocation.
func TestCachePeekDerivedDoesNotAllocate(t *testing.T) { // not parallel: AllocsPerRun
	store, cache := newCache(t, sessiontest.KeyRing(t), 10)
	id := newSession(t, store, "alloc")
	if err := store.PutDerivedToken(t.Context(), id, "orders", derivedForTest("derived-alloc", time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, tok, err := cache.GetWithDerived(t.Context(), id, "orders"); err != nil || tok == nil {
		t.Fatal(tok, err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		if _, _, ok := cache.PeekDerived(id, "orders"); !ok {
			panic("PeekDerived missed")
		}
	}); n != 0 {
		t.Fatalf("PeekDerived allocates %v times per call, want 0", n)
	}
}

// BenchmarkCachePeekDerived is a Check's read of a session and its derived
// token from the cache: no I/O, no allocation.
func BenchmarkCachePeekDerived(b *testing.B) {
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sessiontest.StartRedis(b)}, ContextTimeoutEnabled: true})
	b.Cleanup(func() { _ = client.Close() })
	store := session.NewRedisStore(client, sessiontest.Config(), sessiontest.KeyRing(b), nil)
	cache, err := session.NewCache(store, session.CacheConfig{TTL: time.Minute, MaxEntries: 10}, nil)
	if err != nil {
		b.Fatal(err)
	}
	sessiontest.RunCache(b, cache)
	id := sessiontest.ID(b, 5)
	if err := store.Create(b.Context(), id, sessiontest.Record(time.Now())); err != nil {
		b.Fatal(err)
	}
	if err := store.PutDerivedToken(b.Context(), id, "orders", derivedForTest("t", time.Hour)); err != nil {
		b.Fatal(err)
	}
	if _, _, err := cache.GetWithDerived(b.Context(), id, "orders"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := cache.PeekDerived(id, "orders"); !ok {
			b.Fatal("miss")
		}
	}
}
