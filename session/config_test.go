package session_test

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/envoy-bff/envoy-bff/session"
)

const (
	secretA = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	secretB = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	secretC = "c3VpdGUtaGFzaC1rZXktMzItYnl0ZXMtbG9uZy4uLi4="
)

func validRedisConfig() session.Config {
	c := session.DefaultConfig()
	c.Backend = session.BackendRedis
	c.Redis.URL = "redis://127.0.0.1:6379/0"
	c.EncryptionKeys = session.KeyList{{ID: "k1", Secret: secretA}, {ID: "k0", Secret: secretB}}
	c.HashKey = secretC
	return c
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	c := session.DefaultConfig()
	if c.Backend != "memory" || c.KeyPrefix != "bff:" || c.IdleTimeout != 2*time.Hour ||
		c.AbsoluteLifetime != 12*time.Hour || c.LoginStateTTL != 10*time.Minute ||
		c.Cookie.Name != "__Host-bff" || c.Cookie.SameSite != "lax" ||
		c.Redis.DialTimeout != time.Second || c.Redis.ReadTimeout != 500*time.Millisecond ||
		c.Redis.WriteTimeout != 500*time.Millisecond || c.Redis.PoolSize != 32 {
		t.Errorf("DefaultConfig = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("default (memory, ephemeral keys) invalid: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(c *session.Config)
		want   []string // every one must appear; nil means valid
	}{
		{name: "valid_redis", mutate: func(*session.Config) {}},
		{name: "valid_strict", mutate: func(c *session.Config) { c.Cookie.SameSite = "strict" }},
		{name: "valid_url_safe_unpadded_secret", mutate: func(c *session.Config) {
			c.HashKey = strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(secretC), "=")
		}},
		{name: "valid_memory_without_keys", mutate: func(c *session.Config) {
			c.Backend, c.EncryptionKeys, c.HashKey, c.Redis = "memory", nil, "", session.RedisConfig{}
		}},
		{name: "valid_cache", mutate: func(c *session.Config) { c.Cache.TTL = 2 * time.Second }},
		{name: "cache_ttl_negative", mutate: func(c *session.Config) { c.Cache.TTL = -time.Second },
			want: []string{"cache.ttl: must be between 0 (off) and 1m0s"}},
		{name: "cache_ttl_too_long", mutate: func(c *session.Config) { c.Cache.TTL = 2 * time.Minute },
			want: []string{"cache.ttl: must be between 0 (off) and 1m0s"}},
		{name: "cache_on_memory", mutate: func(c *session.Config) {
			c.Backend, c.Redis, c.Cache.TTL = "memory", session.RedisConfig{}, time.Second
		}, want: []string{"cache.ttl: only for backend redis"}},
		{name: "cache_ttl_vs_idle", mutate: func(c *session.Config) { c.IdleTimeout, c.Cache.TTL = 40*time.Second, 30*time.Second },
			want: []string{"cache.ttl: must be at most half of idle_timeout"}},
		{name: "cache_max_entries", mutate: func(c *session.Config) { c.Cache.MaxEntries = 0 },
			want: []string{"cache.max_entries: must be positive"}},
		{name: "backend", mutate: func(c *session.Config) { c.Backend = "carrier-pigeon" },
			want: []string{`backend: must be "memory" or "redis"`}},
		{name: "valid_wait_replicas", mutate: func(c *session.Config) { c.Redis.WaitReplicas = 1 }},
		{name: "wait_replicas_negative", mutate: func(c *session.Config) { c.Redis.WaitReplicas = -1 },
			want: []string{"redis.wait_replicas: must be 0 (off) or positive"}},
		{name: "wait_timeout_past_read_timeout", mutate: func(c *session.Config) {
			c.Redis.WaitReplicas, c.Redis.WaitTimeout = 1, time.Second
		}, want: []string{"redis.wait_timeout: must be positive and at most read_timeout"}},
		{name: "wait_replicas_on_a_cluster", mutate: func(c *session.Config) {
			c.Redis.WaitReplicas, c.Redis.URL = 1, "redis://10.0.0.1:6379?addr=10.0.0.2:6379"
		}, want: []string{"redis.wait_replicas: not with a Cluster"}},
		{name: "redis_url_missing", mutate: func(c *session.Config) { c.Redis.URL = "" },
			want: []string{"redis.url: required when backend is redis"}},
		{name: "redis_url_bad_hides_password", mutate: func(c *session.Config) { c.Redis.URL = "http://user:hunter2@host" },
			want: []string{"redis.url: cannot be parsed; the form is redis://"}},
		{name: "redis_url_cluster_db", mutate: func(c *session.Config) { c.Redis.URL = "redis://u:hunter2@n1:7000/2?addr=n2:7001" },
			want: []string{"redis.url: a Cluster has only database 0"}},
		{name: "redis_url_param_dropped_by_go_redis", mutate: func(c *session.Config) { c.Redis.URL = "redis://u:hunter2@h:1?pool_size=9" },
			want: []string{`redis.url: query parameter "pool_size" is not supported`}},
		{name: "redis_url_empty_master_name", mutate: func(c *session.Config) { c.Redis.URL = "redis://s1:26379?master_name=&addr=s2:26379" },
			want: []string{"redis.url: master_name must be given once and not be empty"}},
		{name: "redis_url_sentinel_and_cluster", mutate: func(c *session.Config) { c.Redis.URL = "redis://s1:26379?master_name=m&cluster=true" },
			want: []string{"redis.url: master_name (Sentinel) and cluster=true exclude each other"}},
		{name: "redis_url_sentinel_password_without_sentinel", mutate: func(c *session.Config) { c.Redis.URL = "redis://h:1?sentinel_password=hunter2" },
			want: []string{"redis.url: sentinel_username and sentinel_password need master_name"}},
		{name: "redis_url_unix_cluster", mutate: func(c *session.Config) { c.Redis.URL = "unix:///run/redis.sock?addr=n2:7001" },
			want: []string{"redis.url: Sentinel and Cluster need redis:// or rediss://"}},
		{name: "redis_timeouts_and_pool", mutate: func(c *session.Config) { c.Redis = session.RedisConfig{URL: "redis://h:1"} },
			want: []string{"redis.dial_timeout: must be positive", "redis.read_timeout: must be positive",
				"redis.write_timeout: must be positive", "redis.pool_timeout: must be positive", "redis.pool_size: must be positive"}},
		{name: "durations", mutate: func(c *session.Config) { c.IdleTimeout, c.AbsoluteLifetime, c.LoginStateTTL = 0, 0, -1 },
			want: []string{"idle_timeout: must be at least 1ms", "absolute_lifetime: must be at least 1ms", "login_state_ttl: must be at least 1ms"}},
		{name: "idle_beyond_absolute", mutate: func(c *session.Config) { c.IdleTimeout = 13 * time.Hour },
			want: []string{"idle_timeout: must not exceed absolute_lifetime"}},
		{name: "key_prefix", mutate: func(c *session.Config) { c.KeyPrefix = "bff{x}" },
			want: []string{"key_prefix: must not contain"}},
		{name: "keys_required_for_redis", mutate: func(c *session.Config) { c.EncryptionKeys, c.HashKey = nil, "" },
			want: []string{"encryption_keys: required when backend is redis", "hash_key: required when backend is redis"}},
		{name: "key_entries", mutate: func(c *session.Config) {
			c.EncryptionKeys = session.KeyList{
				{ID: "k1", Secret: secretA},
				{ID: "k1", Secret: "c2hvcnQ="},
				{ID: "bad id!", Secret: secretB},
				{ID: strings.Repeat("k", 33), Secret: secretB},
			}
		}, want: []string{"encryption_keys[1].id: duplicate of encryption_keys[0].id", "encryption_keys[1].secret: must be 32 bytes of base64",
			"encryption_keys[2].id: must be 1-32 characters", "encryption_keys[3].id: must be 1-32 characters"}},
		{name: "hash_key_short", mutate: func(c *session.Config) { c.HashKey = "c2VjcmV0LXZhbHVlLXRoYXQtaXMtd3Jvbmc=" },
			want: []string{"hash_key: must be 32 bytes of base64"}},
		{name: "hash_key_reuses_encryption_key", mutate: func(c *session.Config) { c.HashKey = secretB },
			want: []string{"hash_key: must differ from encryption_keys[1].secret"}},
		{name: "cookie_name_prefix", mutate: func(c *session.Config) { c.Cookie.Name = "bff" },
			want: []string{"cookie.name: must start with __Host-"}},
		{name: "cookie_name_lowercase_prefix", mutate: func(c *session.Config) { c.Cookie.Name = "__host-bff" },
			want: []string{"cookie.name: must start with __Host-"}},
		{name: "cookie_name_secure_prefix", mutate: func(c *session.Config) { c.Cookie.Name = "__Secure-bff" },
			want: []string{"cookie.name: must start with __Host-"}},
		{name: "cookie_name_bare_prefix", mutate: func(c *session.Config) { c.Cookie.Name = "__Host-" },
			want: []string{"cookie.name: must be __Host- followed by"}},
		{name: "cookie_name_separator", mutate: func(c *session.Config) { c.Cookie.Name = "__Host-a;b" },
			want: []string{"cookie.name: must be __Host- followed by"}},
		{name: "same_site", mutate: func(c *session.Config) { c.Cookie.SameSite = "none" },
			want: []string{`cookie.same_site: must be "lax" or "strict"`}},
		{name: "many_at_once", mutate: func(c *session.Config) {
			c.Backend, c.Cookie.Name, c.HashKey = "x", "sid", "short"
		}, want: []string{"backend:", "cookie.name:", "hash_key:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := validRedisConfig()
			tc.mutate(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want %q", tc.want)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("Validate returned %T, want errors.Join", err)
			}
			if n := len(joined.Unwrap()); n != len(tc.want) {
				t.Errorf("%d errors, want %d: %v", n, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
			for _, secret := range []string{secretA, secretB, secretC, "hunter2", "c2hvcnQ=", "c2VjcmV0LXZhbHVlLXRoYXQtaXMtd3Jvbmc="} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error echoes a secret: %v", err)
				}
			}
		})
	}
}

