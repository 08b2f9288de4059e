package session

import (
	"context"
	"fmt"
	"time"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// memLock is one held lock of the memory store. wake is closed when it is
// released, which wakes every waiter at once.
type memLock struct {
	token   string
	expires time.Time // on the store's clock
	wake    chan struct{}
}

// TryLock implements Store with an in-process lock that behaves like the
// Redis one: a TTL on the store's clock, renewed by the lease.
func (m *MemoryStore) TryLock(_ context.Context, key LockKey) (*Lease, error) {
	const op = "take refresh lock"
	k, err := key.logicalKey(m.ring, m.ks)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	token, err := newLockToken()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	ttl := m.cfg.LockTTL
	d := m.mem
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	now := m.now()
	if l := d.locks[k]; l != nil && now.Before(l.expires) {
		return nil, fmt.Errorf("%s: %w", op, ErrLocked)
	} else if l != nil {
		close(l.wake) // lapsed: its waiters may try now
	}
	if d.locks == nil {
		d.locks = map[string]*memLock{}
	}
	d.locks[k] = &memLock{token: token, expires: now.Add(ttl), wake: make(chan struct{})}
	renew := func(context.Context) (bool, error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		l, now := d.locks[k], m.now()
		if l == nil || l.token != token || !now.Before(l.expires) {
			return false, nil // lapsed: another holder may have it or take it
		}
		l.expires = now.Add(ttl)
		return true, nil
	}
	release := func(context.Context) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if l := d.locks[k]; l != nil && l.token == token {
			delete(d.locks, k)
			close(l.wake)
		}
		return nil
	}
	return newLease(ttl, renew, release), nil
}

// WaitUnlock implements Store.
func (m *MemoryStore) WaitUnlock(ctx context.Context, key LockKey) error {
	const op = "wait for refresh lock"
	k, err := key.logicalKey(m.ring, m.ks)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	m.mem.mu.Lock()
	l := m.mem.locks[k]
	closed := m.mem.closed
	m.mem.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	case l == nil || !m.now().Before(l.expires):
		return nil
	}
	t := time.NewTimer(m.cfg.LockPollInterval)
	defer t.Stop()
	select {
	case <-l.wake:
		return nil
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// GetClientToken implements Store.
func (m *MemoryStore) GetClientToken(_ context.Context, name string) (*sessionpb.ClientToken, error) {
	const op = "get client token"
	if !ValidClientTokenName(name) {
		return nil, fmt.Errorf("%s: invalid name %q", op, name)
	}
	m.mem.mu.Lock()
	e, err := m.mem.live(m.ks.clientToken(name), m.now())
	m.mem.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	t, err := openClientToken(m.ring, m.ks, name, e.sealed)
	if err != nil {
		return nil, notFound(op, err)
	}
	return t, nil
}

// PutClientToken implements Store; the sweeper removes it once expired.
func (m *MemoryStore) PutClientToken(_ context.Context, name string, t *sessionpb.ClientToken) error {
	const op = "put client token"
	now := m.now()
	sealed, ttl, err := prepareClientToken(m.ring, m.ks, name, t, now)
	if err != nil || ttl <= 0 {
		return err
	}
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if m.mem.closed {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	m.mem.entries[m.ks.clientToken(name)] = &memEntry{sealed: sealed, expires: now.Add(ttl)}
	return nil
}
