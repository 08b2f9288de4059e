package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoy-bff/envoy-bff/session"
)

// keysGenerate runs `keys generate` with args and returns its stdout.
func keysGenerate(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut strings.Builder
	if code := run(t.Context(), append([]string{"keys", "generate"}, args...), &out, &errOut, env(nil), nil); code != 0 {
		t.Fatalf("keys generate %v: %d %s", args, code, errOut.String())
	}
	return out.String()
}

// TestKeysGenerateFileForms: what `keys generate` prints for the key files
// parses as those files, and a configuration naming the files (through the
// environment, as a container sets it) loads.
func TestKeysGenerateFileForms(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	line := keysGenerate(t, "--id", "k2", "--format", "keys-file")
	hash := keysGenerate(t, "--format", "hash-key-file")
	keys, err := session.ParseKeyFile([]byte(line))
	if err != nil || len(keys) != 1 || keys[0].ID != "k2" {
		t.Fatalf("keys-file form (%d lines) parses as %v, %v", strings.Count(line, "\n"), keys, err)
	}
	if _, err := session.ParseHashKeyFile([]byte(hash)); err != nil {
		t.Fatalf("hash-key-file form: %v", err)
	}

	// The all form carries the same files' content after its last heading.
	all := keysGenerate(t, "--id", "k3")
	_, files, ok := strings.Cut(all, "# key files (")
	if ok {
		_, files, ok = strings.Cut(files, "\n") // the rest of the heading
	}
	if !ok {
		t.Fatalf("no key file form in:\n%s", all)
	}
	parts := strings.SplitN(files, "# hash key file:", 2)
	if k, err := session.ParseKeyFile([]byte(parts[0])); err != nil || len(k) != 1 || k[0].ID != "k3" {
		t.Errorf("the all form's keys file parses as %v, %v", k, err)
	}
	if _, err := session.ParseHashKeyFile([]byte(parts[1])); err != nil {
		t.Errorf("the all form's hash key file: %v", err)
	}

	keysPath, hashPath := filepath.Join(dir, "encryption_keys"), filepath.Join(dir, "hash_key")
	if err := os.WriteFile(keysPath, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hashPath, []byte(hash), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{
		"ENVOY_BFF_SESSION_BACKEND":              "redis",
		"ENVOY_BFF_SESSION_REDIS_URL":            "redis://127.0.0.1:6379/0",
		"ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": keysPath,
		"ENVOY_BFF_SESSION_HASH_KEY_FILE":        hashPath,
		"ENVOY_BFF_OIDC_ISSUER":                  "https://idp.example.com",
		"ENVOY_BFF_OIDC_CLIENT_ID":               "app",
		"ENVOY_BFF_OIDC_CLIENT_SECRET":           "s3cret",
		"ENVOY_BFF_OIDC_REDIRECT_URL":            "https://app.example.com/bff/callback",
	}
	c, err := loadConfig("", env(base))
	if err != nil {
		t.Fatalf("key files named in the environment do not load: %v", err)
	}
	if c.Session.EncryptionKeysFile != keysPath || c.Session.HashKeyFile != hashPath {
		t.Errorf("session = %+v", c.Session)
	}
}

// TestLoadConfigKeyFiles: inline keys and key files exclude each other
// whichever source sets them, and a bad file is named by its field with
// the line at fault, never with its content.
func TestLoadConfigKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(good, []byte("k9:c3VpdGUtaGFzaC1rZXktMzItYnl0ZXMtbG9uZy4uLi4=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("# rotated\nk9:"+secret[:20]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // "" loads
	}{
		{name: "file_from_env_clears_inline", env: map[string]string{
			"ENVOY_BFF_SESSION_ENCRYPTION_KEYS": "", "ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": good}},
		{name: "file_from_env_and_inline_from_config", env: map[string]string{"ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": good},
			wantErr: "session.encryption_keys_file: set either encryption_keys or encryption_keys_file, not both"},
		{name: "bad_file", env: map[string]string{"ENVOY_BFF_SESSION_ENCRYPTION_KEYS": "", "ENVOY_BFF_SESSION_ENCRYPTION_KEYS_FILE": bad},
			wantErr: "session.encryption_keys_file: line 2: secret must be 32 bytes of base64"},
		{name: "missing_hash_file", env: map[string]string{"ENVOY_BFF_SESSION_HASH_KEY": "", "ENVOY_BFF_SESSION_HASH_KEY_FILE": filepath.Join(dir, "none")},
			wantErr: "session.hash_key_file: open " + filepath.Join(dir, "none")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig("testdata/valid.yaml", env(tc.env))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("loadConfig: %v", err)
				}
				if c.Session.EncryptionKeysFile != good || len(c.Session.EncryptionKeys) != 0 {
					t.Errorf("session keys = %v from %q", c.Session.EncryptionKeys, c.Session.EncryptionKeysFile)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("loadConfig = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), secret[:20]) || strings.Contains(err.Error(), "c3VpdGUt") {
				t.Errorf("error repeats key material: %v", err)
			}
		})
	}
}
