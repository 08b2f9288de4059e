package session

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testSecret3 is a third valid key, and shortSecret 16 bytes: the wrong size.
const (
	testSecret3 = "dGhpcmQta2V5LXRoaXJkLWtleS10aGlyZC1rZXktMy4="
	shortSecret = "MDEyMzQ1Njc4OTAxMjM0NQ=="
)

// noSecretIn fails if s repeats any secret the tests use.
func noSecretIn(t *testing.T, s string) {
	t.Helper()
	for _, secret := range []string{testSecret1, testSecret2, testSecret3, testHashKey, shortSecret, "bm90LWEta2V5"} {
		if strings.Contains(s, secret) {
			t.Errorf("output repeats a secret: %s", s)
		}
	}
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    KeyList
		wantErr []string // every one must appear
	}{
		{name: "one", in: "k1:" + testSecret1 + "\n", want: KeyList{{ID: "k1", Secret: testSecret1}}},
		{name: "no_final_newline", in: "k1:" + testSecret1, want: KeyList{{ID: "k1", Secret: testSecret1}}},
		{name: "primary_first_with_comments", in: "# rotated 2026-12-01\n\nk2:" + testSecret2 + "   # new primary\n  k1 : " + testSecret1 + "  \n# end\n",
			want: KeyList{{ID: "k2", Secret: testSecret2}, {ID: "k1", Secret: testSecret1}}},
		{name: "crlf", in: "k2:" + testSecret2 + "\r\nk1:" + testSecret1 + "\r\n",
			want: KeyList{{ID: "k2", Secret: testSecret2}, {ID: "k1", Secret: testSecret1}}},
		{name: "url_safe_unpadded", in: "k1:" + strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(testSecret3), "=") + "\n",
			want: KeyList{{ID: "k1", Secret: strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(testSecret3), "=")}}},
		{name: "empty", in: "", wantErr: []string{"holds no key"}},
		{name: "only_comments", in: "# nothing yet\n\n", wantErr: []string{"holds no key"}},
		{name: "no_colon", in: "k1:" + testSecret1 + "\n" + testSecret2 + "\n", wantErr: []string{"line 2: want id:secret"}},
		{name: "empty_id", in: ":" + testSecret1, wantErr: []string{"line 1: want id:secret"}},
		{name: "empty_secret", in: "k1:", wantErr: []string{"line 1: want id:secret"}},
		{name: "bad_id", in: "k 1:" + testSecret1, wantErr: []string{"line 1: id must be"}},
		{name: "long_id", in: strings.Repeat("k", 33) + ":" + testSecret1, wantErr: []string{"line 1: id must be"}},
		{name: "duplicate_id", in: "k1:" + testSecret1 + "\n\nk1:" + testSecret2, wantErr: []string{`line 3: id "k1" is already on line 1`}},
		{name: "wrong_size", in: "k1:" + shortSecret, wantErr: []string{"line 1: secret must be 32 bytes of base64"}},
		{name: "not_base64", in: "k1:bm90LWEta2V5!!", wantErr: []string{"line 1: secret must be 32 bytes of base64"}},
		{name: "yaml_pasted", in: "encryption_keys:\n  - { id: k1, secret: " + testSecret1 + " }\n",
			wantErr: []string{"line 1: want id:secret", "line 2: id must be"}},
		{name: "every_bad_line", in: "k1:" + shortSecret + "\nk2:" + testSecret2 + "\nk3\n", wantErr: []string{"line 1:", "line 3:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseKeyFile([]byte(tc.in))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseKeyFile = %v, want an error", got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				noSecretIn(t, err.Error())
				return
			}
			if err != nil {
				t.Fatalf("ParseKeyFile: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ParseKeyFile = %v, want %v", got, tc.want)
			}
			if _, err := NewKeyRing(got, testHashKey); err != nil {
				t.Errorf("a parsed file does not build a ring: %v", err)
			}
		})
	}
}

func TestParseHashKeyFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "bare", in: testHashKey, want: testHashKey},
		{name: "newline_and_comment", in: "# set once per deployment\n" + testHashKey + "\n", want: testHashKey},
		{name: "crlf_spaces", in: "  " + testHashKey + " \r\n", want: testHashKey},
		{name: "empty", in: "\n", wantErr: "holds no key"},
		{name: "two_lines", in: testHashKey + "\n" + testSecret1 + "\n", wantErr: "line 2: want the hash key alone"},
		{name: "id_secret_form", in: "h:" + testHashKey, wantErr: "must hold 32 bytes of base64"},
		{name: "wrong_size", in: shortSecret, wantErr: "must hold 32 bytes of base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHashKeyFile([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseHashKeyFile = %v, want an error containing %q", err, tc.wantErr)
				}
				noSecretIn(t, err.Error())
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseHashKeyFile = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// writeKeyFile writes content to dir/name with mode perm and returns its path.
func writeKeyFile(t *testing.T, dir, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // WriteFile's mode is masked by the umask
		t.Fatal(err)
	}
	return p
}

