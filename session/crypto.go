package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
	"sync/atomic"
)

// The sealed envelope, as stored:
//
//	[0]        envelope version (1)
//	[1:9]      generation, big-endian, in clear so Redis can compare it (Lua CAS)
//	[9]        n = length of the key ID (1..32)
//	[10:10+n]  key ID
//	then       12-byte GCM nonce, ciphertext, 16-byte tag
//
// The header [0:10+n] and the record's logical store key are the GCM
// additional data: the generation and key ID cannot be altered, and a record
// cannot be moved under another key (or from a login state to a session).
const (
	envelopeV1   = 1
	genOffset    = 1
	keyIDOffset  = 9
	fixedHeader  = 10
	nonceSize    = 12
	keySize      = 32
	hashInfoSess = "envoy-bff session id\x00"
	hashInfoTake = "envoy-bff login state\x00"
)

// KeyRing seals records at rest and derives store keys. It exists so every
// store encrypts the same way and keys rotate without logging anyone out: the
// primary (first) key seals, every key in the ring opens. Rotate swaps the
// encryption keys while the ring is in use; the hash key is fixed for the
// ring's life, because a new one would change every store key.
type KeyRing struct {
	// set is swapped whole, so a seal or open sees one consistent ring and
	// the hot path pays one atomic load, no lock and no allocation.
	set atomic.Pointer[keySet]
	// sessKey is the derived session-hash key, kept so a reload can tell
	// whether a hash key file still holds the same key.
	sessKey []byte
	// Keyed hashes: one HMAC key per use, derived from hash_key, so a
	// session ID and a login state with equal bytes never share a store key.
	sessionHashes sync.Pool // of *hasher
	stateHashes   sync.Pool // of *hasher
	// aad holds scratch buffers for GCM additional data (*[]byte), so
	// opening a record on the hot path allocates nothing for it.
	aad  sync.Pool
	rand io.Reader
}

// keySet is the encryption half of a ring: immutable once built.
type keySet struct {
	primary ringKey
	keys    []ringKey // primary first; a handful, so a scan beats a map
}

// hasher is a reusable HMAC with scratch space, so hashing an ID allocates
// only its result string.
type hasher struct {
	mac hash.Hash
	in  [IDLen]byte
	sum [sha256.Size]byte
	out [hashLen]byte
}

// hashLen is the length of a keyed hash in unpadded base64url.
const hashLen = 43

func (h *hasher) encode() string {
	return string(h.encodeBytes())
}

// encodeBytes is encode in the hasher's own scratch space, valid until the
// hasher is used again.
func (h *hasher) encodeBytes() []byte {
	base64.RawURLEncoding.Encode(h.out[:], h.mac.Sum(h.sum[:0]))
	return h.out[:]
}

type ringKey struct {
	id   string
	aead cipher.AEAD
	// sum is SHA-256 of the secret: a reload can tell that an ID now names
	// another secret without the ring keeping the secret itself.
	sum [sha256.Size]byte
}

// KeyRingOption adjusts a KeyRing at construction.
type KeyRingOption func(*KeyRing)

// WithRand sets the source of GCM nonces (crypto/rand by default), so tests
// can make sealing deterministic.
func WithRand(r io.Reader) KeyRingOption {
	return func(k *KeyRing) { k.rand = r }
}

// NewKeyRing builds the AEADs once, up front. keys[0] is the primary;
// hashKey keys the hash that turns IDs into store keys. Errors name a key by
// its ID, never its secret.
func NewKeyRing(keys KeyList, hashKey string, opts ...KeyRingOption) (*KeyRing, error) {
	set, err := newKeySet(keys)
	if err != nil {
		return nil, fmt.Errorf("build key ring: %w", err)
	}
	hk, err := decodeSecret(hashKey)
	if err != nil {
		return nil, fmt.Errorf("build key ring: hash_key: %w", err)
	}
	k := &KeyRing{rand: rand.Reader}
	k.set.Store(set)
	sessKey, stateKey := deriveKey(hk, hashInfoSess), deriveKey(hk, hashInfoTake)
	k.sessKey = sessKey
	k.sessionHashes.New = func() any { return &hasher{mac: hmac.New(sha256.New, sessKey)} }
	k.stateHashes.New = func() any { return &hasher{mac: hmac.New(sha256.New, stateKey)} }
	for _, o := range opts {
		o(k)
	}
	return k, nil
}

