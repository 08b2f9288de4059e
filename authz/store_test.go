package authz

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
	"github.com/envoy-bff/envoy-bff/session"
	"github.com/envoy-bff/envoy-bff/session/sessiontest"
)

// sessionCreator is how tests put records into the store.
type sessionCreator interface {
	Create(ctx context.Context, id session.ID, s *sessionpb.Session) error
}

// newMemoryStore is session's real in-memory store on the tests' clock (the
// one place to adapt if its constructor's signature changes).
func newMemoryStore(t testing.TB) (SessionReader, sessionCreator) {
	t.Helper()
	cfg := session.DefaultConfig()
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}}
	cfg.HashKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	ring, err := session.NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	m := session.NewMemoryStore(cfg, ring, func() time.Time { return t0 })
	return m, m
}

// lockedWriter lets parallel checks share one log buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func newTestLogger(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(&lockedWriter{w: buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newRedisStore is session's Redis store on a real redis-server started for
// t, on the tests' clock; cached puts the session cache in front of it and
// waits until the cache serves.
func newRedisStore(t testing.TB, cached bool) (SessionReader, sessionCreator) {
	t.Helper()
	cfg := session.DefaultConfig()
	cfg.Backend = session.BackendRedis
	cfg.EncryptionKeys = session.KeyList{{ID: "k1", Secret: "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="}}
	cfg.HashKey = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	ring, err := session.NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
	if err != nil {
		t.Fatal(err)
	}
	// As session.OpenBackend builds it: RESP2, one attempt per command.
	client := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sessiontest.StartRedis(t)}, ContextTimeoutEnabled: true, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	clock := func() time.Time { return t0 }
	store := session.NewRedisStore(client, cfg, ring, clock)
	if !cached {
		return store, store
	}
	cache, err := session.NewCache(store, session.CacheConfig{TTL: time.Minute, MaxEntries: 100}, clock)
	if err != nil {
		t.Fatal(err)
	}
	sessiontest.RunCache(t, cache)
	return cache, store
}
