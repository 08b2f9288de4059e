package session

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redis/go-redis/v9"
)

// Test hooks for sessiontest.RunStoreTests (sessiontest.Rekeyer, RawDumper,
// Elapser). They exist only in this package's test binary.

// WithKeyRing implements sessiontest.Rekeyer.
func (m *MemoryStore) WithKeyRing(ring *KeyRing) Store { return m.withKeyRing(ring) }

// RawValues implements sessiontest.RawDumper; expired entries count as gone.
func (m *MemoryStore) RawValues(testing.TB) [][]byte {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	now := m.now()
	var out [][]byte
	for _, e := range m.mem.entries {
		switch {
		case e.expired(now):
		case e.tokens != nil: // a session's derived tokens
			for _, t := range e.tokens {
				if now.Before(t.expires) {
					out = append(out, t.sealed)
				}
			}
		default:
			out = append(out, e.sealed)
		}
	}
	return out
}

// Sweep runs one sweeper tick examining up to limit entries.
func (m *MemoryStore) Sweep(limit int) int { return m.sweep(limit) }

// Len counts entries, expired or not.
func (m *MemoryStore) Len() int {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	return len(m.mem.entries)
}

// WithKeyRing implements sessiontest.Rekeyer.
func (r *RedisStore) WithKeyRing(ring *KeyRing) Store { return r.withKeyRing(ring) }

// SessionKey is id's Redis key.
func (r *RedisStore) SessionKey(id ID) string { return r.sessionKey(r.ring.HashID(id)) }

func (r *RedisStore) keys(t testing.TB) []string {
	t.Helper()
	keys, err := r.client.Keys(t.Context(), r.cfg.KeyPrefix+"*").Result()
	if err != nil {
		t.Fatalf("list keys: %v", err)
	}
	return keys
}

// RawValues implements sessiontest.RawDumper over this store's prefix.
func (r *RedisStore) RawValues(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, k := range r.keys(t) {
		typ, err := r.client.Type(t.Context(), k).Result()
		if err == nil && typ == "hash" { // a session's derived tokens
			vs, err := r.client.HVals(t.Context(), k).Result()
			if err != nil {
				t.Fatalf("read %s: %v", k, err)
			}
			for _, v := range vs {
				out = append(out, []byte(v))
			}
			continue
		}
		if err != nil || typ != "string" {
			continue // indexes: sorted sets of refs, scored by expiry
		}
		v, err := r.client.Get(t.Context(), k).Bytes()
		if err == redis.Nil {
			continue
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

// Elapse makes d pass for Redis's TTLs of this store's keys.
func (r *RedisStore) Elapse(t testing.TB, d time.Duration) {
	t.Helper()
	for _, k := range r.keys(t) {
		if err := elapseScript.Run(t.Context(), r.client, []string{k}, d.Milliseconds()).Err(); err != nil {
			t.Fatalf("elapse %s: %v", k, err)
		}
	}
}

// WithLockTiming implements sessiontest.LockTimer.
func (m *MemoryStore) WithLockTiming(ttl, poll time.Duration) Store {
	c := *m
	c.cfg.LockTTL, c.cfg.LockPollInterval = ttl, poll
	return &c
}

// WithLockTiming implements sessiontest.LockTimer: the same client and keys,
// its own release subscription.
func (r *RedisStore) WithLockTiming(ttl, poll time.Duration) Store {
	cfg := r.cfg
	cfg.LockTTL, cfg.LockPollInterval = ttl, poll
	return NewRedisStore(r.client, cfg, r.ring, r.now)
}

// IndexEntries counts index entries, expired or not.
func (m *MemoryStore) IndexEntries() int {
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	n := 0
	for _, refs := range m.mem.index {
		n += len(refs)
	}
	return n
}

// CopySealedSession implements sessiontest.SealedCopier: the entry itself,
// under the key where view to looks for id.
func (m *MemoryStore) CopySealedSession(t testing.TB, from, to Store, id ID) {
	t.Helper()
	f, d := from.(*MemoryStore), to.(*MemoryStore)
	hash := m.ring.HashID(id)
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	e, ok := m.mem.entries[f.ks.session(hash)]
	if !ok {
		t.Fatal("copy sealed session: no record to copy")
	}
	// The stored bytes, as someone copying them would have them: not the
	// record this process opened from them under the other key.
	m.mem.entries[d.ks.session(hash)] = &memEntry{sealed: e.sealed, gen: e.gen, expires: e.expires, absolute: e.absolute, tokens: e.tokens}
}

// CopySealedSession implements sessiontest.SealedCopier with DUMP and
// RESTORE, so the copy is the stored value byte for byte, TTL included.
func (r *RedisStore) CopySealedSession(t testing.TB, from, to Store, id ID) {
	t.Helper()
	src, dst := from.(*RedisStore).SessionKey(id), to.(*RedisStore).SessionKey(id)
	dump, err := r.client.Dump(t.Context(), src).Result()
	if err != nil {
		t.Fatalf("dump %s: %v", src, err)
	}
	if err := r.client.RestoreReplace(t.Context(), dst, time.Hour, dump).Err(); err != nil {
		t.Fatalf("restore %s: %v", dst, err)
	}
}

// CopySealedDerived implements sessiontest.DerivedCopier: the sealed
// value itself, into the entry where view to looks for toID's token of
// toProfile.
func (m *MemoryStore) CopySealedDerived(t testing.TB, from, to Store, fromID, toID ID, fromProfile, toProfile string) {
	t.Helper()
	f, d := from.(*MemoryStore), to.(*MemoryStore)
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	src, ok := m.mem.entries[f.ks.derivedTokens(m.ring.HashID(fromID))]
	if !ok || src.tokens[fromProfile].sealed == nil {
		t.Fatal("copy sealed derived token: no token to copy")
	}
	key := d.ks.derivedTokens(m.ring.HashID(toID))
	dst, ok := m.mem.entries[key]
	if !ok {
		dst = &memEntry{tokens: map[string]memToken{}}
		m.mem.entries[key] = dst
	}
	dst.tokens[toProfile] = src.tokens[fromProfile]
	dst.expires = src.expires
}

// DerivedKey is the Redis key of id's derived tokens.
func (r *RedisStore) DerivedKey(id ID) string { return r.derivedKey(r.ring.HashID(id)) }

// CopySealedDerived implements sessiontest.DerivedCopier with HGET and
// HSET, as anyone with write access to Redis could.
func (r *RedisStore) CopySealedDerived(t testing.TB, from, to Store, fromID, toID ID, fromProfile, toProfile string) {
	t.Helper()
	src, dst := from.(*RedisStore).DerivedKey(fromID), to.(*RedisStore).DerivedKey(toID)
	v, err := r.client.HGet(t.Context(), src, fromProfile).Result()
	if err != nil {
		t.Fatalf("hget %s %s: %v", src, fromProfile, err)
	}
	if err := r.client.HSet(t.Context(), dst, toProfile, v).Err(); err != nil {
		t.Fatalf("hset %s: %v", dst, err)
	}
	if err := r.client.Expire(t.Context(), dst, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
}

// StoreErrorCounter is the counter that an instrumented b counts op's
// failures into, and a function that records one failure.
func StoreErrorCounter(b Backend, op string) (prometheus.Counter, func(error)) {
	m := b.(*instrumented)
	return m.errs[op], func(err error) { _ = m.count(op, err) }
}