// newKeySet validates keys and builds one AEAD per key.
func newKeySet(keys KeyList) (*keySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("no encryption keys")
	}
	if errs := keys.validate("encryption_keys"); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set := &keySet{}
	for _, key := range keys {
		secret, _ := decodeSecret(key.Secret) // validated above
		block, err := aes.NewCipher(secret)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", key.ID, err)
		}
		set.keys = append(set.keys, ringKey{id: key.ID, aead: aead, sum: sha256.Sum256(secret)})
	}
	set.primary = set.keys[0]
	return set, nil
}

// Rotate replaces the ring's encryption keys at once: records sealed from
// then on use keys[0], and only keys in the new list open records, so a
// record sealed with a key left out reads as not found. The hash key is not
// part of a rotation. On error the ring is unchanged.
func (k *KeyRing) Rotate(keys KeyList) error {
	set, err := newKeySet(keys)
	if err != nil {
		return fmt.Errorf("rotate keys: %w", err)
	}
	k.set.Store(set)
	return nil
}

// changedSecret reports whether the ring holds a key with this id but
// another secret: every record sealed under the id would stop opening.
func (k *KeyRing) changedSecret(id, secret string) bool {
	b, err := decodeSecret(secret)
	if err != nil {
		return false // reported by validation
	}
	sum := sha256.Sum256(b)
	for _, key := range k.set.Load().keys {
		if key.id == id {
			return !hmac.Equal(key.sum[:], sum[:])
		}
	}
	return false
}

// hasHashKey reports, in constant time, whether secret is the ring's hash
// key; a reload checks a hash key file against it.
func (k *KeyRing) hasHashKey(secret string) bool {
	hk, err := decodeSecret(secret)
	return err == nil && hmac.Equal(deriveKey(hk, hashInfoSess), k.sessKey)
}

// ErrHashKeyChanged refuses a reload that changes the hash key: every
// session's store key derives from it, so all of them would be lost.
var ErrHashKeyChanged = errors.New("the hash key changed, which would end every session")

// KeyIDs lists the ring's key IDs, primary first, for logs.
func (k *KeyRing) KeyIDs() []string {
	set := k.set.Load()
	ids := make([]string, len(set.keys))
	for i, key := range set.keys {
		ids[i] = key.id
	}
	return ids
}

// PrimaryKeyID names the key new records are sealed with, for start-up logs.
func (k *KeyRing) PrimaryKeyID() string { return k.set.Load().primary.id }

// HashID is the keyed hash of a session ID, the part of its store key that
// identifies it. A copy of the store yields no usable cookie; a short prefix
// of it is safe to log.
func (k *KeyRing) HashID(id ID) string {
	var b strings.Builder
	b.Grow(hashLen)
	k.writeHashID(&b, id)
	return b.String()
}

// writeHashID writes HashID(id) to b, so a store key that contains it is
// built in one allocation.
func (k *KeyRing) writeHashID(b *strings.Builder, id ID) {
	h := k.sessionHashes.Get().(*hasher)
	defer k.sessionHashes.Put(h)
	h.in = id
	h.mac.Reset()
	h.mac.Write(h.in[:])
	b.Write(h.encodeBytes())
}

// hashLoginState is the keyed hash of a login's state parameter and the
// browser's login-transaction secret, NUL-separated (states never contain
// NUL): the store key that only the right browser's callback computes.
func (k *KeyRing) hashLoginState(state, browser string) string {
	h := k.stateHashes.Get().(*hasher)
	defer k.stateHashes.Put(h)
	h.mac.Reset()
	io.WriteString(h.mac, state)
	h.mac.Write([]byte{0})
	io.WriteString(h.mac, browser)
	return h.encode()
}

// hashName is the keyed hash of an index or one-time name, domain-separated
// from login states by its kind and a NUL (states never contain NUL).
func (k *KeyRing) hashName(kind, value string) string {
	h := k.stateHashes.Get().(*hasher)
	defer k.stateHashes.Put(h)
	h.mac.Reset()
	io.WriteString(h.mac, kind)
	h.mac.Write([]byte{0})
	io.WriteString(h.mac, value)
	return h.encode()
}

// deriveKey is HMAC-SHA256(hashKey, info): one independent key per use.
func deriveKey(hashKey []byte, info string) []byte {
	m := hmac.New(sha256.New, hashKey)
	io.WriteString(m, info)
	return m.Sum(nil)
}

