package session

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	testSecret1 = "MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTIzNDU2Nzg5MDE="
	testSecret2 = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY="
	testHashKey = "c3VpdGUtaGFzaC1rZXktMzItYnl0ZXMtbG9uZy4uLi4="
)

func testRing(t testing.TB, keys ...Key) *KeyRing {
	t.Helper()
	if len(keys) == 0 {
		keys = []Key{{ID: "k1", Secret: testSecret1}}
	}
	r, err := NewKeyRing(keys, testHashKey)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewKeyRingErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		keys    KeyList
		hashKey string
		want    string
	}{
		{name: "no_keys", hashKey: testHashKey, want: "no encryption keys"},
		{name: "short_secret", keys: KeyList{{ID: "k1", Secret: "c2hvcnQ="}}, hashKey: testHashKey, want: "encryption_keys[0].secret"},
		{name: "duplicate_id", keys: KeyList{{ID: "k1", Secret: testSecret1}, {ID: "k1", Secret: testSecret2}}, hashKey: testHashKey, want: "duplicate"},
		{name: "bad_id", keys: KeyList{{ID: "k:1", Secret: testSecret1}}, hashKey: testHashKey, want: "encryption_keys[0].id"},
		{name: "bad_hash_key", keys: KeyList{{ID: "k1", Secret: testSecret1}}, hashKey: "c2hvcnQ=", want: "hash_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewKeyRing(tc.keys, tc.hashKey)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewKeyRing = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "c2hvcnQ=") || strings.Contains(err.Error(), testSecret1) {
				t.Errorf("error echoes a secret: %v", err)
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	t.Parallel()
	k1, k2 := Key{ID: "k1", Secret: testSecret1}, Key{ID: "k2", Secret: testSecret2}
	old, rotated, onlyNew := testRing(t, k1), testRing(t, k2, k1), testRing(t, k2)
	plain := []byte("the access token")
	sealedOld, err := old.seal("s:abc", 7, plain)
	if err != nil {
		t.Fatal(err)
	}
	sealedNew, err := rotated.seal("s:abc", 8, plain)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name     string
		ring     *KeyRing
		storeKey string
		sealed   []byte
		wantGen  uint64
		wantErr  string // empty: opens
	}{
		{name: "same_ring", ring: old, storeKey: "s:abc", sealed: sealedOld, wantGen: 7},
		{name: "old_key_still_opens", ring: rotated, storeKey: "s:abc", sealed: sealedOld, wantGen: 7},
		{name: "new_primary_seals", ring: onlyNew, storeKey: "s:abc", sealed: sealedNew, wantGen: 8},
		{name: "removed_key", ring: onlyNew, storeKey: "s:abc", sealed: sealedOld, wantErr: `key "k1", which is not in the ring`},
		{name: "other_store_key", ring: old, storeKey: "s:abd", sealed: sealedOld, wantErr: "message authentication failed"},
		{name: "other_kind", ring: old, storeKey: "l:abc", sealed: sealedOld, wantErr: "message authentication failed"},
		{name: "generation_edited", ring: old, storeKey: "s:abc", sealed: flip(sealedOld, 8), wantErr: "message authentication failed"},
		{name: "key_id_edited", ring: old, storeKey: "s:abc", sealed: flip(sealedOld, fixedHeader), wantErr: "not in the ring"},
		{name: "nonce_edited", ring: old, storeKey: "s:abc", sealed: flip(sealedOld, fixedHeader+3), wantErr: "message authentication failed"},
		{name: "tag_edited", ring: old, storeKey: "s:abc", sealed: flip(sealedOld, len(sealedOld)-1), wantErr: "message authentication failed"},
		{name: "version", ring: old, storeKey: "s:abc", sealed: flip(sealedOld, 0), wantErr: "envelope version 0"},
		{name: "truncated", ring: old, storeKey: "s:abc", sealed: sealedOld[:fixedHeader+2], wantErr: "truncated"},
		{name: "empty", ring: old, storeKey: "s:abc", sealed: nil, wantErr: "too short"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gen, got, err := tc.ring.open(tc.storeKey, tc.sealed)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrUnreadable) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("open = %v, want ErrUnreadable mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if gen != tc.wantGen || !bytes.Equal(got, plain) {
				t.Errorf("open = %d %q", gen, got)
			}
			if g, ok := generationOf(tc.sealed); !ok || g != tc.wantGen {
				t.Errorf("generationOf = %d %v", g, ok)
			}
		})
	}
	if bytes.Contains(sealedOld, plain) {
		t.Error("sealed bytes hold the plaintext")
	}
	if id := sealedNew[fixedHeader : fixedHeader+2]; string(id) != "k2" {
		t.Errorf("rotated ring sealed with %q, want the primary k2", id)
	}
}

