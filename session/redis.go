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
}

var _ Backend = (*RedisStore)(nil)

// RedisStore keeps sealed records in Redis, shared by every replica. Each
// operation is one round trip; the compare-and-set Update is a Lua script.
type RedisStore struct {
	client  redis.UniversalClient
	cfg     Config
	ring    *KeyRing
	now     func() time.Time
	waiters lockWaiters
}

// updateScript is Update's compare-and-set: it compares the clear generation
// in the sealed record's header (bytes 1..8, authenticated as GCM additional
// data) without decrypting, and replaces the record only if it is unchanged.
// KEYS[1] the session key; ARGV[1] the expected generation as 8 big-endian
// bytes; ARGV[2] the new sealed record; ARGV[3] its TTL in milliseconds.
// Returns 1 written, 0 absent, -1 generation changed.
var updateScript = redis.NewScript(`
local cur = redis.call('GETRANGE', KEYS[1], 0, 8)
if cur == '' then return 0 end
if string.sub(cur, 2, 9) ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
`)

// NewRedisStore wraps client (a single node, Sentinel or Cluster client) on
// the given clock (time.Now if nil). Close closes client.
func NewRedisStore(client redis.UniversalClient, cfg Config, ring *KeyRing, now func() time.Time) *RedisStore {
	if now == nil {
		now = time.Now
	}
	return &RedisStore{client: client, cfg: cfg, ring: ring, now: now}
}

// withKeyRing is a store over the same Redis keys that seals with ring.
func (r *RedisStore) withKeyRing(ring *KeyRing) *RedisStore {
	return &RedisStore{client: r.client, cfg: r.cfg, ring: ring, now: r.now}
}

// sessionKey is <prefix>{<hash>}:s; the hash tag puts every key of one
// session in one Cluster slot.
func (r *RedisStore) sessionKey(hash string) string {
	return r.cfg.KeyPrefix + "{" + hash + "}:s"
}

