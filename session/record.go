package session

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// schemaVersion is the Session and LoginState shape this code reads and writes.
const schemaVersion = 1

// errPastLifetime is returned by Create for a record already past its
// absolute lifetime; storing it would only make a session that cannot be used.
var errPastLifetime = errors.New("record is past its absolute lifetime")

// errNilRecord rejects a nil record instead of panicking inside a store.
var errNilRecord = errors.New("nil record")

// The logical store keys (keyspace's methods) are bound into every sealed
// record as additional data. They do not include the Redis prefix, so
// records survive a prefix rename; they do include the frontend's keyspace,
// so a record never opens in another frontend.

// prepareSession fills what a new record may leave out: schema version,
// creation time, and absolute expiry (creation + the configured lifetime).
func prepareSession(s *sessionpb.Session, lifetime time.Duration, now time.Time) {
	if s.SchemaVersion == 0 {
		s.SchemaVersion = schemaVersion
	}
	if s.CreatedAtUnixMs == 0 {
		s.CreatedAtUnixMs = now.UnixMilli()
	}
	if s.AbsoluteExpiresAtUnixMs == 0 {
		s.AbsoluteExpiresAtUnixMs = time.UnixMilli(s.CreatedAtUnixMs).Add(lifetime).UnixMilli()
	}
}

// sessionTTL is how long a record written or read at now may live in the
// store: the idle timeout, cut short by the absolute lifetime. ok is false
// once the absolute lifetime has passed.
func sessionTTL(s *sessionpb.Session, idle time.Duration, now time.Time) (ttl time.Duration, ok bool) {
	left := time.UnixMilli(s.GetAbsoluteExpiresAtUnixMs()).Sub(now)
	if s.GetAbsoluteExpiresAtUnixMs() == 0 || left < time.Millisecond {
		return 0, false
	}
	return min(idle, left), true
}

// sealSession stamps s with gen and seals it under the session's logical
// store key. On error s keeps its old generation.
func sealSession(ring *KeyRing, key string, s *sessionpb.Session, gen uint64) ([]byte, error) {
	old := s.Generation
	s.Generation = gen
	b, err := proto.Marshal(s)
	if err == nil {
		var sealed []byte
		if sealed, err = ring.seal(key, gen, b); err == nil {
			return sealed, nil
		}
	}
	s.Generation = old
	return nil, fmt.Errorf("seal session: %w", err)
}

// openSession opens a sealed record; its generation is the authenticated one
// from the header. Every failure wraps ErrUnreadable.
func openSession(ring *KeyRing, key string, sealed []byte) (*sessionpb.Session, error) {
	return decodeSession(ring.open(key, sealed))
}

// openOwnedSession is openSession for a buffer only the caller holds; it
// decrypts in place.
func openOwnedSession(ring *KeyRing, key string, sealed []byte) (*sessionpb.Session, error) {
	return decodeSession(ring.openOwned(key, sealed))
}

// decodeSession parses an opened record.
func decodeSession(gen uint64, b []byte, err error) (*sessionpb.Session, error) {
	return decodeSessionInto(&sessionpb.Session{}, gen, b, err)
}

// decodeSessionInto is decodeSession into s, a new message the caller
// allocated along with something else.
func decodeSessionInto(s *sessionpb.Session, gen uint64, b []byte, err error) (*sessionpb.Session, error) {
	if err != nil {
		return nil, err
	}
	if err := unmarshalSession(s, b); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if s.SchemaVersion != schemaVersion {
		return nil, fmt.Errorf("%w: session schema version %d", ErrUnreadable, s.SchemaVersion)
	}
	s.Generation = gen
	return s, nil
}

func sealLoginState(ring *KeyRing, key string, ls *sessionpb.LoginState) ([]byte, error) {
	if ls == nil {
		return nil, errNilRecord
	}
	if ls.SchemaVersion == 0 {
		ls.SchemaVersion = schemaVersion
	}
	b, err := proto.Marshal(ls)
	if err == nil {
		var sealed []byte
		if sealed, err = ring.seal(key, 0, b); err == nil {
			return sealed, nil
		}
	}
	return nil, fmt.Errorf("seal login state: %w", err)
}

func openLoginState(ring *KeyRing, key string, sealed []byte) (*sessionpb.LoginState, error) {
	_, b, err := ring.open(key, sealed)
	if err != nil {
		return nil, err
	}
	ls := &sessionpb.LoginState{}
	if err := proto.Unmarshal(b, ls); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if ls.SchemaVersion != schemaVersion {
		return nil, fmt.Errorf("%w: login state schema version %d", ErrUnreadable, ls.SchemaVersion)
	}
	return ls, nil
}

