package session

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// Sentinel errors. Only ErrNotFound proves a session is gone; every other
// store error means "unknown right now" and must never end a session.
var (
	// ErrNotFound means no live session (or login state) exists under the ID.
	ErrNotFound = errors.New("session not found")
	// ErrUnavailable wraps every store failure that is not ErrNotFound.
	ErrUnavailable = errors.New("session store unavailable")
	// ErrNotWritten comes with ErrUnavailable when the store refused a write
	// outright (a Redis error reply such as OOM or READONLY): the write
	// certainly did not land. After a timeout it may have, and this is absent.
	ErrNotWritten = errors.New("store refused the write")
	// ErrConflict means an Update lost a race: the record's generation changed.
	ErrConflict = errors.New("session changed concurrently")
	// ErrMalformedID means a cookie value is not a well-formed session ID.
	ErrMalformedID = errors.New("malformed session id")
	// ErrNoCookie means the request carries no session cookie: anonymous, and no store lookup is needed.
	ErrNoCookie = errors.New("no session cookie")
	// ErrDuplicateCookie means the session cookie appears more than once; picking one would let an
	// attacker choose which a parser sees (CVE-2021-32777), so the request gets none.
	ErrDuplicateCookie = errors.New("session cookie sent more than once")
	// ErrLocked means another holder has the refresh lock: wait for it, or use a still-valid token.
	ErrLocked = errors.New("refresh lock held by another holder")
	// ErrUnreadable means a stored record cannot be opened with the configured keys or parsed
	// (removed key, tampering, unknown format). Stores wrap it together with ErrNotFound:
	// such a record can never be read again, so the session is over.
	ErrUnreadable = errors.New("stored record unreadable")
)

// IDLen is the number of random bytes in a session ID (256 bits).
const IDLen = 32

// encodedIDLen is the length of an ID in unpadded base64url.
const encodedIDLen = 43

// ID is a session ID: the random value the browser's cookie carries.
type ID [IDLen]byte

var idEncoding = base64.RawURLEncoding.Strict()

// NewID draws a fresh ID from r (crypto/rand.Reader in production).
func NewID(r io.Reader) (ID, error) {
	var id ID
	if _, err := io.ReadFull(r, id[:]); err != nil {
		return ID{}, fmt.Errorf("draw session id: %w", err)
	}
	return id, nil
}

// ParseID accepts exactly the canonical encoding NewID's String produces,
// so odd lengths, padding, other alphabets or NULs never reach the store.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != encodedIDLen {
		return ID{}, ErrMalformedID
	}
	var buf [encodedIDLen]byte // a stack copy: no allocation on the hot path
	copy(buf[:], s)
	n, err := idEncoding.Decode(id[:], buf[:])
	if err != nil || n != IDLen {
		return ID{}, ErrMalformedID
	}
	return id, nil
}

// String is the cookie form of the ID: unpadded base64url.
func (id ID) String() string { return idEncoding.EncodeToString(id[:]) }

// Equal compares two IDs in constant time.
func (id ID) Equal(other ID) bool { return subtle.ConstantTimeCompare(id[:], other[:]) == 1 }

// LogValue keeps IDs out of logs even when passed by mistake.
func (id ID) LogValue() slog.Value { return slog.StringValue("<redacted>") }

// Store keeps sessions and pending logins. Implementations translate their
// "absent" answer into ErrNotFound and wrap every other failure in ErrUnavailable.
type Store interface {
	// Get returns the live session under id and renews its idle timeout in the same round trip.
	Get(ctx context.Context, id ID) (*sessionpb.Session, error)
	// Inspect returns the live session under id WITHOUT renewing its idle
	// timeout, and when that timeout will end it (never later than its
	// absolute expiry), in one round trip: a page asking how long the
	// session has left must not extend it. Errors as Get.
	Inspect(ctx context.Context, id ID) (*sessionpb.Session, time.Time, error)
	// Create stores a new session under id with generation 1.
	Create(ctx context.Context, id ID, s *sessionpb.Session) error
	// Update replaces the session only if its stored generation is still prevGeneration; it stores generation prevGeneration+1.
	Update(ctx context.Context, id ID, s *sessionpb.Session, prevGeneration uint64) error
	// Delete removes the session; deleting an absent session is not an error.
	Delete(ctx context.Context, id ID) error
	// PutLoginState stores a pending login for the login-state TTL under its
	// state value and the browser's login-transaction secret together, so
	// only the browser that started it can ever take it.
	PutLoginState(ctx context.Context, state, browser string, ls *sessionpb.LoginState) error
	// TakeLoginState returns and deletes the pending login of state and
	// browser in one step, so a state is used at most once, and a callback
	// from another browser (or none) finds nothing and consumes nothing.
	TakeLoginState(ctx context.Context, state, browser string) (*sessionpb.LoginState, error)
	// TryLock takes the refresh lock key, renewing it every third of the lock
	// TTL until Release; it returns ErrLocked while another holder has it.
	TryLock(ctx context.Context, key LockKey) (*Lease, error)
	// WaitUnlock returns nil once key's lock is released or absent, or after
	// the poll interval (the caller re-checks), or ctx's error when ctx ends first.
	WaitUnlock(ctx context.Context, key LockKey) error
	// GetClientToken returns the cached client-credentials token name; ErrNotFound when absent or expired.
	GetClientToken(ctx context.Context, name string) (*sessionpb.ClientToken, error)
	// PutClientToken caches t under name until t expires.
	PutClientToken(ctx context.Context, name string, t *sessionpb.ClientToken) error
	// FindSessions returns the live sessions of issuer+sid when sid is set,
	// else of issuer+subject: what back-channel logout and administration act on.
	FindSessions(ctx context.Context, issuer, subject, sid string) ([]Ref, error)
	// GetByRef reads a session found by FindSessions, without renewing its idle timeout.
	GetByRef(ctx context.Context, ref Ref) (*sessionpb.Session, error)
	// DeleteByRef deletes a session and its index entries; an absent one is not an error.
	DeleteByRef(ctx context.Context, ref Ref) error
	// UseOnce marks key used for ttl and reports whether this was the first use
	// (a logout token's jti: a replay gets false).
	UseOnce(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// GetDerivedToken returns session id's cached token of profile;
	// ErrNotFound when absent, expired or unreadable. It does not read the
	// session itself nor renew its idle timeout.
	GetDerivedToken(ctx context.Context, id ID, profile string) (*sessionpb.ClientToken, error)
	// PutDerivedToken caches t as session id's token of profile until t
	// expires (one already expired is not stored), sealed so that it opens
	// only as this frontend's, session's and profile's. It answers
	// ErrNotFound when the session does not exist (any more): a token
	// obtained while its session was deleted is never stored after the
	// deletion. Deleting the session deletes its derived tokens.
	PutDerivedToken(ctx context.Context, id ID, profile string, t *sessionpb.ClientToken) error
	// GetWithDerived is Get (renewing the idle timeout, with Get's errors)
	// and session id's token of profile, in one round trip; the token is
	// nil when absent, expired or unreadable.
	GetWithDerived(ctx context.Context, id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error)
}
