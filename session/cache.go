package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Subscription pacing. An idle subscription is pinged every cachePing; a
// cache that has heard nothing from Redis for cacheDeaf serves nothing,
// since it could be missing invalidations.
const (
	cachePing       = time.Second
	cacheDeaf       = 3 * cachePing
	cacheAckTimeout = time.Second
	cacheSweepBatch = 4096
	cacheMaxBackoff = 2 * time.Second
)

// CacheConfig is `session.cache`: an in-process cache of opened sessions
// for Check, off unless TTL is set.
type CacheConfig struct {
	// TTL is how long an opened session is served from this process
	// without asking Redis; 0 turns the cache off.
	TTL time.Duration `yaml:"ttl"`
	// MaxEntries bounds the sessions held; a full cache drops an arbitrary one.
	MaxEntries int `yaml:"max_entries"`
}

// Bounds of CacheConfig.TTL: long enough to matter, short enough that the
// idle timeout and the provider's view stay close to Redis's.
const maxCacheTTL = time.Minute

func (c CacheConfig) validate(backend string, idle time.Duration) []error {
	var errs []error
	switch {
	case c.TTL < 0 || c.TTL > maxCacheTTL:
		errs = append(errs, fmt.Errorf("cache.ttl: must be between 0 (off) and %s, got %s", maxCacheTTL, c.TTL))
	case c.TTL > 0 && backend != BackendRedis:
		errs = append(errs, errors.New("cache.ttl: only for backend redis (memory sessions are in process already)"))
	case c.TTL > 0 && c.TTL > idle/2:
		errs = append(errs, errors.New("cache.ttl: must be at most half of idle_timeout"))
	}
	if c.MaxEntries <= 0 {
		errs = append(errs, fmt.Errorf("cache.max_entries: must be positive, got %d", c.MaxEntries))
	}
	return errs
}

// Cache serves Check's session reads from this process for a short TTL,
// in front of a RedisStore. Every change the store makes (refresh,
// logout, back-channel logout, admin revoke) is published on a Redis
// channel in the same atomic step as the write, and every replica's cache
// drops the session when it hears it; a deletion waits until every cache
// has acknowledged. A cache that cannot be sure it hears every message (its
// subscription is down, reconnecting, or silent) serves nothing and holds
// nothing. It satisfies authz.SessionReader; records it returns are shared
// and must not be modified. It also holds the sessions' derived tokens
// (GetWithDerived, PeekDerived), which go with every invalidation of their
// session; a PutDerivedToken through its store updates its entry.
type Cache struct {
	store *RedisStore
	ttl   time.Duration
	max   int
	now   func() time.Time

	mu    sync.RWMutex
	byID  map[ID]*cacheEntry
	byRef map[Ref]ID
	// epoch counts invalidations (under mu). A miss stores what it read
	// only if no invalidation came in while it read: the record it got may
	// be the one just invalidated.
	epoch uint64
	// heard is when the subscription last proved alive (unix ns); 0 while down.
	heard atomic.Int64

	acks  ackWaiters
	stats cacheStats
	// backend is what NewCache was given (maybe Instrument's wrapper):
	// deletions go through it. instrumented, set when it is that wrapper,
	// counts the store errors of misses, which read the store directly.
	backend      Backend
	instrumented *instrumented
}

type cacheEntry struct {
	s     *sessionpb.Session
	ref   Ref
	until time.Time
	// derived holds the session's derived tokens by profile; changed only
	// under the cache's write lock, read under its read lock. The entry,
	// and so every token, goes with any invalidation of the session.
	derived map[string]*sessionpb.ClientToken
	// keys is the ring's key set the record was opened under: after a
	// rotation (a removed key must end the sessions it sealed) the entry
	// no longer serves.
	keys *keySet
}

// cacheStats are the cache's counters, read by Stats.
type cacheStats struct {
	hits, misses, invalidations, resets, ackTimeouts atomic.Uint64
}

// CacheStats is a snapshot of a Cache's counters, for metrics.
type CacheStats struct {
	// Hits are reads served from the cache.
	Hits uint64
	// Misses are reads that went to Redis.
	Misses uint64
	// Invalidations are change messages applied.
	Invalidations uint64
	// Resets count (re)subscriptions and losses of the subscription, each of which empties the cache.
	Resets uint64
	// AckTimeouts are deletions that stopped waiting for a replica's acknowledgement.
	AckTimeouts uint64
	// Entries is the number of sessions held now.
	Entries int
	// Live reports whether the subscription is up, i.e. the cache serves.
	Live bool
}

