package session

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is the `session:` section of envoy-bff's config file.
type Config struct {
	// Backend is "memory" (one node, the demo) or "redis".
	Backend string `yaml:"backend"`
	// Redis configures the Redis backend.
	Redis RedisConfig `yaml:"redis"`
	// KeyPrefix starts every key envoy-bff writes to Redis.
	KeyPrefix string `yaml:"key_prefix"`
	// IdleTimeout ends a session not used for this long (sliding).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// AbsoluteLifetime ends a session this long after login, however busy.
	AbsoluteLifetime time.Duration `yaml:"absolute_lifetime"`
	// LoginStateTTL bounds how long a pending login may take.
	LoginStateTTL time.Duration `yaml:"login_state_ttl"`
	// LockTTL is a refresh lock's lifetime; its holder renews it every third
	// of it, so only a holder that died (or was paused) lets it lapse.
	LockTTL time.Duration `yaml:"lock_ttl"`
	// LockPollInterval is how often a waiter re-checks a lock when no
	// release message arrives (a holder that died publishes none).
	LockPollInterval time.Duration `yaml:"lock_poll_interval"`
	// EncryptionKeys seal records at rest; the first is the primary that encrypts, the others only decrypt.
	EncryptionKeys KeyList `yaml:"encryption_keys"`
	// EncryptionKeysFile names a file of encryption keys instead: one id:secret per line, the
	// primary first, # comments allowed (a mounted Kubernetes Secret). Re-read on SIGHUP and
	// when it changes. Set it or EncryptionKeys, not both.
	EncryptionKeysFile string `yaml:"encryption_keys_file"`
	// HashKey is the base64 32-byte key of the keyed hash that turns a cookie value into a store key.
	HashKey string `yaml:"hash_key"`
	// HashKeyFile names a file holding the hash key instead (one base64 line, # comments
	// allowed). A reload that finds it changed is refused. Set it or HashKey, not both.
	HashKeyFile string `yaml:"hash_key_file"`
	// KeyFilesPollInterval is how often the key files are checked for a change; 0 leaves
	// reloading to SIGHUP alone.
	KeyFilesPollInterval time.Duration `yaml:"key_files_poll_interval"`
	// Cookie shapes the session cookie.
	Cookie CookieConfig `yaml:"cookie"`
	// Cache is the optional in-process cache of opened sessions for Check.
	Cache CacheConfig `yaml:"cache"`
}

// RedisConfig configures the go-redis UniversalClient.
type RedisConfig struct {
	// URL is redis://[user:pass@]host:port[/db] or rediss:// for TLS.
	URL string `yaml:"url"`
	// DialTimeout bounds connecting.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds one command's reply; keep it well inside Envoy's ext_authz timeout.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds sending one command.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// PoolSize is the number of connections per replica. A command that finds
	// all of them busy waits up to PoolTimeout for one.
	PoolSize int `yaml:"pool_size"`
	// PoolTimeout bounds that wait (go-redis would default to read_timeout+1s).
	PoolTimeout time.Duration `yaml:"pool_timeout"`
	// WaitReplicas, when positive, makes every write that carries tokens (a
	// login's new session, a refresh's rotated tokens) wait until that many
	// replicas hold it (Redis WAIT), so a failover right after cannot lose a
	// rotated refresh token (T57). 0, the default, does not wait.
	WaitReplicas int `yaml:"wait_replicas"`
	// WaitTimeout bounds that wait; a write not replicated in time is kept,
	// and counted in envoy_bff_store_unreplicated_writes_total.
	WaitTimeout time.Duration `yaml:"wait_timeout"`
}

// CommandBudget is the longest one Redis command can take under these
// settings before go-redis gives up on it: waiting for a pooled connection,
// dialling a new one, sending, and reading the reply. A caller's deadline
// (authz.check_timeout) must be longer, or no command could ever finish in
// it. Commands are not retried (redisOptions), so this bounds every store call.
func (r RedisConfig) CommandBudget() time.Duration {
	return r.PoolTimeout + r.DialTimeout + r.WriteTimeout + r.ReadTimeout
}

// Key is one entry of the encryption key ring.
type Key struct {
	// ID names the key inside every record it seals, so the ring finds it again.
	ID string `yaml:"id"`
	// Secret is 32 random bytes, base64 (standard or URL alphabet).
	Secret string `yaml:"secret"`
}

// KeyList is the key ring as configured. In an environment variable it is
// written "id1:secret1,id2:secret2".
type KeyList []Key

