package session

import (
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Ref names a stored session without its cookie value: the keyed hash of
// the session ID. Back-channel logout and administration find sessions by
// user or provider session and act on them by Ref; a Ref cannot be turned
// back into a cookie.
type Ref string

// refOf is the ref of the session id under ring.
func refOf(ring *KeyRing, id ID) Ref { return Ref(ring.HashID(id)) }

// Index kinds: every session is indexed by its user (issuer + subject) and,
// when it has one, by its provider session (issuer + sid).
const (
	indexUser = "u"
	indexSID  = "sid"
)

// indexName is an index's logical name: its kind and the keyed hash of what
// it indexes, so a copy of the store names no user.
func indexName(ring *KeyRing, kind, issuer, value string) string {
	return kind + ":" + ring.hashName(kind, issuer+"\x00"+value)
}

// indexesOf are the indexes a session belongs to.
func indexesOf(ring *KeyRing, s *sessionpb.Session) []string {
	idx := []string{indexName(ring, indexUser, s.GetIssuer(), s.GetSubject())}
	if s.GetSid() != "" {
		idx = append(idx, indexName(ring, indexSID, s.GetIssuer(), s.GetSid()))
	}
	return idx
}

// queryIndex is the index FindSessions reads: the sid's when given, else the user's.
func queryIndex(ring *KeyRing, issuer, subject, sid string) string {
	if sid != "" {
		return indexName(ring, indexSID, issuer, sid)
	}
	return indexName(ring, indexUser, issuer, subject)
}

// maxOnceKey bounds the names UseOnce accepts (logout-token jti values).
const maxOnceKey = 1024

// onceName is the logical name of a one-time marker, without its keyspace.
func onceName(ring *KeyRing, key string) string { return "o:" + ring.hashName("once", key) }

// absExpiry is a session's absolute expiry, the score of its index entries.
func absExpiry(s *sessionpb.Session) time.Time { return time.UnixMilli(s.GetAbsoluteExpiresAtUnixMs()) }