func (r *RedisStore) loginStateKey(hash string) string {
	return r.cfg.KeyPrefix + "{" + hash + "}:l"
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
	const op = "get session"
	hash := r.ring.HashID(id)
	key := r.sessionKey(hash)
	sealed, err := r.client.GetEx(ctx, key, r.cfg.IdleTimeout).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	s, err := openOwnedSession(r.ring, hash, sealed) // GETEX's reply is ours alone
	if err != nil {
		return nil, notFound(op, err)
	}
	if _, ok := sessionTTL(s, r.cfg.IdleTimeout, r.now()); !ok {
		// Best effort: the session is over whether or not DEL lands, and its
		// TTL removes it at the latest one idle timeout from now.
		_ = r.client.Del(ctx, key).Err()
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return s, nil
}

// Create implements Store with one SET PX (the idle timeout, cut short by the
// absolute lifetime). It sets s.Generation to 1 and fills the creation time
// and absolute expiry when they are zero.
func (r *RedisStore) Create(ctx context.Context, id ID, s *sessionpb.Session) error {
	const op = "create session"
	n, err := prepareCreate(r.ring, r.cfg, id, s, r.now())
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	ref := Ref(n.hash)
	if err := r.addToIndexes(ctx, ref, s, r.now()); err != nil {
		r.undoIndexes(ctx, ref, s, err)
		return unavailable(op, err)
	}
	if err := r.client.Set(ctx, r.sessionKey(n.hash), n.sealed, n.ttl).Err(); err != nil {
		r.undoIndexes(ctx, ref, s, err)
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
func (r *RedisStore) undoIndexes(ctx context.Context, ref Ref, s *sessionpb.Session, cause error) {
	var refused redis.Error
	if !errors.As(cause, &refused) || errors.Is(cause, redis.Nil) {
		return
	}
	for _, idx := range indexesOf(r.ring, s) {
		_ = r.client.ZRem(ctx, r.redisIndexKey(idx), string(ref)).Err()
	}
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
		if err := r.client.Del(ctx, key).Err(); err != nil {
			return unavailable(op, err)
		}
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	old := s.Generation
	sealed, err := sealSession(r.ring, hash, s, prevGeneration+1)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var prev [8]byte
	binary.BigEndian.PutUint64(prev[:], prevGeneration)
	res, err := updateScript.Run(ctx, r.client, []string{key}, prev[:], sealed, ttl.Milliseconds()).Int()
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
func (r *RedisStore) PutLoginState(ctx context.Context, state string, ls *sessionpb.LoginState) error {
	const op = "put login state"
	if !validState(state) {
		return fmt.Errorf("%s: state must be 1-%d bytes", op, maxStateLen)
	}
	hash := r.ring.hashLoginState(state)
	sealed, err := sealLoginState(r.ring, hash, ls)
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
func (r *RedisStore) TakeLoginState(ctx context.Context, state string) (*sessionpb.LoginState, error) {
	const op = "take login state"
	if !validState(state) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	hash := r.ring.hashLoginState(state)
	sealed, err := r.client.GetDel(ctx, r.loginStateKey(hash)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, unavailable(op, err)
	}
	ls, err := openLoginState(r.ring, hash, sealed)
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

// Close ends the lock-release subscription and closes the Redis client.
func (r *RedisStore) Close() error {
	r.waiters.close()
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close session store: %w", err)
	}
	return nil
}

// OpenBackend builds the configured store: its key ring, and for Redis a
// UniversalClient from the URL with the configured timeouts and pool. A
// memory backend configured without keys gets random ones, since its
// sessions die with the process anyway. Call Run on a *MemoryStore to sweep.
func OpenBackend(cfg Config, now func() time.Time) (Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("open session backend: %w", err)
	}
	if cfg.Backend == BackendMemory {
		if err := ephemeralKeys(&cfg); err != nil {
			return nil, fmt.Errorf("open session backend: %w", err)
		}
	}
	ring, err := NewKeyRing(cfg.EncryptionKeys, cfg.HashKey)
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

// splitTopology takes master_name and addr out of a Redis URL's query,
// leaving a URL go-redis's ParseURL accepts.
func splitTopology(raw string) (single, master string, extra []string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", nil, errors.New("redis.url: cannot be parsed")
	}
	q := u.Query()
	master = q.Get("master_name")
	for _, a := range q["addr"] {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return "", "", nil, errors.New("redis.url: addr must be host:port")
		}
		extra = append(extra, a)
	}
	q.Del("master_name")
	q.Del("addr")
	u.RawQuery = q.Encode()
	return u.String(), master, extra, nil
}

// redisOptions turns the URL and settings into client options. Context
// deadlines are honoured, so a caller's budget bounds every command.
//
// Beyond go-redis's single-node URL, two query parameters pick the
// topology, as go-redis's UniversalClient does from its options:
// master_name=<name> makes the URL's hosts Sentinels of that master, and
// each addr=<host:port> adds a host (several hosts without master_name make
// a Cluster client).
func redisOptions(c RedisConfig) (*redis.UniversalOptions, error) {
	single, master, extra, err := splitTopology(c.URL)
	if err != nil {
		return nil, err
	}
	o, err := redis.ParseURL(single)
	if err != nil {
		return nil, errors.New("redis.url: cannot be parsed") // the parser's message may hold the password
	}
	u := &redis.UniversalOptions{
		Addrs:                 append([]string{o.Addr}, extra...),
		MasterName:            master,
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
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
	}
	if master != "" {
		// Sentinels authenticate like the master unless told otherwise.
		u.SentinelUsername, u.SentinelPassword = o.Username, o.Password
	}
	if o.Network == "unix" {
		u.Dialer = func(ctx context.Context, _, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		}
	}
	return u, nil
}

// ephemeralKeys fills missing keys of a memory backend with random ones.
func ephemeralKeys(cfg *Config) error {
	draw := func() (string, error) {
		b := make([]byte, keySize)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("draw ephemeral key: %w", err)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	if len(cfg.EncryptionKeys) == 0 {
		s, err := draw()
		if err != nil {
			return err
		}
		cfg.EncryptionKeys = KeyList{{ID: "ephemeral", Secret: s}}
	}
	if cfg.HashKey == "" {
		s, err := draw()
		if err != nil {
			return err
		}
		cfg.HashKey = s
	}
	return nil
}
