package main

import (
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"help", "serve"}, 0, "Usage: envoy-bff serve"},
		{[]string{"serve", "--help"}, 0, "-config"},
		{[]string{"version"}, 0, "envoy-bff "},
		{[]string{"version", "--help"}, 0, "Usage: envoy-bff version"},
		{[]string{"sessions", "--help"}, 0, "envoy-bff sessions list"},
		{[]string{"keys", "--help"}, 0, "envoy-bff keys generate"},
		{[]string{"keys"}, 2, "Usage: envoy-bff keys generate"},
		{[]string{"keys", "generate", "--id", "bad id!"}, 2, "envoy-bff keys generate:"},
		{[]string{"keys", "generate", "--id", "k2"}, 0, "ENVOY_BFF_SESSION_ENCRYPTION_KEYS=k2:"},
		{[]string{"keys", "generate", "--help"}, 0, "3. Retire:"},
		{[]string{"keys", "--help"}, 0, "1. Add: envoy-bff keys generate --id k2 --format keys-file"},
		{[]string{"keys", "generate", "--format", "yaml"}, 2, "--format must be all, keys-file or hash-key-file"},
		{[]string{"sessions", "list", "--help"}, 0, "-sub"},
		{[]string{"sessions", "revoke", "--help"}, 0, "--frontend NAME"},
		{[]string{"help", "sessions"}, 0, "envoy-bff sessions revoke"},
		{[]string{"sessions"}, 2, "Usage:"},
		{[]string{"sessions", "list"}, 2, "give --sub"},
		{[]string{"sessions", "revoke", "--sub", "a", "--ref", "b"}, 2, "exactly one of --sub and --ref"},
		{[]string{"sessions", "list", "--sub", "a", "--admin", "http://127.0.0.1:1"}, 1, "call the admin listener"},
		{[]string{}, 2, "Commands:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"serve", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"serve", "--config", "testdata/valid.yaml", "--check"}, 0, "configuration OK"},
		{[]string{"serve", "--config", "testdata/many-bad.yaml", "--check"}, 1, "session.backend"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			code := run(t.Context(), tc.args, &out, &errOut, env(nil), nil)
			if code != tc.wantCode {
				t.Errorf("code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errOut.String())
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, all)
			}
		})
	}
}

// TestKeysGenerateLoads: what `keys generate` prints is a configuration the
// loader accepts, and every run draws new keys.
func TestKeysGenerateLoads(t *testing.T) {
	t.Parallel()
	gen := func() map[string]string {
		var out, errOut strings.Builder
		if code := run(t.Context(), []string{"keys", "generate", "--id", "k7"}, &out, &errOut, env(nil), nil); code != 0 {
			t.Fatalf("keys generate: %d %s", code, errOut.String())
		}
		m := map[string]string{}
		for _, line := range strings.Split(out.String(), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "ENVOY_BFF_") {
				m[k] = v
			}
		}
		return m
	}
	a, b := gen(), gen()
	if a["ENVOY_BFF_SESSION_HASH_KEY"] == b["ENVOY_BFF_SESSION_HASH_KEY"] || a["ENVOY_BFF_SESSION_ENCRYPTION_KEYS"] == b["ENVOY_BFF_SESSION_ENCRYPTION_KEYS"] {
		t.Fatal("two runs printed the same keys")
	}
	a["ENVOY_BFF_SESSION_BACKEND"] = "redis"
	a["ENVOY_BFF_SESSION_REDIS_URL"] = "redis://127.0.0.1:6379/0"
	a["ENVOY_BFF_OIDC_ISSUER"] = "https://idp.example.com"
	a["ENVOY_BFF_OIDC_CLIENT_ID"] = "app"
	a["ENVOY_BFF_OIDC_CLIENT_SECRET"] = "s3cret"
	a["ENVOY_BFF_OIDC_REDIRECT_URL"] = "https://app.example.com/bff/callback"
	c, err := loadConfig("", env(a))
	if err != nil {
		t.Fatalf("the printed keys do not load: %v", err)
	}
	if len(c.Session.EncryptionKeys) != 1 || c.Session.EncryptionKeys[0].ID != "k7" {
		t.Fatalf("keys = %+v", c.Session.EncryptionKeys)
	}
}
