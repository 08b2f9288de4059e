// Package session owns the server-side session: the record's storage (Redis or
// memory), its encryption at rest, session IDs and the session cookie.
//
// The browser holds only a random 32-byte ID. The store key is a keyed hash of
// that ID, and the record is sealed with AES-256-GCM under a key ring, so a copy
// of Redis yields neither a usable cookie nor a token.
package session
