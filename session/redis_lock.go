package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// renewScript extends a lock only while it holds this holder's token.
// KEYS[1] the lock; ARGV[1] the token; ARGV[2] the TTL in milliseconds.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes a lock only while it holds this holder's token, and
// then tells every replica's waiters. KEYS[1] the lock; ARGV[1] the token;
// ARGV[2] the release channel. Returns 1 released, 0 not ours any more.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
`)

// lockWaiters fans release messages out to the waiters of this process. One
// subscription serves every waiter of every frontend (one release channel
// each), so waiting costs no connection each.
type lockWaiters struct {
	mu    sync.Mutex
	byKey map[string]map[chan struct{}]struct{}
	sub   *redis.PubSub
	// channels holds, for each release channel asked for, a channel closed
	// once Redis confirmed the subscription.
	channels map[string]chan struct{}
	closed   bool
}

// redisLockChannel is where releases are published: <base>lock-released.
func (r *RedisStore) redisLockChannel() string { return r.base + "lock-released" }

// redisLockKey is <base>{<hash>}:lk for a session, sharing the session's
// hash tag (one Cluster slot), <base>{<hash>}:lk:<profile> for its derived
// token of profile, or <base>{cc:<name>}:lk for a client token.
func (r *RedisStore) redisLockKey(key LockKey) (string, error) {
	if err := key.validate(); err != nil {
		return "", err
	}
	switch {
	case key.isClient:
		return r.base + "{cc:" + key.client + "}:lk", nil
	case key.isDerived:
		return r.base + "{" + r.ring.HashID(key.id) + "}:lk:" + key.profile, nil
	}
	return r.base + "{" + r.ring.HashID(key.id) + "}:lk", nil
}

// TryLock implements Store with SET NX PX and a random token.
func (r *RedisStore) TryLock(ctx context.Context, key LockKey) (*Lease, error) {
	const op = "take refresh lock"
	k, err := r.redisLockKey(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	token, err := newLockToken()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ttl := r.cfg.LockTTL
	ok, err := r.client.SetNX(ctx, k, token, ttl).Result()
	switch {
	case err != nil:
		return nil, unavailable(op, err)
	case !ok:
		return nil, fmt.Errorf("%s: %w", op, ErrLocked)
	}
	renew := func(ctx context.Context) (bool, error) {
		n, err := renewScript.Run(ctx, r.client, []string{k}, token, ttl.Milliseconds()).Int()
		return n == 1, err
	}
	release := func(ctx context.Context) error {
		if err := releaseScript.Run(ctx, r.client, []string{k}, token, r.redisLockChannel()).Err(); err != nil {
			return unavailable(op, err)
		}
		return nil
	}
	return newLease(ttl, renew, release), nil
}

// WaitUnlock implements Store: it listens for the release message and
// re-checks after the poll interval in case none comes.
func (r *RedisStore) WaitUnlock(ctx context.Context, key LockKey) error {
	const op = "wait for refresh lock"
	k, err := r.redisLockKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// Listen before looking, so a release between the look and the wait is heard.
	ch := make(chan struct{}, 1)
	r.waiters.add(k, ch)
	defer r.waiters.remove(k, ch)
	r.subscribe(ctx)
	n, err := r.client.Exists(ctx, k).Result()
	if err != nil {
		return unavailable(op, err)
	}
	if n == 0 {
		return nil
	}
	t := time.NewTimer(r.cfg.LockPollInterval)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// subscribe adds this frontend's release channel to the shared
// subscription (starting it on first use), and waits, within ctx and the
// poll interval, until Redis has confirmed it. go-redis keeps the
// subscription and resubscribes after a lost connection; the poll interval
// covers any gap.
func (r *RedisStore) subscribe(ctx context.Context) {
	w := r.waiters
	channel := r.redisLockChannel()
	w.mu.Lock()
	confirmed, ok := w.channels[channel]
	if !ok && !w.closed {
		confirmed = make(chan struct{})
		if w.channels == nil {
			w.channels = map[string]chan struct{}{}
		}
		w.channels[channel] = confirmed
		if w.sub == nil {
			w.sub = r.client.Subscribe(context.WithoutCancel(ctx), channel)
			go w.fanOut(w.sub.ChannelWithSubscriptions())
		} else {
			// An error here is a connection's: go-redis has noted the
			// channel and subscribes to it when it reconnects.
			_ = w.sub.Subscribe(context.WithoutCancel(ctx), channel)
		}
	}
	w.mu.Unlock()
	if confirmed == nil {
		return
	}
	t := time.NewTimer(r.cfg.LockPollInterval)
	defer t.Stop()
	select {
	case <-confirmed:
	case <-t.C:
	case <-ctx.Done():
	}
}

// fanOut delivers the subscription's confirmations and release messages
// until it is closed.
func (w *lockWaiters) fanOut(msgs <-chan any) {
	for msg := range msgs {
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				w.confirm(m.Channel)
			}
		case *redis.Message:
			w.wake(m.Payload)
		}
	}
}

// confirm marks channel's subscription as confirmed; a resubscription
// after a reconnect confirms it again, which changes nothing.
func (w *lockWaiters) confirm(channel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c := w.channels[channel]; c != nil {
		select {
		case <-c:
		default:
			close(c)
		}
	}
}

func (w *lockWaiters) add(key string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byKey == nil {
		w.byKey = map[string]map[chan struct{}]struct{}{}
	}
	set := w.byKey[key]
	if set == nil {
		set = map[chan struct{}]struct{}{}
		w.byKey[key] = set
	}
	set[ch] = struct{}{}
}

func (w *lockWaiters) remove(key string, ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.byKey[key], ch)
	if len(w.byKey[key]) == 0 {
		delete(w.byKey, key)
	}
}

// wake signals every waiter of key without blocking.
func (w *lockWaiters) wake(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.byKey[key] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// close ends the subscription; its fan-out goroutine ends with it.
func (w *lockWaiters) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.sub != nil {
		_ = w.sub.Close()
		w.sub = nil
	}
}

// clientTokenKey is <base>{cc:<name>}:c.
func (r *RedisStore) clientTokenKey(name string) string {
	return r.base + "{cc:" + name + "}:c"
}

// GetClientToken implements Store.
func (r *RedisStore) GetClientToken(ctx context.Context, name string) (*sessionpb.ClientToken, error) {
	const op = "get client token"
	if !ValidClientTokenName(name) {
		return nil, fmt.Errorf("%s: invalid name %q", op, name)
	}
	sealed, err := r.client.Get(ctx, r.clientTokenKey(name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	t, err := openClientToken(r.ring, r.ks, name, sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	if r.now().UnixMilli() >= t.GetExpiresAtUnixMs() {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return t, nil
}

// PutClientToken implements Store: SET PX until the token expires.
func (r *RedisStore) PutClientToken(ctx context.Context, name string, t *sessionpb.ClientToken) error {
	const op = "put client token"
	sealed, ttl, err := prepareClientToken(r.ring, r.ks, name, t, r.now())
	if err != nil || ttl <= 0 {
		return err
	}
	if err := r.client.Set(ctx, r.clientTokenKey(name), sealed, ttl).Err(); err != nil {
		return unavailable(op, err)
	}
	return nil
}