// CookieConfig shapes the session cookie.
type CookieConfig struct {
	// Name must start with __Host- so the browser pins it to this origin over HTTPS.
	Name string `yaml:"name"`
	// SameSite is "lax" (default) or "strict".
	SameSite string `yaml:"same_site"`
}

// Backend names accepted in Config.Backend.
const (
	// BackendMemory keeps sessions in this process: one replica, the demo.
	BackendMemory = "memory"
	// BackendRedis keeps sessions in Redis, shared by every replica.
	BackendRedis = "redis"
)

// Limits that Validate enforces.
const (
	maxKeyIDLen     = 32
	maxKeyPrefixLen = 64
	maxCookieName   = 128
	cookiePrefix    = "__Host-"
)

// minKeyFilesPoll bounds Config.KeyFilesPollInterval from below: each poll
// reads the files, and a change is applied on the poll after it is seen.
const minKeyFilesPoll = 100 * time.Millisecond

// defaultKeyFilesPoll is "every few seconds": a rotation step is seen well
// within a Kubernetes Secret's own update delay (about a minute).
const defaultKeyFilesPoll = 5 * time.Second

// Bounds of Config.LockTTL.
const (
	minLockTTL = 100 * time.Millisecond
	maxLockTTL = 5 * time.Minute
)

// DefaultConfig is the configuration a file or the environment overrides:
// in-memory sessions, 2h idle, 12h absolute, and the __Host-bff cookie.
// It has no keys; Validate requires them for Redis.
func DefaultConfig() Config {
	c := Config{
		Backend: BackendMemory,
		Redis: RedisConfig{
			DialTimeout:  time.Second,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
			PoolSize:     32,
			PoolTimeout:  500 * time.Millisecond,
			WaitTimeout:  100 * time.Millisecond,
		},
		KeyPrefix:        "bff:",
		IdleTimeout:      2 * time.Hour,
		AbsoluteLifetime: 12 * time.Hour,
		LoginStateTTL:    10 * time.Minute,
		LockTTL:          10 * time.Second,
		LockPollInterval: 100 * time.Millisecond,
		Cookie:           CookieConfig{Name: "__Host-bff", SameSite: "lax"},
		Cache:            CacheConfig{MaxEntries: 10_000},
	}
	c.KeyFilesPollInterval = defaultKeyFilesPoll
	return c
}

// Validate reports every bad field at once, each error reading
// "<field>: <problem>" with the field path relative to the session section.
// No error repeats a secret.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	switch c.Backend {
	case BackendMemory:
	case BackendRedis:
		errs = append(errs, c.Redis.validate()...)
	default:
		bad("backend", "must be %q or %q, got %q", BackendMemory, BackendRedis, c.Backend)
	}
	if len(c.KeyPrefix) > maxKeyPrefixLen {
		bad("key_prefix", "must be at most %d bytes", maxKeyPrefixLen)
	}
	if strings.ContainsFunc(c.KeyPrefix, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '{' || r == '}' }) {
		bad("key_prefix", "must not contain spaces, control characters, '{' or '}' (hash tags are envoy-bff's)")
	}
	errs = append(errs, validateLifetimes(c.IdleTimeout, c.AbsoluteLifetime)...)
	if c.LoginStateTTL < time.Millisecond {
		bad("login_state_ttl", "must be at least 1ms")
	}
	if c.LockTTL < minLockTTL || c.LockTTL > maxLockTTL {
		bad("lock_ttl", "must be between %s and %s, got %s", minLockTTL, maxLockTTL, c.LockTTL)
	}
	if c.LockPollInterval <= 0 || c.LockPollInterval >= c.LockTTL {
		bad("lock_poll_interval", "must be positive and shorter than lock_ttl, got %s", c.LockPollInterval)
	}
	// Memory sessions die with the process, so OpenBackend may draw
	// ephemeral keys; Redis sessions outlive it and are shared.
	required := c.Backend == BackendRedis
	m, keyErrs := c.loadKeys()
	errs = append(errs, keyErrs...)
	if len(m.keys) == 0 && !m.keysFailed && required {
		bad("encryption_keys", "required when backend is redis (inline, or encryption_keys_file)")
	}
	if m.hashKey == "" && !m.hashFailed && required {
		bad("hash_key", "required when backend is redis (inline, or hash_key_file)")
	}
	if m.hashKey != "" {
		for i, k := range m.keys {
			if k.Secret == m.hashKey {
				bad(m.hashField, "must differ from %s", m.keyName(i))
			}
		}
	}
	if c.KeyFilesPollInterval < 0 || (c.KeyFilesPollInterval > 0 && c.KeyFilesPollInterval < minKeyFilesPoll) {
		bad("key_files_poll_interval", "must be 0 (SIGHUP only) or at least %s, got %s", minKeyFilesPoll, c.KeyFilesPollInterval)
	}
	errs = append(errs, c.Cookie.validate()...)
	errs = append(errs, c.Cache.validate(c.Backend, c.IdleTimeout)...)
	return errors.Join(errs...)
}