func TestSealRandomness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		rand     func() *bytes.Reader
		wantSame bool
	}{
		{name: "injected_fixed_nonce_is_deterministic", rand: func() *bytes.Reader { return bytes.NewReader(make([]byte, nonceSize)) }, wantSame: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r1, err := NewKeyRing(KeyList{{ID: "k1", Secret: testSecret1}}, testHashKey, WithRand(tc.rand()))
			if err != nil {
				t.Fatal(err)
			}
			r2, _ := NewKeyRing(KeyList{{ID: "k1", Secret: testSecret1}}, testHashKey, WithRand(tc.rand()))
			a, _ := r1.seal("s:x", 1, []byte("p"))
			b, _ := r2.seal("s:x", 1, []byte("p"))
			if bytes.Equal(a, b) != tc.wantSame {
				t.Errorf("equal = %v, want %v", !tc.wantSame, tc.wantSame)
			}
		})
	}
	t.Run("default_nonces_differ", func(t *testing.T) {
		t.Parallel()
		r := testRing(t)
		a, _ := r.seal("s:x", 1, []byte("p"))
		b, _ := r.seal("s:x", 1, []byte("p"))
		if bytes.Equal(a, b) {
			t.Error("two seals are identical: nonce reused")
		}
	})
	t.Run("failing_rand_is_an_error", func(t *testing.T) {
		t.Parallel()
		r, _ := NewKeyRing(KeyList{{ID: "k1", Secret: testSecret1}}, testHashKey, WithRand(iotest.ErrReader(errors.New("no entropy"))))
		if _, err := r.seal("s:x", 1, []byte("p")); err == nil || !strings.Contains(err.Error(), "no entropy") {
			t.Fatalf("seal = %v", err)
		}
	})
}

func TestHashID(t *testing.T) {
	t.Parallel()
	id, _ := NewID(bytes.NewReader(bytes.Repeat([]byte{1}, IDLen)))
	other, _ := NewID(bytes.NewReader(bytes.Repeat([]byte{2}, IDLen)))
	r := testRing(t)
	otherHashKey, _ := NewKeyRing(KeyList{{ID: "k1", Secret: testSecret1}}, testSecret2)
	h := r.HashID(id)
	tests := []struct {
		name string
		got  string
		same bool
	}{
		{name: "deterministic", got: r.HashID(id), same: true},
		{name: "keys_rotate_hash_does_not", got: testRing(t, Key{ID: "k9", Secret: testSecret2}).HashID(id), same: true},
		{name: "other_id", got: r.HashID(other)},
		{name: "other_hash_key", got: otherHashKey.HashID(id)},
		{name: "login_state_domain", got: r.hashLoginState(string(id[:]), "")},
		{name: "not_the_cookie", got: id.String()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if (tc.got == h) != tc.same {
				t.Errorf("%q vs %q: same = %v, want %v", tc.got, h, !tc.same, tc.same)
			}
		})
	}
	if len(h) != 43 || strings.ContainsAny(h, "{}:") {
		t.Errorf("hash %q: want 43 base64url characters", h)
	}
}

func FuzzOpen(f *testing.F) {
	r := testRing(f)
	good, err := r.seal("s:k", 3, []byte("record"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 255})
	f.Fuzz(func(t *testing.T, sealed []byte) {
		gen, plain, err := r.open("s:k", sealed)
		if err != nil {
			if !errors.Is(err, ErrUnreadable) {
				t.Fatalf("open error %v does not wrap ErrUnreadable", err)
			}
			return
		}
		if gen != 3 || string(plain) != "record" {
			t.Fatalf("forged record opened: gen %d %q", gen, plain)
		}
	})
}

func BenchmarkHashID(b *testing.B) {
	r := testRing(b)
	var id ID
	b.ReportAllocs()
	for b.Loop() {
		_ = r.HashID(id)
	}
}

func BenchmarkSealOpen(b *testing.B) {
	r := testRing(b)
	plain := bytes.Repeat([]byte("x"), 2048)
	b.ReportAllocs()
	for b.Loop() {
		s, err := r.seal("s:k", 1, plain)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := r.open("s:k", s); err != nil {
			b.Fatal(err)
		}
	}
}
