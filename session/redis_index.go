package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// indexAddScript adds a session to one index (a sorted set scored by the
// session's absolute expiry), drops entries past theirs, and keeps the
// index's own TTL at its latest entry's expiry, so an index never outlives
// its sessions and never grows past the sessions alive in it.
// KEYS[1] the index; ARGV[1] the ref; ARGV[2] its expiry (unix ms); ARGV[3] now (unix ms).
var indexAddScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1
`)

// redisIndexKey is <base>{<kind>:<keyed hash>}:ix.
func (r *RedisStore) redisIndexKey(name string) string {
	return r.base + "{" + name + "}:ix"
}

// addToIndexes runs before the record is written: a Cluster cannot make the
// record and its indexes (different slots) one atomic write, so the order
// guarantees an index never misses a live session; an entry whose record
// never landed is pruned by FindSessions.
func (r *RedisStore) addToIndexes(ctx context.Context, ref Ref, s *sessionpb.Session, now time.Time) error {
	score := strconv.FormatInt(s.GetAbsoluteExpiresAtUnixMs(), 10)
	nowMs := strconv.FormatInt(now.UnixMilli(), 10)
	for _, idx := range indexesOf(r.ring, s) {
		if err := indexAddScript.Run(ctx, r.client, []string{r.redisIndexKey(idx)}, string(ref), score, nowMs).Err(); err != nil {
			return err
		}
	}
	return nil
}

// GetByRef implements Store: one GET; the idle timeout is not renewed, since
// an administrator looking is not the user being active.
func (r *RedisStore) GetByRef(ctx context.Context, ref Ref) (*sessionpb.Session, error) {
	const op = "get session by ref"
	sealed, err := r.client.Get(ctx, r.sessionKey(string(ref))).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	s, err := openSession(r.ring, r.ks.session(string(ref)), sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	if _, ok := sessionTTL(s, r.cfg.IdleTimeout, r.now()); !ok {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return s, nil
}

// DeleteByRef implements Store: GETDEL, the deletion of the session's
// derived tokens and the change message in one step, then the record's
// index entries. With a cache on, it returns only once
// every replica's cache has dropped the session (or the ack wait ran out),
// so the caller's "logged out" is true on every replica.
func (r *RedisStore) DeleteByRef(ctx context.Context, ref Ref) error {
	const op = "delete session"
	acks := r.cache.expectAcks()
	defer acks.done()
	keys := []string{r.sessionKey(string(ref)), r.derivedKey(string(ref))}
	res, err := deleteScript.Run(ctx, r.client, keys, r.changeChannel(), acks.message(ref)).Slice()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return unavailable(op, err)
	}
	sealed, receivers, ok := deleteReply(res)
	if !ok {
		return unavailable(op, errors.New("unexpected delete reply"))
	}
	r.cache.changed(ref)
	acks.wait(ctx, receivers)
	s, err := openSession(r.ring, r.ks.session(string(ref)), []byte(sealed))
	if err != nil {
		return nil // gone; its index entries (if any) are pruned when found
	}
	for _, idx := range indexesOf(r.ring, s) {
		// Best effort: the session is deleted; a stale entry is pruned when found.
		_ = r.client.ZRem(ctx, r.redisIndexKey(idx), string(ref)).Err()
	}
	return nil
}

// FindSessions implements Store: the index's unexpired entries whose records
// still exist; entries whose record is gone (idle timeout) are pruned.
func (r *RedisStore) FindSessions(ctx context.Context, issuer, subject, sid string) ([]Ref, error) {
	const op = "find sessions"
	key := r.redisIndexKey(queryIndex(r.ring, issuer, subject, sid))
	now := strconv.FormatInt(r.now().UnixMilli(), 10)
	members, err := r.client.ZRangeByScore(ctx, key, &redis.ZRangeBy{Min: "(" + now, Max: "+inf"}).Result()
	if err != nil {
		return nil, unavailable(op, err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	pipe := r.client.Pipeline()
	exists := make([]*redis.IntCmd, len(members))
	for i, m := range members {
		exists[i] = pipe.Exists(ctx, r.sessionKey(m))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, unavailable(op, err)
	}
	var live []Ref
	var gone []any
	for i, m := range members {
		if exists[i].Val() == 1 {
			live = append(live, Ref(m))
		} else {
			gone = append(gone, m)
		}
	}
	if len(gone) > 0 {
		_ = r.client.ZRem(ctx, key, gone...).Err() // pruning; the next search retries
	}
	return live, nil
}

// UseOnce implements Store with SET NX PX.
func (r *RedisStore) UseOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	const op = "mark used"
	if key == "" || len(key) > maxOnceKey {
		return false, fmt.Errorf("%s: key must be 1-%d bytes", op, maxOnceKey)
	}
	ok, err := r.client.SetNX(ctx, r.base+"{"+onceName(r.ring, key)+"}:o", 1, max(ttl, time.Millisecond)).Result()
	if err != nil {
		return false, unavailable(op, err)
	}
	return ok, nil
}
