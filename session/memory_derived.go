package session

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/envoy-bff/envoy-bff/proto/sessionpb"
)

// tokenLocked returns the unexpired derived token of profile in the entry
// under key (keyspace.derivedTokens), or nil. The caller holds mu.
func (d *memData) tokenLocked(key, profile string, now time.Time) *memToken {
	e, err := d.live(key, now)
	if err != nil {
		return nil
	}
	t, ok := e.tokens[profile]
	if !ok || !now.Before(t.expires) {
		return nil
	}
	return &t
}

// GetDerivedToken implements Store.
func (m *MemoryStore) GetDerivedToken(_ context.Context, id ID, profile string) (*sessionpb.ClientToken, error) {
	const op = "get derived token"
	if !ValidTokenProfile(profile) {
		return nil, fmt.Errorf("%s: %w", op, errBadProfile(profile))
	}
	hash := m.ring.HashID(id)
	now := m.now()
	m.mem.mu.Lock()
	if m.mem.closed {
		m.mem.mu.Unlock()
		return nil, fmt.Errorf("%s: %w: %w", op, ErrUnavailable, errClosed)
	}
	var tok *memToken
	if _, err := m.mem.live(m.ks.session(hash), now); err == nil { // only a live session's
		tok = m.mem.tokenLocked(m.ks.derivedTokens(hash), profile, now)
	}
	m.mem.mu.Unlock()
	if tok == nil {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	t, err := openDerived(m.ring, m.ks, hash, profile, tok.sealed, false)
	if err != nil {
		return nil, notFound(op, err)
	}
	if !tokenLive(t, now) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	return t, nil
}

// PutDerivedToken implements Store: the token joins its session's entry of
// derived tokens only while the session is live, under one lock.
func (m *MemoryStore) PutDerivedToken(_ context.Context, id ID, profile string, t *sessionpb.ClientToken) error {
	const op = "put derived token"
	hash := m.ring.HashID(id)
	now := m.now()
	sealed, ttl, err := prepareDerived(m.ring, m.ks, hash, profile, t, now)
	if err != nil || ttl <= 0 {
		return err
	}
	expires := now.Add(ttl)
	m.mem.mu.Lock()
	defer m.mem.mu.Unlock()
	if _, err := m.mem.live(m.ks.session(hash), now); err != nil {
		return fmt.Errorf("%s: %w", op, err) // closed, or no session
	}
	key := m.ks.derivedTokens(hash)
	e, err := m.mem.live(key, now)
	if err != nil {
		e = &memEntry{tokens: map[string]memToken{}}
		m.mem.entries[key] = e
	}
	e.tokens[profile] = memToken{sealed: sealed, expires: expires}
	if expires.After(e.expires) {
		e.expires = expires
	}
	return nil
}

// GetWithDerived implements Store: Get and the token under one lock.
func (m *MemoryStore) GetWithDerived(_ context.Context, id ID, profile string) (*sessionpb.Session, *sessionpb.ClientToken, error) {
	if !ValidTokenProfile(profile) {
		return nil, nil, fmt.Errorf("get session with derived token: %w", errBadProfile(profile))
	}
	hash := m.ring.HashID(id)
	s, tok, err := m.get(hash, profile)
	if err != nil {
		return nil, nil, err
	}
	s = proto.CloneOf(s) // the caller's own, as Get's
	if tok == nil {
		return s, nil, nil
	}
	t, err := openDerived(m.ring, m.ks, hash, profile, tok.sealed, false)
	if err != nil || !tokenLive(t, m.now()) {
		return s, nil, nil // unreadable or expired: absent, to be obtained again
	}
	return s, t, nil
}