// NewCache puts a cache in front of backend, which must be a *RedisStore or
// one of its frontend views (possibly wrapped by Instrument); from then on
// that store tells the cache of its changes, and the cache follows that
// frontend's change channel alone. Call Run to keep the subscription that
// lets it serve; until then every read goes to Redis. A cache hit does not
// renew the idle timeout in Redis, so cfg.TTL must be at most half of the
// store's (or view's) idle timeout.
func NewCache(backend Backend, cfg CacheConfig, now func() time.Time) (*Cache, error) {
	inst, _ := backend.(*instrumented)
	raw := backend
	if inst != nil {
		raw = inst.Backend
	}
	r, ok := raw.(*RedisStore)
	if !ok {
		return nil, errors.New("session cache: needs the redis backend")
	}
	if cfg.TTL <= 0 || cfg.MaxEntries <= 0 {
		return nil, errors.New("session cache: ttl and max_entries must be positive")
	}
	if cfg.TTL > r.cfg.IdleTimeout/2 {
		return nil, fmt.Errorf("session cache of frontend %s: ttl %s must be at most half of its idle_timeout %s", r.frontend, cfg.TTL, r.cfg.IdleTimeout)
	}
	if now == nil {
		now = time.Now
	}
	c := &Cache{store: r, ttl: cfg.TTL, max: cfg.MaxEntries, now: now,
		byID: map[ID]*cacheEntry{}, byRef: map[Ref]ID{}}
	c.acks.prefix = newAckPrefix()
	c.backend, c.instrumented = backend, inst
	r.cache = c
	return c, nil
}

// Get returns the live session under id: from the cache while it is
// sure to hear of changes, else from Redis (renewing the idle timeout).
func (c *Cache) Get(ctx context.Context, id ID) (*sessionpb.Session, error) {
	if s, ok := c.Peek(id); ok {
		return s, nil
	}
	return c.load(ctx, id)
}

// Peek returns the session under id if the cache may serve it now, without
// any I/O; false means ask Get, which goes to Redis.
func (c *Cache) Peek(id ID) (*sessionpb.Session, bool) {
	now := c.now()
	if !c.live(now) {
		return nil, false
	}
	c.mu.RLock()
	e := c.byID[id]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.until) || e.keys != c.store.ring.set.Load() {
		return nil, false
	}
	c.stats.hits.Add(1)
	return e.s, true
}

// load reads id from Redis and keeps it if nothing changed meanwhile.
func (c *Cache) load(ctx context.Context, id ID) (*sessionpb.Session, error) {
	now := c.now()
	live := c.live(now)
	c.stats.misses.Add(1)
	c.mu.RLock()
	epoch := c.epoch
	c.mu.RUnlock()
	keys := c.store.ring.set.Load() // before opening: a rotation meanwhile makes the entry stale
	hash := c.store.ring.HashID(id)
	s, err := c.store.getHashed(ctx, hash)
	if err != nil {
		return nil, c.instrumented.count(opGet, err)
	}
	if live {
		c.put(id, Ref(hash), s, keys, epoch, now, "", nil)
	}
	return s, nil
}

// GetWithDerived returns the live session under id and its derived token
// of profile (nil when there is none): from the cache while it is sure to
// hear of changes and holds both, else from Redis in one round trip
// (renewing the idle timeout), keeping what it read. Records and tokens it
// returns are shared and must not be modified.
func (c *Cache) GetWithDerived(ctx context.Context, id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	if s, t, ok := c.PeekDerived(id, profile); ok {
		return s, t, nil
	}
	now := c.now()
	live := c.live(now)
	c.stats.misses.Add(1)
	c.mu.RLock()
	epoch := c.epoch
	c.mu.RUnlock()
	keys := c.store.ring.set.Load()
	hash := c.store.ring.HashID(id)
	s, t, err := c.store.getWithDerivedHashed(ctx, hash, profile)
	if err != nil {
		return nil, nil, c.instrumented.count(opGetWithDerived, err)
	}
	if live {
		c.put(id, Ref(hash), s, keys, epoch, now, profile, t)
	}
	return s, t, nil
}

