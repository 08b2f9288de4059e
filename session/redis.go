package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Backend is a Store that can be health-checked and shut down: what
// OpenBackend hands to cmd.
type Backend interface {
	Store
	// Ping checks the store answers, for /readyz.
	Ping(ctx context.Context) error
	// Close releases connections; the store is unusable afterwards.
	Close() error
	// KeyRing is the ring the store seals with; a KeyReloader rotates it in place.
	KeyRing() *KeyRing
	// Frontend is a view of the store for frontend name, on fc's cookie and
	// lifetimes, over the same connections and key ring: every key, channel
	// and entry it uses is the frontend's own, so frontends never see each
	// other's sessions, logins, locks or tokens. The view named
	// DefaultFrontend uses the store's original keys. Closing a view does
	// nothing; the store that made it owns the connections.
	Frontend(name string, fc FrontendConfig) (Backend, error)
}

var _ Backend = (*RedisStore)(nil)

// RedisStore keeps sealed records in Redis, shared by every replica. Each
// operation is one round trip; the compare-and-set Update is a Lua script.
type RedisStore struct {
	client redis.UniversalClient
	cfg    Config
	ring   *KeyRing
	now    func() time.Time
	// waiters is shared with every view: one subscription, one connection,
	// serves the lock waiters of all frontends.
	waiters *lockWaiters
	// cache, when set by NewCache, is told of every change this store
	// makes, before the change's caller learns it is done.
	cache *Cache
	// unreplicated counts token-carrying writes that WAIT found on fewer
	// than cfg.Redis.WaitReplicas replicas in time, for all views.
	unreplicated *atomic.Uint64
	// frontend names the view; ks starts its logical keys and base
	// (key_prefix + ks) its Redis keys and channels. view is set on the
	// stores Frontend returns: they do not own the client.
	frontend string
	ks       keyspace
	base     string
	view     bool
	// idleMs is cfg.IdleTimeout in milliseconds, boxed once for GETEX.
	idleMs any
}

// updateScript is Update's compare-and-set: it compares the clear generation
// in the sealed record's header (bytes 1..8, authenticated as GCM additional
// data) without decrypting, and replaces the record only if it is unchanged.
// It publishes the session's ref on the change channel in the same atomic
// step, so no replica's cache can read the old record after the write
// without hearing of it. KEYS[1] the session key; ARGV[1] the expected
// generation as 8 big-endian bytes; ARGV[2] the new sealed record; ARGV[3]
// its TTL in milliseconds; ARGV[4] the change channel; ARGV[5] the ref.
// Returns 1 written, 0 absent, -1 generation changed.
var updateScript = redis.NewScript(`
local cur = redis.call('GETRANGE', KEYS[1], 0, 8)
if cur == '' then return 0 end
if string.sub(cur, 2, 9) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`)