// notFound wraps an unreadable-record error so it also reads as ErrNotFound:
// a record no key in the ring opens will never open, so the session is over.
func notFound(op string, err error) error {
	return fmt.Errorf("%s: %w: %w", op, ErrNotFound, err)
}

// maxStateLen bounds a login state's length; longer ones are never stored.
const maxStateLen = 2048

func validState(state string) bool { return state != "" && len(state) <= maxStateLen }

// validLoginKey reports whether state and browser can name a pending login:
// both present, neither over maxStateLen, and no NUL in state (the hash's
// separator).
func validLoginKey(state, browser string) bool {
	return validState(state) && validState(browser) && strings.IndexByte(state, 0) < 0
}

// sealedNew is a new session ready to write: both stores' Create share it so
// the lifetime rules and the sealing cannot drift apart.
type sealedNew struct {
	hash   string
	sealed []byte
	ttl    time.Duration
}

// prepareCreate fills s's lifetimes, refuses a record already past them, and
// seals it as generation 1 under the keyed hash of id in keyspace ks.
func prepareCreate(ring *KeyRing, ks keyspace, cfg Config, id ID, s *sessionpb.Session, now time.Time) (sealedNew, error) {
	if s == nil {
		return sealedNew{}, errNilRecord
	}
	prepareSession(s, cfg.AbsoluteLifetime, now)
	ttl, ok := sessionTTL(s, cfg.IdleTimeout, now)
	if !ok {
		return sealedNew{}, errPastLifetime
	}
	hash := ring.HashID(id)
	sealed, err := sealSession(ring, ks.session(hash), s, 1)
	if err != nil {
		return sealedNew{}, err
	}
	return sealedNew{hash: hash, sealed: sealed, ttl: ttl}, nil
}

// prepareClientToken seals t under its name in keyspace ks and returns how
// long it may be kept: until its access token expires. A ttl of 0 means
// "already expired: do not store".
func prepareClientToken(ring *KeyRing, ks keyspace, name string, t *sessionpb.ClientToken, now time.Time) ([]byte, time.Duration, error) {
	const op = "put client token"
	switch {
	case !ValidClientTokenName(name):
		return nil, 0, fmt.Errorf("%s: invalid name %q", op, name)
	case t == nil:
		return nil, 0, fmt.Errorf("%s: %w", op, errNilRecord)
	}
	return prepareToken(op, ring, ks.clientToken(name), t, now)
}

// prepareToken seals t under the logical key and returns how long it may
// be kept: until its access token expires (0: already expired, do not store).
func prepareToken(op string, ring *KeyRing, key string, t *sessionpb.ClientToken, now time.Time) ([]byte, time.Duration, error) {
	ttl := time.UnixMilli(t.GetExpiresAtUnixMs()).Sub(now)
	if ttl < time.Millisecond {
		return nil, 0, nil
	}
	if t.SchemaVersion == 0 {
		t.SchemaVersion = schemaVersion
	}
	b, err := proto.Marshal(t)
	if err == nil {
		var sealed []byte
		if sealed, err = ring.seal(key, 0, b); err == nil {
			return sealed, ttl, nil
		}
	}
	return nil, 0, fmt.Errorf("%s: seal: %w", op, err)
}

// openClientToken opens a sealed client token; failures wrap ErrUnreadable.
func openClientToken(ring *KeyRing, ks keyspace, name string, sealed []byte) (*sessionpb.ClientToken, error) {
	_, b, err := ring.open(ks.clientToken(name), sealed)
	return decodeToken("client token", b, err)
}

// decodeToken parses an opened token of kind ("client token", "derived token").
func decodeToken(kind string, b []byte, err error) (*sessionpb.ClientToken, error) {
	if err != nil {
		return nil, err
	}
	t := &sessionpb.ClientToken{}
	if err := proto.Unmarshal(b, t); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if t.SchemaVersion != schemaVersion {
		return nil, fmt.Errorf("%w: %s schema version %d", ErrUnreadable, kind, t.SchemaVersion)
	}
	return t, nil
}

// idleEnd is when a record whose store entry expires at expires ends: its
// idle expiry, or its absolute expiry when that comes first (a Redis TTL
// renewed by GETEX may reach past the absolute expiry).
func idleEnd(s *sessionpb.Session, expires time.Time) time.Time {
	if abs := time.UnixMilli(s.GetAbsoluteExpiresAtUnixMs()); abs.Before(expires) {
		return abs
	}
	return expires
}