// seal encrypts plaintext under the primary key, binding it to storeKey and
// carrying gen in the clear header.
func (k *KeyRing) seal(storeKey string, gen uint64, plaintext []byte) ([]byte, error) {
	key := k.set.Load().primary
	hdrLen := fixedHeader + len(key.id)
	out := make([]byte, hdrLen+nonceSize, hdrLen+nonceSize+len(plaintext)+key.aead.Overhead())
	out[0] = envelopeV1
	binary.BigEndian.PutUint64(out[genOffset:], gen)
	out[keyIDOffset] = byte(len(key.id))
	copy(out[fixedHeader:], key.id)
	nonce := out[hdrLen:]
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, fmt.Errorf("seal record: draw nonce: %w", err)
	}
	ad := k.additionalData(out[:hdrLen], storeKey)
	defer k.aad.Put(ad)
	return key.aead.Seal(out, nonce, plaintext, *ad), nil
}

// open authenticates and decrypts a sealed record stored under storeKey.
// Every failure wraps ErrUnreadable.
func (k *KeyRing) open(storeKey string, sealed []byte) (gen uint64, plaintext []byte, err error) {
	return k.openInto(false, sealed, storeKey)
}

// openOwned is open for a sealed buffer nobody else holds (a fresh Redis
// reply): it decrypts in place, saving the hot path a record-sized copy.
func (k *KeyRing) openOwned(storeKey string, sealed []byte) (gen uint64, plaintext []byte, err error) {
	return k.openInto(true, sealed, storeKey)
}

// openInto decrypts in place when inPlace is set (sealed is the caller's
// alone), else into a new buffer. The record's logical store key is the
// concatenation of storeKey's parts, so a caller that has it in pieces
// need not build it.
func (k *KeyRing) openInto(inPlace bool, sealed []byte, storeKey ...string) (gen uint64, plaintext []byte, err error) {
	if len(sealed) < fixedHeader {
		return 0, nil, fmt.Errorf("%w: %d bytes is too short", ErrUnreadable, len(sealed))
	}
	if sealed[0] != envelopeV1 {
		return 0, nil, fmt.Errorf("%w: envelope version %d", ErrUnreadable, sealed[0])
	}
	n := int(sealed[keyIDOffset])
	hdrLen := fixedHeader + n
	if len(sealed) < hdrLen+nonceSize {
		return 0, nil, fmt.Errorf("%w: truncated", ErrUnreadable)
	}
	key, ok := k.set.Load().find(sealed[fixedHeader:hdrLen])
	if !ok {
		// The ID came from storage: show it only if it is a plausible key ID.
		id := string(sealed[fixedHeader:hdrLen])
		if !validKeyID(id) {
			id = "?"
		}
		return 0, nil, fmt.Errorf("%w: sealed with key %q, which is not in the ring", ErrUnreadable, id)
	}
	nonce := sealed[hdrLen : hdrLen+nonceSize]
	ct := sealed[hdrLen+nonceSize:]
	var out []byte
	if inPlace {
		out = ct[:0] // the plaintext overwrites the ciphertext it came from
	}
	gen = binary.BigEndian.Uint64(sealed[genOffset:]) // read before the buffer changes
	ad := k.additionalData(sealed[:hdrLen], storeKey...)
	plaintext, err = key.aead.Open(out, nonce, ct, *ad)
	k.aad.Put(ad)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: key %q: %w", ErrUnreadable, key.id, err)
	}
	return gen, plaintext, nil
}

func (s *keySet) find(id []byte) (ringKey, bool) {
	for _, key := range s.keys {
		if key.id == string(id) {
			return key, true
		}
	}
	return ringKey{}, false
}

// additionalData is header || storeKey's parts, in a scratch buffer of
// the ring's own (GCM forbids additional data overlapping its output), to
// be given back with k.aad.Put once the seal or open is done.
func (k *KeyRing) additionalData(header []byte, storeKey ...string) *[]byte {
	ad, _ := k.aad.Get().(*[]byte)
	if ad == nil {
		ad = new([]byte)
	}
	*ad = append((*ad)[:0], header...)
	for _, part := range storeKey {
		*ad = append(*ad, part...)
	}
	return ad
}

// sealedKeyID reads the clear key ID of a sealed record without opening it.
func sealedKeyID(sealed []byte) (string, bool) {
	if len(sealed) < fixedHeader || sealed[0] != envelopeV1 {
		return "", false
	}
	n := int(sealed[keyIDOffset])
	if len(sealed) < fixedHeader+n {
		return "", false
	}
	id := string(sealed[fixedHeader : fixedHeader+n])
	return id, validKeyID(id)
}

// generationOf reads the clear generation of a sealed record without opening it.
func generationOf(sealed []byte) (uint64, bool) {
	if len(sealed) < fixedHeader || sealed[0] != envelopeV1 {
		return 0, false
	}
	return binary.BigEndian.Uint64(sealed[genOffset:]), true
}