func TestKeyListUnmarshalText(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    session.KeyList
		wantErr bool
	}{
		{name: "two", in: "k2:" + secretA + ",k1:" + secretB, want: session.KeyList{{ID: "k2", Secret: secretA}, {ID: "k1", Secret: secretB}}},
		{name: "spaces", in: " k2 : " + secretA + " , k1:" + secretB, want: session.KeyList{{ID: "k2", Secret: secretA}, {ID: "k1", Secret: secretB}}},
		{name: "empty", in: "", want: nil},
		{name: "no_colon", in: secretA, wantErr: true},
		{name: "empty_entry", in: "k1:" + secretA + ",", wantErr: true},
		{name: "empty_id", in: ":" + secretA, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got session.KeyList
			err := got.UnmarshalText([]byte(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("UnmarshalText = %v, want an error", got)
				}
				if strings.Contains(err.Error(), secretA) {
					t.Errorf("error echoes a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestKeyListYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
	}{
		{name: "list", doc: "encryption_keys:\n  - id: k2\n    secret: " + secretA + "\n  - id: k1\n    secret: " + secretB + "\n"},
		{name: "env_form_scalar", doc: "encryption_keys: k2:" + secretA + ",k1:" + secretB + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c session.Config
			if err := yaml.Unmarshal([]byte(tc.doc), &c); err != nil {
				t.Fatal(err)
			}
			if len(c.EncryptionKeys) != 2 || c.EncryptionKeys[0] != (session.Key{ID: "k2", Secret: secretA}) {
				t.Errorf("keys = %v", c.EncryptionKeys)
			}
		})
	}
}

// TestCommandBudget: the default Redis settings let one command finish
// inside authz's default check_timeout (3s), as the config loader requires.
func TestCommandBudget(t *testing.T) {
	t.Parallel()
	r := session.DefaultConfig().Redis
	if got, want := r.CommandBudget(), 2500*time.Millisecond; got != want {
		t.Fatalf("CommandBudget = %s, want pool 500ms + dial 1s + write 500ms + read 500ms = %s", got, want)
	}
}