func (r RedisConfig) validate() []error {
	var errs []error
	var opts *redis.UniversalOptions
	if r.URL == "" {
		errs = append(errs, errors.New("redis.url: required when backend is redis"))
	} else if o, err := redisOptions(r); err != nil {
		errs = append(errs, err) // redisOptions never quotes the URL, which may hold a password
	} else {
		opts = o
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"redis.dial_timeout", r.DialTimeout}, {"redis.read_timeout", r.ReadTimeout}, {"redis.write_timeout", r.WriteTimeout}, {"redis.pool_timeout", r.PoolTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.field))
		}
	}
	if r.PoolSize <= 0 {
		errs = append(errs, errors.New("redis.pool_size: must be positive"))
	}
	switch {
	case r.WaitReplicas < 0:
		errs = append(errs, fmt.Errorf("redis.wait_replicas: must be 0 (off) or positive, got %d", r.WaitReplicas))
	case r.WaitReplicas > 0 && (r.WaitTimeout <= 0 || r.WaitTimeout > r.ReadTimeout):
		// WAIT's reply comes within read_timeout, or the write looks failed.
		errs = append(errs, fmt.Errorf("redis.wait_timeout: must be positive and at most read_timeout (%s), got %s", r.ReadTimeout, r.WaitTimeout))
	case r.WaitReplicas > 0 && opts != nil && opts.IsClusterMode:
		errs = append(errs, errors.New("redis.wait_replicas: not with a Cluster (WAIT would reach another node than the write)"))
	}
	return errs
}

func (l KeyList) validate(field string) []error {
	var errs []error
	seen := make(map[string]int, len(l))
	for i, k := range l {
		switch {
		case !validKeyID(k.ID):
			errs = append(errs, fmt.Errorf("%s[%d].id: must be 1-%d characters of A-Z a-z 0-9 _ -", field, i, maxKeyIDLen))
		default:
			if j, dup := seen[k.ID]; dup {
				errs = append(errs, fmt.Errorf("%s[%d].id: duplicate of %s[%d].id", field, i, field, j))
			}
			seen[k.ID] = i
		}
		if !isKeySecret(k.Secret) {
			errs = append(errs, fmt.Errorf("%s[%d].secret: must be 32 bytes of base64", field, i))
		}
	}
	return errs
}

func (c CookieConfig) validate() []error {
	var errs []error
	switch {
	case !strings.HasPrefix(c.Name, cookiePrefix):
		errs = append(errs, fmt.Errorf("cookie.name: must start with %s", cookiePrefix))
	case len(c.Name) == len(cookiePrefix) || len(c.Name) > maxCookieName || !isToken(c.Name):
		errs = append(errs, fmt.Errorf("cookie.name: must be %s followed by 1-%d token characters", cookiePrefix, maxCookieName-len(cookiePrefix)))
	}
	if c.SameSite != "lax" && c.SameSite != "strict" {
		errs = append(errs, fmt.Errorf("cookie.same_site: must be \"lax\" or \"strict\", got %q", c.SameSite))
	}
	return errs
}

// UnmarshalText reads the environment form "id1:secret1,id2:secret2"
// (primary first). The YAML list form does not pass through here. Errors name
// the entry by position, never its secret.
func (l *KeyList) UnmarshalText(text []byte) error {
	s := strings.TrimSpace(string(text))
	if s == "" {
		*l = nil
		return nil
	}
	var out KeyList
	for i, entry := range strings.Split(s, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(entry), ":")
		if !ok || id == "" || secret == "" {
			return fmt.Errorf("key list entry %d: want id:secret", i)
		}
		out = append(out, Key{ID: strings.TrimSpace(id), Secret: strings.TrimSpace(secret)})
	}
	*l = out
	return nil
}

// validKeyID reports whether id matches [A-Za-z0-9_-]{1,32}.
func validKeyID(id string) bool {
	if id == "" || len(id) > maxKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 7230 token, the grammar of a cookie name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return s != ""
}

func isKeySecret(s string) bool {
	_, err := decodeSecret(s)
	return err == nil
}

// decodeSecret decodes a 32-byte key written in standard or URL-safe base64,
// padded or not.
func decodeSecret(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil && len(b) == keySize {
			return b, nil
		}
	}
	return nil, errBadSecret
}

var errBadSecret = errors.New("must be 32 bytes of base64")