// PeekDerived returns the session under id and its unexpired derived token
// of profile if the cache may serve both now, without any I/O or
// allocation; false means ask GetWithDerived, which goes to Redis.
func (c *Cache) PeekDerived(id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, bool) {
	now := c.now()
	if !c.live(now) {
		return nil, nil, false
	}
	c.mu.RLock()
	e := c.byID[id]
	var t *sessionpb.ClientToken
	if e != nil {
		t = e.derived[profile]
	}
	c.mu.RUnlock()
	if t == nil || !now.Before(e.until) || e.keys != c.store.ring.set.Load() || !tokenLive(t, now) {
		return nil, nil, false
	}
	c.stats.hits.Add(1)
	return e.s, t, true
}

// derivedPut keeps t, just stored by this replica, as the derived token of
// profile of the session under ref, if the cache holds that session. A nil
// cache does nothing, so the store calls it unconditionally.
func (c *Cache) derivedPut(ref Ref, profile string, t *sessionpb.ClientToken) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byRef[ref]
	if !ok {
		return
	}
	e := c.byID[id]
	if e.derived == nil {
		e.derived = map[string]*sessionpb.ClientToken{}
	}
	e.derived[profile] = proto.Clone(t).(*sessionpb.ClientToken) // the caller keeps its own
}

// Delete removes the session everywhere (the store tells every cache).
func (c *Cache) Delete(ctx context.Context, id ID) error { return c.backend.Delete(ctx, id) }

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.byID)
	c.mu.RUnlock()
	return CacheStats{
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(),
		Invalidations: c.stats.invalidations.Load(), Resets: c.stats.resets.Load(),
		AckTimeouts: c.stats.ackTimeouts.Load(), Entries: n, Live: c.live(c.now()),
	}
}

// Run keeps the change subscription until ctx ends, resubscribing with
// backoff; the cache serves only while it is up.
func (c *Cache) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if c.follow(ctx) {
			backoff = 50 * time.Millisecond
		}
		c.reset(false)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, cacheMaxBackoff)
	}
}

// follow runs one subscription until it fails or ctx ends, and reports
// whether it was ever confirmed. Any error may have lost messages, so the
// caller empties the cache; a subscription that stays silent past a ping
// counts as failed.
func (c *Cache) follow(ctx context.Context) bool {
	sub := c.store.client.Subscribe(ctx, c.store.changeChannel(), c.store.ackChannel())
	defer sub.Close()
	confirmed, pinged := false, false
	subscribed := 0
	lastSweep := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastSweep) >= cachePing {
			c.sweep()
			lastSweep = time.Now()
		}
		msg, err := sub.ReceiveTimeout(ctx, cachePing)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged {
				if sub.Ping(ctx) != nil {
					return confirmed
				}
				pinged = true
				continue
			}
			return confirmed
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				return confirmed
			}
			// Both channels confirmed: from here on nothing is missed. What
			// was cached before may have changed unheard.
			if subscribed++; subscribed == 2 {
				confirmed = true
				c.reset(true)
			}
		case *redis.Message:
			c.heard.Store(c.now().UnixNano())
			if m.Channel == c.store.ackChannel() {
				c.acks.deliver(m.Payload)
				continue
			}
			c.apply(ctx, m.Payload)
		case *redis.Pong:
			if confirmed {
				c.heard.Store(c.now().UnixNano())
			}
		}
	}
	return confirmed
}

// apply handles one change message: "<ref>" or "<ref> <ack nonce>".
func (c *Cache) apply(ctx context.Context, payload string) {
	ref, nonce, _ := strings.Cut(payload, " ")
	c.changed(Ref(ref))
	if nonce == "" {
		return
	}
	// Acknowledge off the subscription's goroutine: messages keep flowing.
	go func() {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cacheAckTimeout)
		defer cancel()
		_ = c.store.client.Publish(actx, c.store.ackChannel(), nonce).Err()
	}()
}

// live reports whether the subscription has proved alive recently enough
// that no change can have gone unheard.
func (c *Cache) live(now time.Time) bool {
	h := c.heard.Load()
	return h != 0 && now.UnixNano()-h < int64(cacheDeaf)
}