// deleteScript is GETDEL plus the change message, in one atomic step for
// the same reason, and deletes the session's derived tokens with it (also
// when the record is gone already). KEYS[1] the session key; KEYS[2] its
// derived tokens (same hash tag); ARGV[1] the change channel; ARGV[2] the
// message. Returns {deleted record, subscribers that got the message}, or
// nil when absent.
var deleteScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
if not v then return false end
local n = redis.call('PUBLISH', ARGV[1], ARGV[2])
return {v, n}
`)

// replicated runs write, and with redis.wait_replicas set, WAITs for that
// many replicas to hold it in the same round trip: a pipeline on one
// connection, which is what WAIT counts (write is told, since EVALSHA's
// fall-back on NOSCRIPT cannot happen inside a pipeline: use EVAL there).
// A write found on fewer replicas in time is kept and counted: the
// provider has already rotated the tokens it carries, so failing it would
// only lose them sooner.
func (r *RedisStore) replicated(ctx context.Context, write func(c redis.Cmdable, pipelined bool) redis.Cmder) {
	n := r.cfg.Redis.WaitReplicas
	if n <= 0 {
		write(r.client, false)
		return
	}
	var cmd redis.Cmder
	var wait *redis.Cmd
	// Errors are per command; Exec's own is the first of them.
	_, _ = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = write(p, true)
		wait = p.Do(ctx, "wait", n, r.cfg.Redis.WaitTimeout.Milliseconds())
		return nil
	})
	if cmd.Err() == nil {
		if got, err := wait.Int(); err != nil || got < n {
			r.unreplicated.Add(1)
		}
	}
}

// UnreplicatedWrites counts token-carrying writes that redis.wait_replicas
// replicas did not acknowledge within redis.wait_timeout.
func (r *RedisStore) UnreplicatedWrites() uint64 { return r.unreplicated.Load() }

// deleteReply takes deleteScript's reply apart.
func deleteReply(res []any) (sealed string, receivers int64, ok bool) {
	if len(res) != 2 {
		return "", 0, false
	}
	sealed, ok1 := res[0].(string)
	receivers, ok2 := res[1].(int64)
	return sealed, receivers, ok1 && ok2
}

// changeChannel carries the ref of every session changed or deleted, to
// every replica's cache of this frontend: <base>session-changed.
func (r *RedisStore) changeChannel() string { return r.base + "session-changed" }

// ackChannel carries caches' acknowledgements of deletions: <base>session-changed-ack.
func (r *RedisStore) ackChannel() string { return r.base + "session-changed-ack" }

// NewRedisStore wraps client (a single node, Sentinel or Cluster client) on
// the given clock (time.Now if nil). Close closes client.
func NewRedisStore(client redis.UniversalClient, cfg Config, ring *KeyRing, now func() time.Time) *RedisStore {
	if now == nil {
		now = time.Now
	}
	return &RedisStore{client: client, cfg: cfg, ring: ring, now: now, waiters: &lockWaiters{},
		unreplicated: &atomic.Uint64{}, frontend: DefaultFrontend, base: cfg.KeyPrefix, idleMs: idleArg(cfg)}
}

// Frontend implements Backend: a view whose keys and channels are
// <key_prefix><name>:<the single-frontend form> (that form itself for
// DefaultFrontend), on fc's lifetimes.
func (r *RedisStore) Frontend(name string, fc FrontendConfig) (Backend, error) {
	ks, err := frontendKeyspace(name, fc)
	if err != nil {
		return nil, fmt.Errorf("open session store view: %w", err)
	}
	cfg := fc.applyTo(r.cfg)
	return &RedisStore{client: r.client, cfg: cfg, ring: r.ring, now: r.now, waiters: r.waiters,
		unreplicated: r.unreplicated, frontend: name, ks: ks, base: r.cfg.KeyPrefix + string(ks), view: true, idleMs: idleArg(cfg)}, nil
}

// idleArg is GETEX's PX argument for cfg's idle timeout (at least 1ms, as
// go-redis' GetEx sends it).
func idleArg(cfg Config) any {
	return max(cfg.IdleTimeout.Milliseconds(), 1)
}

// KeyRing implements Backend.
func (r *RedisStore) KeyRing() *KeyRing { return r.ring }

// SealedKeyID names the key that sealed the session stored under id,
// reading its clear header without opening it or renewing it: before an old
// key is removed, this tells whether a session still depends on it.
func (r *RedisStore) SealedKeyID(ctx context.Context, id ID) (string, error) {
	const op = "read session key id"
	sealed, err := r.client.GetRange(ctx, r.sessionKey(r.ring.HashID(id)), 0, fixedHeader+maxKeyIDLen-1).Bytes()
	switch {
	case err != nil:
		return "", unavailable(op, err)
	case len(sealed) == 0:
		return "", fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	keyID, ok := sealedKeyID(sealed)
	if !ok {
		return "", fmt.Errorf("%s: %w: no valid envelope header", op, ErrUnreadable)
	}
	return keyID, nil
}

// withKeyRing is a store over the same Redis keys that seals with ring.
func (r *RedisStore) withKeyRing(ring *KeyRing) *RedisStore {
	return &RedisStore{client: r.client, cfg: r.cfg, ring: ring, now: r.now, waiters: &lockWaiters{},
		unreplicated: &atomic.Uint64{}, frontend: r.frontend, ks: r.ks, base: r.base, view: r.view, idleMs: r.idleMs}
}

// sessionKey is <base>{<hash>}:s; the hash tag puts every key of one
// session in one Cluster slot.
func (r *RedisStore) sessionKey(hash string) string {
	return r.base + "{" + hash + "}:s"
}

// loginStateKey is <base>{<hash>}:l.
func (r *RedisStore) loginStateKey(hash string) string {
	return r.base + "{" + hash + "}:l"
}

// unavailable wraps every Redis failure but redis.Nil: only absence proves a
// session gone.
func unavailable(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
}

// Get implements Store in one round trip: GETEX renews the idle timeout as it
// reads. A record past its absolute lifetime is deleted and reads as
// ErrNotFound.
func (r *RedisStore) Get(ctx context.Context, id ID) (*sessionpb.Session, error) {
	// The hot path: the key is built in one allocation with the hash in
	// it, and the hash is a slice of the key.
	var b strings.Builder
	b.Grow(len(r.base) + 1 + hashLen + len("}:s"))
	b.WriteString(r.base)
	b.WriteByte('{')
	r.ring.writeHashID(&b, id)
	b.WriteString("}:s")
	key := b.String()
	return r.getKeyed(ctx, key, key[len(r.base)+1:len(r.base)+1+hashLen])
}

// getHashed is Get for the session whose store key hash is hash.
func (r *RedisStore) getHashed(ctx context.Context, hash string) (*sessionpb.Session, error) {
	return r.getKeyed(ctx, r.sessionKey(hash), hash)
}

// getexArgs are one GETEX's arguments and the record it reads, in one
// allocation: the key goes as a *string and the idle timeout boxed once
// per store (NewRedisStore), where go-redis' GetEx allocates its slice and
// boxes both anew per call.
type getexArgs struct {
	args [4]any
	key  string
	sess sessionpb.Session
}

// getKeyed is Get for the session hash whose Redis key is key.
func (r *RedisStore) getKeyed(ctx context.Context, key, hash string) (*sessionpb.Session, error) {
	const op = "get session"
	a := &getexArgs{key: key}
	a.args = [4]any{"getex", &a.key, "px", r.idleMs}
	cmd := redis.NewStringCmd(ctx, a.args[:]...)
	_ = r.client.Process(ctx, cmd) // the error is cmd's
	sealed, err := cmd.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	// GETEX's reply is ours alone; the logical key ks.session(hash) goes
	// to GCM in its parts.
	gen, plain, err := r.ring.openInto(true, sealed, string(r.ks), sessionKind, hash)
	s, err := decodeSessionInto(&a.sess, gen, plain, err)
	if err != nil {
		return nil, notFound(op, err)
	}
	if _, ok := sessionTTL(s, r.cfg.IdleTimeout, r.now()); !ok {
		// Best effort: the session is over whether or not DEL lands, and its
		// TTL removes it at the latest one idle timeout from now (its
		// derived tokens' TTL, at their expiry).
		_ = r.client.Del(ctx, key, r.derivedKey(hash)).Err()
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return s, nil
}

// Inspect implements Store in one round trip: GET and PTTL in one
// MULTI/EXEC, so the record and its remaining time are read together and
// nothing renews the idle timeout. A record past its absolute lifetime
// reads as ErrNotFound; its TTL removes it, so looking never writes.
func (r *RedisStore) Inspect(ctx context.Context, id ID) (*sessionpb.Session, time.Time, error) {
	const op = "inspect session"
	hash := r.ring.HashID(id)
	key := r.sessionKey(hash)
	var (
		get  *redis.StringCmd
		pttl *redis.DurationCmd
	)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, key)
		pttl = p.PTTL(ctx, key)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, time.Time{}, unavailable(op, err)
	}
	sealed, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, time.Time{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, time.Time{}, unavailable(op, err)
	}
	left, err := pttl.Result()
	if err != nil {
		return nil, time.Time{}, unavailable(op, err)
	}
	s, err := openOwnedSession(r.ring, r.ks.session(hash), sealed) // GET's reply is ours alone
	if err != nil {
		return nil, time.Time{}, notFound(op, err)
	}
	now := r.now()
	if _, ok := sessionTTL(s, r.cfg.IdleTimeout, now); !ok {
		return nil, time.Time{}, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	expires := time.UnixMilli(s.GetAbsoluteExpiresAtUnixMs())
	if left >= 0 { // -1 (no TTL) never happens for a session key: then only the absolute expiry bounds it
		expires = now.Add(left)
	}
	return s, idleEnd(s, expires), nil
}

// Create implements Store with one SET PX (the idle timeout, cut short by the
// absolute lifetime). It sets s.Generation to 1 and fills the creation time
// and absolute expiry when they are zero.
func (r *RedisStore) Create(ctx context.Context, id ID, s *sessionpb.Session) error {
	const op = "create session"
	n, err := prepareCreate(r.ring, r.ks, r.cfg, id, s, r.now())
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ref := Ref(n.hash)
	if err := r.addToIndexes(ctx, ref, s, r.now()); err != nil {
		r.undoIndexes(ctx, ref, s, err)
		return unavailable(op, err)
	}
	var set *redis.StatusCmd
	r.replicated(ctx, func(c redis.Cmdable, _ bool) redis.Cmder {
		set = c.Set(ctx, r.sessionKey(n.hash), n.sealed, n.ttl)
		return set
	})
	if err := set.Err(); err != nil {
		if r.undoIndexes(ctx, ref, s, err) {
			return fmt.Errorf("%s: %w: %w: %w", op, ErrUnavailable, ErrNotWritten, err)
		}
		return unavailable(op, err)
	}
	return nil
}

// undoIndexes removes the index entries of a session whose record Redis
// refused to write, so a failed login leaves nothing half-written (T58).
// A script that has begun writing may go on under OOM, so the indexes can
// land while the record's SET is refused. Only a Redis error reply (OOM,
// READONLY, LOADING…) proves the record did not land: after a timeout or a
// lost connection the SET may have been applied, and a live session must
// never drop out of its indexes (back-channel logout finds it there), so
// those entries stay until FindSessions prunes them. Best effort; ZREM is
// allowed under OOM.
// It reports whether the cause proves the record did not land.
func (r *RedisStore) undoIndexes(ctx context.Context, ref Ref, s *sessionpb.Session, cause error) bool {
	var refused redis.Error
	if !errors.As(cause, &refused) || errors.Is(cause, redis.Nil) {
		return false
	}
	for _, idx := range indexesOf(r.ring, s) {
		_ = r.client.ZRem(ctx, r.redisIndexKey(idx), string(ref)).Err()
	}
	return true
}

// Update implements Store as an atomic compare-and-set in Redis. On success
// s.Generation is prevGeneration+1; a record past its absolute lifetime is
// deleted and the answer is ErrNotFound.
func (r *RedisStore) Update(ctx context.Context, id ID, s *sessionpb.Session, prevGeneration uint64) error {
	const op = "update session"
	if s == nil {
		return fmt.Errorf("%s: %w", op, errNilRecord)
	}
	hash := r.ring.HashID(id)
	key := r.sessionKey(hash)
	ttl, ok := sessionTTL(s, r.cfg.IdleTimeout, r.now())
	if !ok {
		if err := r.client.Del(ctx, key, r.derivedKey(hash)).Err(); err != nil {
			return unavailable(op, err)
		}
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	old := s.Generation
	sealed, err := sealSession(r.ring, r.ks.session(hash), s, prevGeneration+1)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var prev [8]byte
	binary.BigEndian.PutUint64(prev[:], prevGeneration)
	var cmd *redis.Cmd
	r.replicated(ctx, func(c redis.Cmdable, pipelined bool) redis.Cmder {
		keys, args := []string{key}, []any{prev[:], sealed, ttl.Milliseconds(), r.changeChannel(), hash}
		if pipelined {
			cmd = updateScript.Eval(ctx, c, keys, args...)
		} else {
			cmd = updateScript.Run(ctx, c, keys, args...)
		}
		return cmd
	})
	res, err := cmd.Int()
	if res == 1 {
		r.cache.changed(Ref(hash))
	}
	switch {
	case err != nil:
		err = unavailable(op, err)
	case res == 0:
		err = fmt.Errorf("%s: %w", op, ErrNotFound)
	case res < 0:
		err = fmt.Errorf("%s: %w", op, ErrConflict)
	}
	if err != nil {
		s.Generation = old // the caller's record did not become the stored one
	}
	return err
}

// Delete implements Store.
func (r *RedisStore) Delete(ctx context.Context, id ID) error {
	return r.DeleteByRef(ctx, refOf(r.ring, id))
}

// PutLoginState implements Store with one SET PX login_state_ttl.
func (r *RedisStore) PutLoginState(ctx context.Context, state, browser string, ls *sessionpb.LoginState) error {
	const op = "put login state"
	if !validLoginKey(state, browser) {
		return fmt.Errorf("%s: state and browser must be 1-%d bytes, state without NUL", op, maxStateLen)
	}
	hash := r.ring.hashLoginState(state, browser)
	sealed, err := sealLoginState(r.ring, r.ks.loginState(hash), ls)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := r.client.Set(ctx, r.loginStateKey(hash), sealed, r.cfg.LoginStateTTL).Err(); err != nil {
		return unavailable(op, err)
	}
	return nil
}

// TakeLoginState implements Store with GETDEL, so of two concurrent callbacks
// with one state exactly one gets it.
func (r *RedisStore) TakeLoginState(ctx context.Context, state, browser string) (*sessionpb.LoginState, error) {
	const op = "take login state"
	if !validLoginKey(state, browser) { // no login cookie: nothing to take, no lookup
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	hash := r.ring.hashLoginState(state, browser)
	sealed, err := r.client.GetDel(ctx, r.loginStateKey(hash)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	ls, err := openLoginState(r.ring, r.ks.loginState(hash), sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	return ls, nil
}

// Ping checks Redis answers, for /readyz.
func (r *RedisStore) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping session store", err)
	}
	return nil
}

// Close ends the lock-release subscription and closes the Redis client,
// for every view. On a view it does nothing: the store that made it owns
// the client.
func (r *RedisStore) Close() error {
	if r.view {
		return nil
	}
	r.waiters.close()
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close session store: %w", err)
	}
	return nil
}

// OpenBackend builds the configured store: its key ring (from the inline
// keys or the key files), and for Redis a UniversalClient from the URL with
// the configured timeouts and pool. A memory backend configured without keys
// gets random ones, since its sessions die with the process anyway. Call Run
// on a *MemoryStore to sweep, and NewKeyReloader to follow the key files.
func OpenBackend(cfg Config, now func() time.Time) (Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open session backend: %w", err)
	}
	m, errs := cfg.loadKeys() // read again: the files may have changed since Validate
	if len(errs) > 0 {
		return nil, fmt.Errorf("open session backend: %w", errors.Join(errs...))
	}
	if cfg.Backend == BackendMemory {
		if err := ephemeralKeys(&m); err != nil {
			return nil, fmt.Errorf("open session backend: %w", err)
		}
	}
	ring, err := NewKeyRing(m.keys, m.hashKey)
	if err != nil {
		return nil, fmt.Errorf("open session backend: %w", err)
	}
	if cfg.Backend == BackendMemory {
		return NewMemoryStore(cfg, ring, now), nil
	}
	opts, err := redisOptions(cfg.Redis)
	if err != nil {
		return nil, fmt.Errorf("open session backend: %w", err)
	}
	return NewRedisStore(redis.NewUniversalClient(opts), cfg, ring, now), nil
}

// topology is what a Redis URL's query says beyond go-redis's single-node
// URL: the Sentinel master's name, the extra hosts, and whether one host is
// a Cluster's seed.
type topology struct {
	master  string
	extra   []string
	cluster bool
	// sentinelAuth is set when the URL names the Sentinels' own
	// credentials (sentinel_username, sentinel_password); otherwise they
	// are the URL's.
	sentinelAuth                   bool
	sentinelUsername, sentinelPass string
}

// errURLForm is a URL neither net/url nor go-redis can read. It says the
// form rather than the parser's message, which may quote the password.
var errURLForm = errors.New("redis.url: cannot be parsed; the form is redis://[user:pass@]host:port[/db], rediss://… or unix://…, " +
	"with ?master_name=<name>&addr=host:port… for Sentinel, ?addr=host:port… or ?cluster=true for Cluster")

// urlParams are the query parameters a session.redis.url may carry. The
// other parameters go-redis's ParseURL knows (pool_size, max_retries, …)
// would be silently dropped on the way to the UniversalClient: they are
// refused instead, and set through session.redis.* where envoy-bff
// supports them.
var urlParams = map[string]bool{
	"master_name": true, "addr": true, "cluster": true, "sentinel_username": true, "sentinel_password": true, // topology, taken out here
	"db": true, "protocol": true, "client_name": true, "skip_verify": true, // go-redis's, kept
}

// splitTopology takes master_name, addr and cluster out of a Redis URL's
// query, leaving a URL go-redis's ParseURL accepts. Its errors never quote
// the URL, which may hold a password.
func splitTopology(raw string) (single string, top topology, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", top, errURLForm
	}
	q := u.Query()
	for name := range q {
		if !urlParams[name] {
			return "", top, fmt.Errorf("redis.url: query parameter %q is not supported (only master_name, addr, sentinel_username, sentinel_password, cluster, db, protocol, client_name, skip_verify; timeouts and pool size are session.redis.* settings)", name)
		}
	}
	if vs, ok := q["master_name"]; ok {
		if len(vs) != 1 || vs[0] == "" {
			return "", top, errors.New("redis.url: master_name must be given once and not be empty")
		}
		top.master = vs[0]
	}
	if vs, ok := q["cluster"]; ok {
		if len(vs) != 1 || (vs[0] != "true" && vs[0] != "false") {
			return "", top, errors.New("redis.url: cluster must be true or false")
		}
		top.cluster = vs[0] == "true"
	}
	for _, name := range []string{"sentinel_username", "sentinel_password"} {
		vs, ok := q[name]
		if !ok {
			continue
		}
		if len(vs) != 1 {
			return "", top, fmt.Errorf("redis.url: %s must be given at most once", name)
		}
		top.sentinelAuth = true
		if name == "sentinel_username" {
			top.sentinelUsername = vs[0]
		} else {
			top.sentinelPass = vs[0]
		}
	}
	if top.sentinelAuth && top.master == "" {
		return "", top, errors.New("redis.url: sentinel_username and sentinel_password need master_name")
	}
	for _, a := range q["addr"] {
		if h, p, err := net.SplitHostPort(a); err != nil || h == "" || p == "" {
			return "", top, errors.New("redis.url: addr must be host:port")
		}
		top.extra = append(top.extra, a)
	}
	switch {
	case top.master != "" && top.cluster:
		return "", top, errors.New("redis.url: master_name (Sentinel) and cluster=true exclude each other")
	case (top.master != "" || top.cluster || len(top.extra) > 0) && u.Scheme == "unix":
		return "", top, errors.New("redis.url: Sentinel and Cluster need redis:// or rediss:// hosts, not unix://")
	}
	q.Del("master_name")
	q.Del("addr")
	q.Del("cluster")
	q.Del("sentinel_username")
	q.Del("sentinel_password")
	u.RawQuery = q.Encode()
	return u.String(), top, nil
}

// redisOptions turns the URL and settings into client options. Context
// deadlines are honoured, so a caller's budget bounds every command.
//
// Beyond go-redis's single-node URL, query parameters pick the topology, as
// go-redis's UniversalClient does from its options: master_name=<name>
// makes the URL's hosts Sentinels of that master, which authenticate with
// the URL's credentials unless sentinel_username/sentinel_password say
// otherwise (an empty sentinel_password= for Sentinels without one); each
// addr=<host:port> adds a host, and several hosts without master_name make
// a Cluster client; cluster=true makes one host (a configuration endpoint)
// a Cluster seed.
func redisOptions(c RedisConfig) (*redis.UniversalOptions, error) {
	single, top, err := splitTopology(c.URL)
	if err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(single)
	if err != nil {
		return nil, errURLForm
	}
	isCluster := top.master == "" && (top.cluster || len(top.extra) > 0)
	if isCluster && o.DB != 0 {
		// go-redis's Cluster client would ignore it: every key would land in database 0.
		return nil, errors.New("redis.url: a Cluster has only database 0; drop the /<db> or db=")
	}
	u := &redis.UniversalOptions{
		Addrs:                 append([]string{o.Addr}, top.extra...),
		MasterName:            top.master,
		IsClusterMode:         isCluster,
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              protocolOf(o.Protocol),
		Username:              o.Username,
		Password:              o.Password,
		TLSConfig:             o.TLSConfig,
		DialTimeout:           c.DialTimeout,
		ReadTimeout:           c.ReadTimeout,
		WriteTimeout:          c.WriteTimeout,
		PoolSize:              c.PoolSize,
		PoolTimeout:           c.PoolTimeout,
		ContextTimeoutEnabled: true,
		// Fail fast when Redis is down: the caller answers 503 within
		// Envoy's budget instead of dialling five times.
		DialerRetries: 1,
		// One attempt per command, so CommandBudget bounds every store call
		// and a Check needs no deadline of its own around its one GETEX
		// (a context timer per Check cost ~10% CPU). The pool discards
		// connections Redis closed before using them; a command lost in
		// flight answers 503 with retry-after, and the client retries.
		MaxRetries: -1,
	}
	switch {
	case top.sentinelAuth:
		// Sentinels with credentials of their own, or none (an empty
		// sentinel_password= in front of a master that has a password).
		u.SentinelUsername, u.SentinelPassword = top.sentinelUsername, top.sentinelPass
	case top.master != "":
		// Sentinels authenticate like the master unless told otherwise.
		u.SentinelUsername, u.SentinelPassword = o.Username, o.Password
	}
	if u.TLSConfig != nil && (top.master != "" || isCluster) {
		// ParseURL names the URL's first host as every connection's TLS
		// server name; the nodes of a Cluster and the master behind
		// Sentinels are other hosts. Left empty, each connection verifies
		// the certificate against the host it dials.
		u.TLSConfig.ServerName = ""
	}
	if o.Network == "unix" {
		u.Dialer = func(ctx context.Context, _, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}
	}
	return u, nil
}

// protocolOf is the RESP version to speak: RESP2 unless the URL asks for
// 3 (?protocol=3). envoy-bff uses no RESP3 feature, and go-redis checks a
// RESP3 connection for pending push notifications on every command, a
// syscall on the Check path.
func protocolOf(fromURL int) int {
	if fromURL == 3 {
		return 3
	}
	return 2
}

// ephemeralKeys fills missing keys of a memory backend with random ones.
func ephemeralKeys(m *keyMaterial) error {
	draw := func() (string, error) {
		b := make([]byte, keySize)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("draw ephemeral key: %w", err)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	if len(m.keys) == 0 {
		s, err := draw()
		if err != nil {
			return err
		}
		m.keys = KeyList{{ID: "ephemeral", Secret: s}}
	}
	if m.hashKey == "" {
		s, err := draw()
		if err != nil {
			return err
		}
		m.hashKey = s
	}
	return nil
}