// TestConfigKeyFiles: the file fields go through Validate like the inline
// ones, each error naming its field and never a secret.
func TestConfigKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeKeyFile(t, dir, "keys", "k2:"+testSecret2+"\nk1:"+testSecret1+"\n", 0o600)
	hash := writeKeyFile(t, dir, "hash", testHashKey+"\n", 0o600)
	bad := writeKeyFile(t, dir, "bad", "k1:"+testSecret1+"\nk2:"+shortSecret+"\n", 0o600)
	sameAsHash := writeKeyFile(t, dir, "same", "k1:"+testHashKey+"\n", 0o600)
	badHash := writeKeyFile(t, dir, "badhash", shortSecret+"\n", 0o600)
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // nil: valid
	}{
		{name: "files", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = good, hash }},
		{name: "keys_file_inline_hash", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKey = good, testHashKey }},
		{name: "inline_keys_hash_file", mutate: func(c *Config) {
			c.EncryptionKeys, c.HashKeyFile = KeyList{{ID: "k1", Secret: testSecret1}}, hash
		}},
		{name: "both_keys", mutate: func(c *Config) {
			c.EncryptionKeys, c.EncryptionKeysFile, c.HashKey = KeyList{{ID: "k1", Secret: testSecret1}}, good, testHashKey
		}, want: []string{"encryption_keys_file: set either encryption_keys or encryption_keys_file, not both"}},
		{name: "both_hash", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKey, c.HashKeyFile = good, testHashKey, hash },
			want: []string{"hash_key_file: set either hash_key or hash_key_file, not both"}},
		{name: "missing_file", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = filepath.Join(dir, "nope"), hash },
			want: []string{"encryption_keys_file: open " + filepath.Join(dir, "nope")}},
		{name: "directory", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = dir, hash },
			want: []string{"encryption_keys_file: " + dir + " is not a regular file"}},
		{name: "bad_line", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = bad, hash },
			want: []string{"encryption_keys_file: line 2: secret must be 32 bytes of base64"}},
		{name: "bad_hash_file", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = good, badHash },
			want: []string{"hash_key_file: must hold 32 bytes of base64"}},
		{name: "hash_equals_key", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile = sameAsHash, hash },
			want: []string{"hash_key_file: must differ from the key on line 1 of encryption_keys_file"}},
		{name: "redis_requires_some_keys", mutate: func(c *Config) {},
			want: []string{"encryption_keys: required when backend is redis", "hash_key: required when backend is redis"}},
		{name: "poll_off", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile, c.KeyFilesPollInterval = good, hash, 0 }},
		{name: "poll_too_fast", mutate: func(c *Config) { c.EncryptionKeysFile, c.HashKeyFile, c.KeyFilesPollInterval = good, hash, 1 },
			want: []string{"key_files_poll_interval: must be 0 (SIGHUP only) or at least 100ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := DefaultConfig()
			c.Backend, c.Redis.URL = BackendRedis, "redis://127.0.0.1:6379/0"
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
			if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != len(tc.want) {
				t.Errorf("%d errors, want %d: %v", n, len(tc.want), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v\nwant it to contain %q", err, w)
				}
			}
			noSecretIn(t, err.Error())
		})
	}
}

// TestOpenBackendKeyFiles: a store opened from key files seals with the
// file's first key and opens with every key in it.
func TestOpenBackendKeyFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := DefaultConfig()
	c.EncryptionKeysFile = writeKeyFile(t, dir, "keys", "k2:"+testSecret2+"\nk1:"+testSecret1+"\n", 0o600)
	c.HashKeyFile = writeKeyFile(t, dir, "hash", testHashKey, 0o600)
	b, err := OpenBackend(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.KeyRing().KeyIDs(); !slices.Equal(got, []string{"k2", "k1"}) {
		t.Errorf("key ids = %v, want [k2 k1]", got)
	}
	if !b.KeyRing().hasHashKey(testHashKey) {
		t.Error("the ring does not use the hash key file's key")
	}
}