// put stores s, and t as its derived token of profile when t is set,
// unless an invalidation came in since epoch was read. The derived tokens
// of an entry it replaces stay: no invalidation has dropped them.
func (c *Cache) put(id ID, ref Ref, s *sessionpb.Session, keys *keySet, epoch uint64, now time.Time, profile string, t *sessionpb.ClientToken) {
	until := now.Add(c.ttl)
	if abs := time.UnixMilli(s.GetAbsoluteExpiresAtUnixMs()); abs.Before(until) {
		until = abs
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epoch != epoch || c.heard.Load() == 0 {
		return
	}
	var derived map[string]*sessionpb.ClientToken
	if old, ok := c.byID[id]; ok {
		delete(c.byRef, old.ref)
		if old.keys == keys {
			derived = old.derived
		}
	} else if len(c.byID) >= c.max {
		for k, e := range c.byID { // Go's map order: an arbitrary victim
			delete(c.byID, k)
			delete(c.byRef, e.ref)
			break
		}
	}
	if t != nil {
		if derived == nil {
			derived = map[string]*sessionpb.ClientToken{}
		}
		derived[profile] = t
	}
	c.byID[id] = &cacheEntry{s: s, ref: ref, until: until, keys: keys, derived: derived}
	c.byRef[ref] = id
}

// changed drops the session under ref. A nil cache does nothing, so the
// store calls it unconditionally.
func (c *Cache) changed(ref Ref) {
	if c == nil {
		return
	}
	c.stats.invalidations.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if id, ok := c.byRef[ref]; ok {
		delete(c.byRef, ref)
		delete(c.byID, id)
	}
}

// reset empties the cache; up says whether it may serve afterwards.
func (c *Cache) reset(up bool) {
	c.stats.resets.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	clear(c.byID)
	clear(c.byRef)
	if up {
		c.heard.Store(c.now().UnixNano())
	} else {
		c.heard.Store(0)
	}
}

// sweep drops up to cacheSweepBatch expired entries, so the tokens of
// sessions no longer in use do not stay in memory.
func (c *Cache) sweep() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for id, e := range c.byID {
		if n++; n > cacheSweepBatch {
			break
		}
		if !now.Before(e.until) {
			delete(c.byID, id)
			delete(c.byRef, e.ref)
		}
	}
}

// expectAcks prepares a deletion's wait for every cache's acknowledgement;
// on a nil cache it is a no-op whose message is the bare ref.
func (c *Cache) expectAcks() *ackWait {
	if c == nil || !c.live(c.now()) {
		return nil // not subscribed: acknowledgements could not be heard
	}
	return c.acks.expect(c)
}

// ackWaiters routes acknowledgements to the deletions waiting for them.
type ackWaiters struct {
	prefix string
	seq    atomic.Uint64
	mu     sync.Mutex
	byKey  map[string]*ackWait
}

// ackWait is one deletion's wait.
type ackWait struct {
	c     *Cache
	nonce string
	got   chan struct{} // one send per acknowledgement
}

func newAckPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (crypto/rand's contract); uniqueness only
	return hex.EncodeToString(b)
}

func (a *ackWaiters) expect(c *Cache) *ackWait {
	w := &ackWait{c: c, nonce: a.prefix + "-" + strconv.FormatUint(a.seq.Add(1), 36), got: make(chan struct{}, 64)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.byKey == nil {
		a.byKey = map[string]*ackWait{}
	}
	a.byKey[w.nonce] = w
	return w
}

func (a *ackWaiters) deliver(nonce string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w := a.byKey[nonce]; w != nil {
		select {
		case w.got <- struct{}{}:
		default:
		}
	}
}

// message is what the deletion publishes: the ref, and the nonce to
// acknowledge when someone waits.
func (w *ackWait) message(ref Ref) string {
	if w == nil {
		return string(ref)
	}
	return string(ref) + " " + w.nonce
}

// wait returns once n caches (this one included) acknowledged, or after
// cacheAckTimeout: a replica that does not answer in time has lost its
// subscription, and a cache without one serves nothing after cacheDeaf.
func (w *ackWait) wait(ctx context.Context, n int64) {
	if w == nil || n <= 0 {
		return
	}
	t := time.NewTimer(cacheAckTimeout)
	defer t.Stop()
	for ; n > 0; n-- {
		select {
		case <-w.got:
		case <-t.C:
			w.c.stats.ackTimeouts.Add(1)
			return
		case <-ctx.Done():
			return
		}
	}
}

// done forgets the wait.
func (w *ackWait) done() {
	if w == nil {
		return
	}
	a := &w.c.acks
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.byKey, w.nonce)
}
