package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"time"
)

// LockKey names one refresh lock: a session's, a client-credentials
// token's, or one session's derived token of one profile. Build it with
// SessionLock, ClientTokenLock or DerivedTokenLock.
type LockKey struct {
	id       ID
	client   string
	isClient bool
	// profile, with isDerived, names a derived token of the session id.
	profile   string
	isDerived bool
}

// SessionLock is the refresh lock of the session id.
func SessionLock(id ID) LockKey { return LockKey{id: id} }

// ClientTokenLock is the refresh lock of the client token name.
func ClientTokenLock(name string) LockKey { return LockKey{client: name, isClient: true} }

// DerivedTokenLock is the renewal lock of session id's derived token of
// profile: one grant per expiry per session and profile across replicas.
// In Redis it shares the session's hash tag (one Cluster slot). A profile
// name that ValidTokenProfile refuses makes TryLock and WaitUnlock fail.
func DerivedTokenLock(id ID, profile string) LockKey {
	return LockKey{id: id, profile: profile, isDerived: true}
}

// maxClientTokenName bounds a client token's name, which appears in Redis keys.
const maxClientTokenName = 64

// ValidClientTokenName reports whether name may name a client token: 1-64
// characters of a-z, 0-9, _ and -, so it is safe inside a Redis key.
func ValidClientTokenName(name string) bool {
	if name == "" || len(name) > maxClientTokenName {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validate refuses a client token name that could not be part of a key.
func (k LockKey) validate() error {
	if k.isClient && !ValidClientTokenName(k.client) {
		return fmt.Errorf("client token name %q: must be 1-%d characters of a-z, 0-9, _ and -", k.client, maxClientTokenName)
	}
	if k.isDerived && !ValidTokenProfile(k.profile) {
		return errBadProfile(k.profile)
	}
	return nil
}

// logicalKey is the lock's name in keyspace ks, without the Redis prefix:
// "<ks>lk:<hash>" for a session (the hash keeps the cookie value out of the
// store), "<ks>lk:cc:<name>" for a client token, "<ks>lk:<hash>:<profile>"
// for a derived token.
func (k LockKey) logicalKey(ring *KeyRing, ks keyspace) (string, error) {
	if err := k.validate(); err != nil {
		return "", err
	}
	switch {
	case k.isClient:
		return string(ks) + "lk:cc:" + k.client, nil
	case k.isDerived:
		return string(ks) + "lk:" + ring.HashID(k.id) + ":" + k.profile, nil
	}
	return string(ks) + "lk:" + ring.HashID(k.id), nil
}

// Lease is a held refresh lock. It renews itself every third of the lock
// TTL until Release, so a slow provider call never lets the lock lapse; only
// a holder that dies or stops running loses it.
type Lease struct {
	release func(ctx context.Context) error
	lost    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	err     error
}

// renewFunc extends a held lock; ok is false when the lock is no longer ours.
type renewFunc func(ctx context.Context) (ok bool, err error)

// newLease starts renewing a lock just taken.
func newLease(ttl time.Duration, renew renewFunc, release func(ctx context.Context) error) *Lease {
	l := &Lease{
		release: release,
		lost:    make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go l.renewLoop(ttl, renew)
	return l
}

// renewLoop renews every ttl/3. A renewal that finds another holder, or
// failures for a whole TTL (the lock may have lapsed meanwhile), mark the
// lease lost and end the loop.
func (l *Lease) renewLoop(ttl time.Duration, renew renewFunc) {
	defer close(l.done)
	every := ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		ok, err := renew(ctx)
		cancel()
		switch {
		case err == nil && ok:
			lastOK = time.Now()
		case err == nil, time.Since(lastOK) >= ttl:
			close(l.lost)
			return
		}
	}
}

// Lost is closed once the lock is known to be no longer this lease's. The
// holder may still finish: its write is fenced by the record's generation.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Release stops renewal, deletes the lock if it is still this lease's (never
// another holder's) and wakes the waiters. It is idempotent; later calls
// return the first call's error.
func (l *Lease) Release(ctx context.Context) error {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		if err := l.release(ctx); err != nil {
			l.err = fmt.Errorf("release refresh lock: %w", err)
		}
	})
	return l.err
}

// newLockToken is a random value that identifies one holder of a lock.
func newLockToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("draw lock token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
