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

func derivedForTest(value string, life time.Duration) *sessionpb.ClientToken {
	return &sessionpb.ClientToken{AccessToken: value, TokenType: "Bearer", ExpiresAtUnixMs: time.Now().Add(life).UnixMilli()}
}

// TestRedisDerivedTokenLayout: a session's derived tokens are one hash,
// <prefix>{<hash>}:t (after the frontend's name in a view), in the
// session's slot, its TTL pushed out to the latest token's expiry; reading
// them with the session is one round trip, and the session's deletion is
// one script that takes them too.
func TestRedisDerivedTokenLayout(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	log := &commandLog{}
	client := redis.NewClient(&redis.Options{Addr: env.addr})
	t.Cleanup(func() { _ = client.Close() })
	client.AddHook(log)
	cfg := sessiontest.Config()
	cfg.KeyPrefix = "lay:"
	ring := sessiontest.KeyRing(t)
	root := session.NewRedisStore(client, cfg, ring, nil)
	shop, err := root.Frontend("shop", cfg.FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	id := sessiontest.ID(t, 1)
	hash := ring.HashID(id)
	pttl := func(key string) time.Duration {
		t.Helper()
		d, err := env.client.PTTL(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := root.Delete(ctx, sessiontest.ID(t, 99)); err != nil { // loads the deletion script
		t.Fatal(err)
	}
	sent := func() string { // the commands sent, without connection handshakes
		var out []string
		for _, c := range log.take() {
			if c != "hello" && c != "client" && !strings.HasPrefix(c, "[client") {
				out = append(out, c)
			}
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		name  string
		store session.Store
		key   string
	}{{"default", root, "lay:{" + hash + "}:t"}, {"view", shop, "lay:shop:{" + hash + "}:t"}} {
		t.Run(tc.name, func(t *testing.T) {
			mustCreate(t, tc.store, id, sessiontest.Record(time.Now()))
			if err := tc.store.PutDerivedToken(ctx, id, "orders", derivedForTest("a", 10*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := tc.store.PutDerivedToken(ctx, id, "billing", derivedForTest("b", time.Minute)); err != nil {
				t.Fatal(err)
			}
			if typ := env.client.Type(ctx, tc.key).Val(); typ != "hash" {
				t.Fatalf("%s is a %q, want a hash", tc.key, typ)
			}
			if fields := env.client.HKeys(ctx, tc.key).Val(); strings.Join(fields, ",") != "orders,billing" {
				t.Fatalf("fields %v, want the profiles", fields)
			}
			if d := pttl(tc.key); d > 10*time.Minute || d < 10*time.Minute-5*time.Second {
				t.Fatalf("TTL %v, want the latest expiry (10m), not cut by a shorter token", d)
			}
			log.take()
			s, tok, err := tc.store.GetWithDerived(ctx, id, "orders")
			if err != nil || s == nil || tok.GetAccessToken() != "a" {
				t.Fatalf("GetWithDerived = %v, %v, %v", s, tok, err)
			}
			if got := sent(); got != "[getex hget]" {
				t.Fatalf("GetWithDerived sent %q, want one pipeline of getex and hget", got)
			}
			if _, err := tc.store.GetDerivedToken(ctx, id, "orders"); err != nil {
				t.Fatal(err)
			}
			if got := sent(); got != "[exists hget]" {
				t.Fatalf("GetDerivedToken sent %q, want one pipeline", got)
			}
			if err := tc.store.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			if got := sent(); got != "evalsha zrem zrem" {
				t.Fatalf("Delete sent %q, want one script (record and tokens), then the index entries", got)
			}
			if n := env.client.Exists(ctx, tc.key).Val(); n != 0 {
				t.Fatal("the derived tokens outlived the session's deletion")
			}
		})
	}
	keys := env.client.Keys(ctx, "lay:*").Val()
	if len(keys) != 0 {
		t.Fatalf("keys left: %q", keys)
	}
}

// TestRedisDerivedTokenMoved (T74): a sealed derived token moved in Redis,
// as anyone with write access could (DUMP/RESTORE of the whole hash, HSET
// of one field), to another session, profile or frontend never opens: the
// store answers not found, and never returns the token.
func TestRedisDerivedTokenMoved(t *testing.T) {
	t.Parallel()
	env := newRedisEnv(t)
	ctx := t.Context()
	root := env.store(t, nil)
	shop, err := root.Frontend("shop", sessiontest.Config().FrontendDefaults())
	if err != nil {
		t.Fatal(err)
	}
	victim, attacker := sessiontest.ID(t, 1), sessiontest.ID(t, 2)
	const secret = "victim-derived-token-31d7"
	for _, s := range []session.Store{root, shop} {
		for _, id := range []session.ID{victim, attacker} {
			mustCreate(t, s, id, sessiontest.Record(time.Now()))
		}
	}
	if err := root.PutDerivedToken(ctx, victim, "orders", derivedForTest(secret, time.Hour)); err != nil {
		t.Fatal(err)
	}
	src := root.DerivedKey(victim)
	restore := func(t *testing.T, dst string) {
		t.Helper()
		dump, err := env.client.Dump(ctx, src).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := env.client.RestoreReplace(ctx, dst, time.Hour, dump).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hsetField := func(t *testing.T, dst, profile string) {
		t.Helper()
		v := env.client.HGet(ctx, src, "orders").Val()
		if err := env.client.HSet(ctx, dst, profile, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		store   session.Store
		id      session.ID
		profile string
		move    func(t *testing.T)
	}{
		{name: "restore_to_another_session", store: root, id: attacker, profile: "orders",
			move: func(t *testing.T) { restore(t, root.DerivedKey(attacker)) }},
		{name: "restore_to_another_frontend", store: shop, id: victim, profile: "orders",
			move: func(t *testing.T) { restore(t, shop.(*session.RedisStore).DerivedKey(victim)) }},
		{name: "hset_to_another_profile", store: root, id: victim, profile: "admin",
			move: func(t *testing.T) { hsetField(t, src, "admin") }},
		{name: "hset_to_another_session_and_profile", store: root, id: attacker, profile: "admin",
			move: func(t *testing.T) { hsetField(t, root.DerivedKey(attacker), "admin") }},
	}
	for _, tc := range tests { // sequential: they share the victim's hash
		t.Run(tc.name, func(t *testing.T) {
			tc.move(t)
			tok, err := tc.store.GetDerivedToken(ctx, tc.id, tc.profile)
			if !errors.Is(err, session.ErrNotFound) || !errors.Is(err, session.ErrUnreadable) || tok != nil {
				t.Fatalf("GetDerivedToken of a moved token = %v, %v; want ErrNotFound and ErrUnreadable", tok, err)
			}
			s, tok, err := tc.store.GetWithDerived(ctx, tc.id, tc.profile)
			if err != nil || s == nil || tok != nil {
				t.Fatalf("GetWithDerived of a moved token = %v, %v, %v; want the session and no token", s, tok, err)
			}
		})
	}
	if tok, err := root.GetDerivedToken(ctx, victim, "orders"); err != nil || tok.GetAccessToken() != secret {
		t.Fatalf("the victim's own token: %v, %v", tok, err)
	}
}

// BenchmarkRedisGet and BenchmarkRedisGetWithDerived compare a Check's
// store read without and with a derived token on a real redis-server: the
// same one round trip, the token's HGET pipelined with GETEX.
func BenchmarkRedisGet(b *testing.B) {
	store, id := benchDerivedStore(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := store.Get(b.Context(), id); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRedisGetWithDerived(b *testing.B) {
	store, id := benchDerivedStore(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, tok, err := store.GetWithDerived(b.Context(), id, "orders"); err != nil || tok == nil {
			b.Fatal(tok, err)
		}
	}
}

func benchDerivedStore(b *testing.B) (*session.RedisStore, session.ID) {
	b.Helper()
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sessiontest.StartRedis(b)}, ContextTimeoutEnabled: true, Protocol: 2})
	b.Cleanup(func() { _ = client.Close() })
	store := session.NewRedisStore(client, sessiontest.Config(), sessiontest.KeyRing(b), nil)
	id := sessiontest.ID(b, 77)
	rec := sessiontest.Record(time.Now())
	if err := store.Create(b.Context(), id, rec); err != nil {
		b.Fatal(err)
	}
	tok := derivedForTest(fmt.Sprintf("eyJ%0800d", 0), time.Hour) // a JWT-sized token
	if err := store.PutDerivedToken(b.Context(), id, "orders", tok); err != nil {
		b.Fatal(err)
	}
	return store, id
}
