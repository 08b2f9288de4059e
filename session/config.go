package session

import "time"

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
	// EncryptionKeys seal records at rest; the first is the primary that encrypts, the others only decrypt.
	EncryptionKeys KeyList `yaml:"encryption_keys"`
	// HashKey is the base64 32-byte key of the keyed hash that turns a cookie value into a store key.
	HashKey string `yaml:"hash_key"`
	// Cookie shapes the session cookie.
	Cookie CookieConfig `yaml:"cookie"`
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
	// PoolSize is the number of connections per replica.
	PoolSize int `yaml:"pool_size"`
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
