// Package session owns the server-side session: the record's storage (Redis or
// memory), its encryption at rest, session IDs and the session cookie.
//
// The browser holds only a random 32-byte ID. The store key is a keyed hash of
// that ID, and the record is sealed with AES-256-GCM under a key ring, so a copy
// of Redis yields neither a usable cookie nor a token.
//
// A sealed record carries its key ID and its generation in a small clear
// header; both, and the record's store key, are authenticated, so a record
// cannot be edited or moved under another session. The generation in clear
// lets Redis run Update's compare-and-set without holding a key.
//
// Key rotation: add the new key second on every replica, then make it first
// (the primary seals, every key opens), and remove the old key only after
// the absolute lifetime has passed. With the keys in files
// (Config.EncryptionKeysFile) a KeyReloader swaps the ring's keys in place on
// SIGHUP or when the file changes, so no step needs a restart; a file that
// would not give a valid ring, or that changes the hash key (every store key
// derives from it), is refused and the ring kept.
//
// A record whose key has left the ring, or that fails authentication, reads
// as ErrNotFound wrapping ErrUnreadable: it can never be opened again, so
// that session is over (and the log says why). It is not deleted on read, in
// case a replica with a newer ring can open it; its TTL removes it.
//
// Frontends: one store serves many apps. Backend.Frontend gives each its
// view, in which every key, channel and entry is the frontend's own
// (<key_prefix><name>: before the single-frontend forms), and every
// record's additional data carries the frontend too, so a record moved
// into another frontend's keys does not open. The view DefaultFrontend uses
// the single-frontend keys unchanged, so an upgraded deployment keeps its
// sessions.
//
// Derived tokens: a token profile's token for one API (token exchange,
// refresh with resource/scope) is cached per session and profile
// (PutDerivedToken, GetDerivedToken, GetWithDerived; in Redis one hash
// <prefix>{<hash>}:t per session, in the session's slot), sealed with the
// session key ring under a logical key naming frontend, session and
// profile, stored only next to a live session, and deleted in the same
// atomic step as the session; its renewal lock is DerivedTokenLock. A
// session that times out leaves them, never served, until they expire.
//
// Errors: only ErrNotFound proves a session gone. Every other store failure
// (refused connection, timeout, READONLY, LOADING, OOM, a cancelled context)
// wraps ErrUnavailable and must not end a session.
package session
