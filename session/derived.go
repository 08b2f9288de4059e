package session

import (
	"fmt"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Derived tokens are the access tokens a session's token profiles obtain
// for one API each (token exchange, refresh with resource/scope): cached
// per session and profile, sealed with the session key ring under a
// logical key naming frontend, session and profile, and deleted with the
// session by every delete path.

// ValidTokenProfile reports whether name may name a token profile: 1-64
// characters of a-z, 0-9, _ and - (the rule of client token names), so it
// is safe as a Redis hash field, inside a lock key and in additional data.
func ValidTokenProfile(name string) bool { return ValidClientTokenName(name) }

// errBadProfile refuses a profile name; it quotes at most 80 bytes of it.
func errBadProfile(profile string) error {
	return fmt.Errorf("token profile %.80q: must be 1-%d characters of a-z, 0-9, _ and -", profile, maxClientTokenName)
}

// prepareDerived seals t as the derived token of profile of the session
// whose hash is hash, in keyspace ks, and returns how long it may be kept:
// until it expires (0: already expired, do not store).
func prepareDerived(ring *KeyRing, ks keyspace, hash, profile string, t *sessionpb.ClientToken, now time.Time) ([]byte, time.Duration, error) {
	const op = "put derived token"
	switch {
	case !ValidTokenProfile(profile):
		return nil, 0, fmt.Errorf("%s: %w", op, errBadProfile(profile))
	case t == nil:
		return nil, 0, fmt.Errorf("%s: %w", op, errNilRecord)
	}
	return prepareToken(op, ring, ks.derivedToken(hash, profile), t, now)
}

// openDerived opens a sealed derived token; failures wrap ErrUnreadable.
// owned says nobody else holds sealed (a fresh Redis reply), so it is
// decrypted in place.
func openDerived(ring *KeyRing, ks keyspace, hash, profile string, sealed []byte, owned bool) (*sessionpb.ClientToken, error) {
	key := ks.derivedToken(hash, profile)
	var b []byte
	var err error
	if owned {
		_, b, err = ring.openOwned(key, sealed)
	} else {
		_, b, err = ring.open(key, sealed)
	}
	return decodeToken("derived token", b, err)
}

// tokenLive reports whether t has not expired at now.
func tokenLive(t *sessionpb.ClientToken, now time.Time) bool {
	return now.UnixMilli() < t.GetExpiresAtUnixMs()
}
