package main

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		wantErr []string // every substring must appear
		check   func(t *testing.T, c config)
	}{
		{
			name: "valid file",
			file: "testdata/valid.yaml",
			check: func(t *testing.T, c config) {
				if c.Session.Backend != "redis" || c.Session.Redis.URL != "redis://127.0.0.1:6379/0" {
					t.Errorf("session = %+v", c.Session)
				}
				if c.Authz.LoginPath != "/bff/login" {
					t.Errorf("authz.login_path defaulted to %q", c.Authz.LoginPath)
				}
			},
		},
		{
			name: "environment overrides the file",
			file: "testdata/valid.yaml",
			env: map[string]string{
				"ENVOY_BFF_SESSION_REDIS_URL":       "redis://10.0.0.1:6380/2",
				"ENVOY_BFF_OIDC_CLIENT_SECRET":      "from-env",
				"ENVOY_BFF_SESSION_IDLE_TIMEOUT":    "45m",
				"ENVOY_BFF_OIDC_SCOPES":             "openid,email",
				"ENVOY_BFF_LISTEN_SHUTDOWN_TIMEOUT": "3s",
			},
			check: func(t *testing.T, c config) {
				if c.Session.Redis.URL != "redis://10.0.0.1:6380/2" || c.OIDC.ClientSecret != "from-env" {
					t.Errorf("env not applied: %+v %+v", c.Session.Redis, c.OIDC.ClientSecret == "from-env")
				}
				if c.Session.IdleTimeout != 45*time.Minute || c.Listen.ShutdownTimeout != 3*time.Second {
					t.Errorf("durations: %v %v", c.Session.IdleTimeout, c.Listen.ShutdownTimeout)
				}
				if strings.Join(c.OIDC.Scopes, " ") != "openid email" {
					t.Errorf("scopes = %v", c.OIDC.Scopes)
				}
			},
		},
		{
			name: "environment alone, key ring in env form",
			env: map[string]string{
				"ENVOY_BFF_SESSION_ENCRYPTION_KEYS": "k2:MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE=,k1:YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=",
				"ENVOY_BFF_SESSION_HASH_KEY":        "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g=",
				"ENVOY_BFF_OIDC_ISSUER":             "https://idp.example.com",
				"ENVOY_BFF_OIDC_CLIENT_ID":          "app",
				"ENVOY_BFF_OIDC_CLIENT_SECRET":      "x",
				"ENVOY_BFF_OIDC_REDIRECT_URL":       "https://app.example.com/bff/callback",
				"ENVOY_BFF_AUTHZ_PATH_RULES":        "[{prefix: /api/, policy: user}, {exact: /, policy: none}]",
			},
			check: func(t *testing.T, c config) {
				if len(c.Session.EncryptionKeys) != 2 || c.Session.EncryptionKeys[0].ID != "k2" {
					t.Errorf("keys = %d", len(c.Session.EncryptionKeys))
				}
				if len(c.Authz.PathRules) != 2 {
					t.Errorf("path rules = %+v", c.Authz.PathRules)
				}
			},
		},
		{
			name: "drain delay and tracing: defaults, then the environment",
			file: "testdata/valid.yaml",
			env: map[string]string{
				"ENVOY_BFF_LISTEN_DRAIN_DELAY":   "1500ms",
				"ENVOY_BFF_TRACING_ENABLED":      "true",
				"ENVOY_BFF_TRACING_ENDPOINT":     "otel-collector:4317",
				"ENVOY_BFF_TRACING_SAMPLE_RATIO": "0.25",
				"ENVOY_BFF_TRACING_SERVICE_NAME": "bff-eu",
			},
			check: func(t *testing.T, c config) {
				if c.Listen.DrainDelay != 1500*time.Millisecond {
					t.Errorf("listen.drain_delay = %v", c.Listen.DrainDelay)
				}
				tr := c.Tracing
				if !tr.Enabled || tr.Endpoint != "otel-collector:4317" || tr.SampleRatio != 0.25 || tr.ServiceName != "bff-eu" || tr.Insecure {
					t.Errorf("tracing = %+v", tr)
				}
			},
		},
		{
			name: "tracing off by default, drain delay 5s",
			file: "testdata/valid.yaml",
			check: func(t *testing.T, c config) {
				if c.Tracing.Enabled || c.Listen.DrainDelay != 5*time.Second {
					t.Errorf("tracing %+v, drain delay %v", c.Tracing, c.Listen.DrainDelay)
				}
			},
		},
		{
			name: "bad drain delay and tracing fields named",
			file: "testdata/valid.yaml",
			env: map[string]string{
				"ENVOY_BFF_LISTEN_DRAIN_DELAY":   "-1s",
				"ENVOY_BFF_TRACING_ENABLED":      "true",
				"ENVOY_BFF_TRACING_ENDPOINT":     "collector",
				"ENVOY_BFF_TRACING_SAMPLE_RATIO": "1.5",
			},
			wantErr: []string{"listen.drain_delay: must be between 0 and 1m0s", "tracing.endpoint: must be host:port", "tracing.sample_ratio: must be between 0 and 1"},
		},
		{
			name:    "unknown key is an error",
			file:    "testdata/unknown-key.yaml",
			wantErr: []string{"colour"},
		},
		{
			name:    "bad environment value names the variable",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_SESSION_IDLE_TIMEOUT": "soon"},
			wantErr: []string{"session.idle_timeout", "ENVOY_BFF_SESSION_IDLE_TIMEOUT"},
		},
		{
			name: "every bad field named at once",
			file: "testdata/many-bad.yaml",
			wantErr: []string{"listen.grpc", "log.level", "session.backend", "session.cookie.name",
				"oidc.issuer", "oidc.client_id", "authz.default_policy"},
		},
		{
			name: "client tokens from the environment, used by a client rule",
			file: "testdata/valid.yaml",
			env: map[string]string{
				"ENVOY_BFF_OIDC_CLIENT_TOKENS": "{default: {scopes: [api.read]}, billing: {audience: billing-api}}",
				"ENVOY_BFF_AUTHZ_PATH_RULES":   "[{prefix: /partner/, policy: client, client_token: billing}, {prefix: /catalog/, policy: user_or_client}]",
			},
			check: func(t *testing.T, c config) {
				if c.OIDC.ClientTokens["billing"].Audience != "billing-api" || len(c.OIDC.ClientTokens["default"].Scopes) != 1 {
					t.Errorf("client tokens = %+v", c.OIDC.ClientTokens)
				}
			},
		},
		{
			name:    "a client rule naming an undefined client token",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_AUTHZ_PATH_RULES": "[{prefix: /partner/, policy: client, client_token: billing}]"},
			wantErr: []string{`oidc.client_tokens: "billing" is used by an authz rule with a client policy but not defined`},
		},
		{
			name:    "a client default policy needs the default client token",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_AUTHZ_DEFAULT_POLICY": "user_or_client"},
			wantErr: []string{`oidc.client_tokens: "default"`},
		},
		{
			name:    "lock TTL must outlive the provider timeout",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_SESSION_LOCK_TTL": "2s", "ENVOY_BFF_OIDC_PROVIDER_TIMEOUT": "3s"},
			wantErr: []string{"session.lock_ttl: must be longer than oidc.provider_timeout (3s), got 2s"},
		},
		{
			name: "check timeout fits the default Redis settings",
			file: "testdata/valid.yaml",
			check: func(t *testing.T, c config) {
				if c.Authz.CheckTimeout != 3*time.Second || c.Session.Redis.PoolTimeout != 500*time.Millisecond {
					t.Errorf("defaults: check_timeout %s, pool_timeout %s", c.Authz.CheckTimeout, c.Session.Redis.PoolTimeout)
				}
			},
		},
		{
			name:    "check timeout shorter than one Redis command",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_AUTHZ_CHECK_TIMEOUT": "2s", "ENVOY_BFF_SESSION_REDIS_READ_TIMEOUT": "1s"},
			wantErr: []string{"authz.check_timeout: must be longer than one Redis command can take", "= 3s), got 2s"},
		},
		{
			name:    "check timeout out of bounds",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_AUTHZ_CHECK_TIMEOUT": "0s", "ENVOY_BFF_SESSION_REDIS_POOL_TIMEOUT": "0s"},
			wantErr: []string{"authz.check_timeout: must be between", "session.redis.pool_timeout: must be positive"},
		},
		{
			name:    "admin beyond loopback needs a token",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_LISTEN_ADMIN": "0.0.0.0:9003"},
			wantErr: []string{"listen.admin_token: required when admin listens beyond loopback"},
		},
		{
			name: "admin beyond loopback with a token",
			file: "testdata/valid.yaml",
			env:  map[string]string{"ENVOY_BFF_LISTEN_ADMIN": "0.0.0.0:9003", "ENVOY_BFF_LISTEN_ADMIN_TOKEN": "a-long-enough-admin-token"},
			check: func(t *testing.T, c config) {
				if c.Listen.AdminToken != "a-long-enough-admin-token" {
					t.Errorf("admin token not loaded")
				}
			},
		},
		{
			name:    "short admin token",
			file:    "testdata/valid.yaml",
			env:     map[string]string{"ENVOY_BFF_LISTEN_ADMIN_TOKEN": "short"},
			wantErr: []string{"listen.admin_token: must be at least 16 characters"},
		},
		{
			name:    "missing file",
			file:    "testdata/nope.yaml",
			wantErr: []string{"read config"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(tc.file, env(tc.env))
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("want an error")
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error lacks %q:\n%v", s, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestConfigErrorsHideSecrets(t *testing.T) {
	t.Parallel()
	_, err := loadConfig("testdata/valid.yaml", env(map[string]string{
		"ENVOY_BFF_SESSION_HASH_KEY":   "c2VjcmV0LXZhbHVlLXRoYXQtaXMtd3Jvbmc=",
		"ENVOY_BFF_OIDC_CLIENT_SECRET": "",
	}))
	if err == nil {
		t.Fatal("want an error for a short hash key")
	}
	if strings.Contains(err.Error(), "c2VjcmV0LXZhbHVlLXRoYXQtaXMtd3Jvbmc=") {
		t.Fatalf("error echoes a secret: %v", err)
	}
}

// TestEveryFieldHasAnEnvironmentVariable guards docs/configuration.md's promise.
func TestEveryFieldHasAnEnvironmentVariable(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	fields := envFields(&c, envPrefix)
	if len(fields) < 20 {
		t.Fatalf("only %d overridable fields found", len(fields))
	}
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.env] {
			t.Errorf("two fields share %s", f.env)
		}
		seen[f.env] = true
		if err := setFromString(f.val, "x"); err != nil && strings.Contains(err.Error(), "cannot be set") {
			t.Errorf("%s cannot be set from the environment", f.env)
		}
	}
}
