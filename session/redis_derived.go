package session

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// derivedKey is <base>{<hash>}:t, a hash of the session's derived tokens
// (field: profile, value: the sealed token). It shares the session's hash
// tag, so the session's deletion script deletes it too, also in a Cluster.
func (r *RedisStore) derivedKey(hash string) string {
	return r.base + "{" + hash + "}:t"
}

// putDerivedScript stores a derived token only while its session exists,
// and keeps the hash's TTL at the latest expiry of the tokens put in it, so
// a put racing a logout never leaves a token behind the deletion. KEYS[1]
// the session; KEYS[2] its derived tokens; ARGV[1] the profile; ARGV[2] the
// sealed token; ARGV[3] its TTL in milliseconds. Returns 1 stored, 0 no
// session.
var putDerivedScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return 1
`)

// GetDerivedToken implements Store: EXISTS of the session and HGET of the
// token, pipelined in one round trip, so a token that outlives its timed
// out session (until its own expiry) is never served.
func (r *RedisStore) GetDerivedToken(ctx context.Context, id ID, profile string) (*sessionpb.ClientToken, error) {
	const op = "get derived token"
	if !ValidTokenProfile(profile) {
		return nil, fmt.Errorf("%s: %w", op, errBadProfile(profile))
	}
	hash := r.ring.HashID(id)
	pipe := r.client.Pipeline()
	exists := pipe.Exists(ctx, r.sessionKey(hash))
	hget := pipe.HGet(ctx, r.derivedKey(hash), profile)
	_, _ = pipe.Exec(ctx) // errors are per command, read below
	if err := exists.Err(); err != nil {
		return nil, unavailable(op, err)
	}
	sealed, err := hget.Bytes()
	if errors.Is(err, redis.Nil) || err == nil && exists.Val() == 0 {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	t, err := openDerived(r.ring, r.ks, hash, profile, sealed, true)
	if err != nil {
		return nil, notFound(op, err)
	}
	if !tokenLive(t, r.now()) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return t, nil
}

// PutDerivedToken implements Store with one script (putDerivedScript). A
// cache in front of this store keeps t in its entry of the session.
func (r *RedisStore) PutDerivedToken(ctx context.Context, id ID, profile string, t *sessionpb.ClientToken) error {
	const op = "put derived token"
	hash := r.ring.HashID(id)
	sealed, ttl, err := prepareDerived(r.ring, r.ks, hash, profile, t, r.now())
	if err != nil || ttl <= 0 {
		return err
	}
	keys := []string{r.sessionKey(hash), r.derivedKey(hash)}
	n, err := putDerivedScript.Run(ctx, r.client, keys, profile, sealed, ttl.Milliseconds()).Int()
	switch {
	case err != nil:
		return unavailable(op, err)
	case n == 0:
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	r.cache.derivedPut(Ref(hash), profile, t)
	return nil
}

// GetWithDerived implements Store: Get's GETEX and an HGET of the token,
// pipelined in one round trip (one node in a Cluster: one hash tag).
func (r *RedisStore) GetWithDerived(ctx context.Context, id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	return r.getWithDerivedHashed(ctx, r.ring.HashID(id), profile)
}

// getWithDerivedHashed is GetWithDerived for the session whose store key
// hash is hash.
func (r *RedisStore) getWithDerivedHashed(ctx context.Context, hash, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	const op = "get session"
	if !ValidTokenProfile(profile) {
		return nil, nil, fmt.Errorf("%s with derived token: %w", op, errBadProfile(profile))
	}
	key, tkey := r.sessionKey(hash), r.derivedKey(hash)
	pipe := r.client.Pipeline()
	getex := pipe.GetEx(ctx, key, r.cfg.IdleTimeout)
	hget := pipe.HGet(ctx, tkey, profile)
	_, _ = pipe.Exec(ctx) // errors are per command, read below
	sealed, err := getex.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, nil, unavailable(op, err)
	}
	sealedToken, terr := hget.Bytes()
	if terr != nil && !errors.Is(terr, redis.Nil) {
		return nil, nil, unavailable(op, terr)
	}
	s, err := openOwnedSession(r.ring, r.ks.session(hash), sealed)
	if err != nil {
		return nil, nil, notFound(op, err)
	}
	now := r.now()
	if _, ok := sessionTTL(s, r.cfg.IdleTimeout, now); !ok {
		_ = r.client.Del(ctx, key, tkey).Err() // best effort, as in Get
		return nil, nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if terr != nil { // redis.Nil: no token of this profile
		return s, nil, nil
	}
	t, err := openDerived(r.ring, r.ks, hash, profile, sealedToken, true)
	if err != nil || !tokenLive(t, now) {
		return s, nil, nil // unreadable or expired: absent, to be obtained again
	}
	return s, t, nil
}
